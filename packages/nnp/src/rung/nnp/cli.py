"""Command line interface: `nnp fetch`, `nnp convert` (NeuroChem folders, FeNNol .fnx, TorchANI .pt), `nnp eval`, `nnp train`.

Bad input (a config, dataset, structure or model file, weights not fetched, an option) ends in one
line and exit code 2 (:mod:`rung.core.cli`). `nnp eval` fails a conformation it cannot evaluate alone
(recorded as failed with its reason, :mod:`rung.nnp.evaluate`); a file with no evaluable structure
is bad input, and no output file is written for it.
"""

import click

from rung.core.backend import BACKENDS
from rung.core.cli import Group, property_prefix, trust_units


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rung-nnp")
def main():
    """NNP rung: fast inference for ANI-style neural network potentials."""


@main.command()
@click.argument("name", default="ani-1x")
@click.option("--force", is_flag=True, help="download again even when cached")
def fetch(name, force):
    """Download a public model (ani-1x: from the torchani==2.2.4 wheel) into the cache."""
    from rung.nnp.fetch import fetch as do_fetch

    try:
        do_fetch(name, force=force, log=click.echo)
    except (ValueError, RuntimeError) as err:
        raise click.ClickException(str(err)) from err


@main.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--name", default="", help="model name stored in the file (default: folder or file name)")
@click.option("--radial-cutoff", type=float, default=None,
              help="TorchANI .pt only: radial AEV cutoff, Angstrom (default: inferred from evenly spaced shifts)")
@click.option("--angular-cutoff", type=float, default=None,
              help="TorchANI .pt only: angular AEV cutoff, Angstrom (default: inferred from evenly spaced shifts)")
def convert(sources, out, name, radial_cutoff, angular_cutoff):
    """Convert SOURCES into rung's HDF5 model file OUT: a NeuroChem ensemble folder, FeNNol .fnx
    files of ANI architecture (one ensemble member each), or one TorchANI state dict (.pt, saved
    with torch.save(model.state_dict()); needs torch)."""
    from pathlib import Path

    from rung.nnp.model import save_model

    paths = [Path(s) for s in sources]
    if len(paths) == 1 and paths[0].is_dir():
        from rung.nnp.neurochem import read_ensemble

        model = read_ensemble(paths[0], name=name)
    elif all(p.is_file() and p.suffix == ".fnx" for p in paths):
        from rung.nnp.fennol import ensemble_of_fnx

        model = ensemble_of_fnx(paths, name=name)
    elif len(paths) == 1 and paths[0].is_file() and paths[0].suffix in (".pt", ".pth"):
        from rung.nnp.torchani_pt import read_pt

        model = read_pt(paths[0], name=name, radial_cutoff=radial_cutoff, angular_cutoff=angular_cutoff)
        click.echo(f"AEV cutoffs {model.aev.Rcr} and {model.aev.Rca} Angstrom ({model.provenance['cutoffs']['how']}); "
                   "activation CELU(0.1) and cosine cutoffs assumed (a state dict does not record them)")
    else:
        from rung.core.errors import InputError

        raise InputError("give one NeuroChem folder, one or more FeNNol .fnx files, or one TorchANI .pt state dict")
    click.echo(f"{model.name}: {len(model.members)} networks, species {','.join(model.species)} -> {save_model(model, out)}")


@main.command("eval")
@click.argument("structures", type=click.Path(exists=True, dir_okay=False))
@click.option("--model", "model_names", multiple=True, default=["ani-1x"], show_default=True,
              help="model name, file or folder; repeat to compare several models side by side (nothing written)")
@click.option("--member", type=int, default=None, help="one ensemble member (0-based) instead of the ensemble")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float64", show_default=True)
@click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="dataset to write (default: the input itself when it is a rung dataset, else <input>.nnp.h5)")
@trust_units
@property_prefix
def eval_(structures, model_names, member, dtype, backend, out, trust_units, property_prefix):
    """Energies, forces and ensemble spread for STRUCTURES (xyz or dataset .h5); errors vs other rungs.

    With several --model options: the errors of each model against every reference rung of the
    dataset STRUCTURES, in one table; the dataset is not changed."""
    from pathlib import Path

    import h5py

    from rung.core.dataset import create_dataset, read_structures
    from rung.core.errors import InputError
    from rung.nnp.ani import load_model
    from rung.nnp.evaluate import compare, evaluate_dataset, format_errors, predict, screen

    src = Path(structures)
    if len(model_names) > 1:
        if out is not None or not h5py.is_hdf5(src):
            raise InputError("several --model options compare models on a rung dataset (.h5) and write nothing; "
                             "drop --out or give one --model")
        rows, labels = [], []
        try:
            for name in model_names:
                pot = load_model(name, member=member, dtype=dtype, backend=backend)
                errs = compare(src, predict(src, pot, log=click.echo))
                rows += errs
                labels += [name] * len(errs)
        except InputError:  # a model or dataset file, the weights not fetched: one line, exit 2
            raise
        except ValueError as err:
            raise click.ClickException(str(err)) from err
        click.echo(format_errors(rows, labels) if rows else f"{src}: no reference rung to compare with")
        return
    try:
        pot = load_model(model_names[0], member=member, dtype=dtype, backend=backend)
        mols = read_structures(src, allow_nonfinite=True, check_units=not trust_units)
        refused = [screen(m, pot) for m in mols]
        if all(len(r) == m.n_conf for r, m in zip(refused, mols)):
            first = next(iter(refused[0].values()))
            raise InputError(f"{src}: no structure {pot.model.name} can evaluate; first: {first}")
        created = False
        if h5py.is_hdf5(src) and out is None:
            target = src
        else:
            target = Path(out) if out else src.with_suffix(".nnp.h5")
            created = not target.exists()
            create_dataset(target, mols)
        n = evaluate_dataset(target, pot, log=click.echo, rung=property_prefix + "nnp")
    except InputError:
        raise
    except ValueError as err:
        raise click.ClickException(str(err)) from err
    if n == 0 and created:  # every conformation failed in evaluation (overlapping atoms): no output
        target.unlink()
        raise InputError(f"{src}: no structure {pot.model.name} can evaluate (see the failures above)")
    if n == 0:  # a dataset: its failures are recorded in it; bad input when not one conformation is done
        from rung.core.dataset import DONE

        with h5py.File(target, "r") as f:
            status = f"{property_prefix}nnp_status"
            if not any((g[status][()] == DONE).any() for g in f.values() if status in g):
                raise InputError(f"{src}: no structure {pot.model.name} can evaluate (failures recorded in nnp_error)")
    click.echo(f"{n} conformation(s) evaluated with {pot.model.name} ({pot.backend}, {dtype}) -> {target}")
    errors = compare(target, rung=property_prefix + "nnp")
    if errors:
        click.echo(format_errors(errors))


@main.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--overwrite", is_flag=True, help="replace the output model and log of an earlier run")
@click.option("--quiet", is_flag=True, help="no progress lines")
def train(config, overwrite, quiet):
    """Train a model on rung datasets as CONFIG (TOML; see rung.nnp.train.config) describes: exact
    read-out refits and gradient fine-tuning stages; a killed run resumes when run again."""
    from rung.nnp.train.config import load_config
    from rung.nnp.train.run import train as run_train

    res = run_train(load_config(config), overwrite=overwrite, log=(lambda *a: None) if quiet else click.echo)
    click.echo(f"{res.model.name}: {len(res.stages)} stage(s) -> {res.output} (log {res.log})")


if __name__ == "__main__":
    main()
