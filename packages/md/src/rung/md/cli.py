"""Command line interface: ``nnp-md run input.toml [--restart]``, ``nnp-md adaptive input.toml``,
``nnp-md analyze protons TRAJ``.

Bad input (the input file, its structure, an option) ends in one line and exit code 2
(:mod:`rung.core.cli`).
"""

import click

from rung.core.cli import Group, trust_units
from rung.core.mpi import comm_info


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rung-md")
def main():
    """MD rung: classical and ring-polymer molecular dynamics over rung potentials."""


@main.command()
@click.argument("input_file", type=click.Path(dir_okay=False), required=False)
@click.option("--restart", is_flag=True, help="Continue from the checkpoint <prefix>.chk.h5 (bit-for-bit); without "
              "INPUT_FILE the input stored in the checkpoint is used.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint to restart from when no INPUT_FILE is given (default: md.chk.h5 in the work folder).")
@click.option("--overwrite", is_flag=True, help="Replace the outputs of an earlier run.")
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help="Output folder (default: current; created if missing).")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--mpi", is_flag=True, help="Spread the beads over the ranks of MPI.COMM_WORLD (run under mpiexec).")
@trust_units
def run(input_file, restart, checkpoint, overwrite, workdir, quiet, mpi, trust_units):
    """Run the MD described by INPUT_FILE (TOML; see `rung.md.config`), or continue one with --restart."""
    from dataclasses import replace
    from pathlib import Path

    from rung.md.config import InputError, config_from_dict, load_config
    from rung.md.output import read_checkpoint
    from rung.md.simulation import run as run_md

    comm = None
    if mpi:
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
    try:
        if input_file is not None:
            config = load_config(input_file)
        elif restart:
            chk = Path(checkpoint) if checkpoint else Path(workdir or ".") / "md.chk.h5"
            try:
                config = config_from_dict(read_checkpoint(chk)[1])
            except (ValueError, TypeError) as err:
                raise InputError(str(err)) from err
            if checkpoint and workdir is None:
                workdir = str(chk.parent)
        else:
            raise InputError("give an input file (nnp-md run input.toml) or --restart")
        if trust_units:  # as the input's trust_units = true
            config = replace(config, trust_units=True)
        res = run_md(config, workdir=workdir, restart=restart, overwrite=overwrite, comm=comm, progress=not quiet)
    except RuntimeError as err:  # the run failed (bad input is an InputError: one line, exit code 2)
        raise click.ClickException(str(err)) from err
    if comm_info(comm)[0] == 0:
        click.echo(f"done: step {res.state.step}, {res.ns_per_day:.4g} ns/day, {res.force_calls} force calls")


@main.command()
@click.argument("input_file", type=click.Path(dir_okay=False))
@click.option("--workdir", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Folder of the iterations (created if missing); rerun the same command to resume a killed run.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--mpi", is_flag=True, help="Spread the replicas over the ranks of MPI.COMM_WORLD (run under mpiexec).")
@click.option("--bead-ranks", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --mpi: ranks per replica (its beads spread over them); must divide the number of ranks.")
@trust_units
def adaptive(input_file, workdir, quiet, mpi, bead_ranks, trust_units):
    """Adaptive sampling: iterations x replicas of the md input, restarted from rarely visited states
    (an md input plus an [adaptive] table; see `rung.md.adaptive`)."""
    from pathlib import Path

    from rung.md.adaptive import parse_input, run_adaptive
    from rung.md.config import InputError

    comm = None
    if mpi:
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
    elif bead_ranks != 1:
        raise InputError("--bead-ranks needs --mpi")
    config, acfg = parse_input(input_file)
    if trust_units:  # as the input's trust_units = true
        from dataclasses import replace

        config = replace(config, trust_units=True)
    if comm_info(comm)[0] == 0:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    try:
        res = run_adaptive(config, acfg, workdir, comm=comm, bead_ranks=bead_ranks, progress=not quiet)
    except RuntimeError as err:
        raise click.ClickException(str(err)) from err
    if comm_info(comm)[0] != 0:
        return
    for r in res:
        click.echo(f"iteration {r.iteration}: {len(r.frame_id)} frames, {r.coverage} cells visited")


@main.group(cls=Group)
def analyze():
    """Analyses of trajectories."""


@analyze.command()
@click.argument("trajectory", type=click.Path(dir_okay=False))
@click.option("--group", "groups", multiple=True, metavar="NAME=SEL",
              help="A donor/acceptor group: element symbols and 0-based indices/ranges, e.g. water=O, "
                   "amine=N, site=3,7-9 (repeatable; default one group per O, N, S, F, Cl element).")
@click.option("--hysteresis-angstrom", type=click.FloatRange(min=0), default=0.3, show_default=True,
              help="delta = d(D-H) - d(A-H) must exceed this for a transfer.")
@click.option("--persistence", type=click.IntRange(min=1), default=1, show_default=True,
              help="Frames delta must stay beyond the window.")
@click.option("--cutoff-angstrom", type=click.FloatRange(min=0, min_open=True), default=2.5, show_default=True,
              help="Heavy atoms farther from a hydrogen are ignored.")
@click.option("--output", default="protons", show_default=True,
              help="Prefix of the outputs: PREFIX.h5 (every event), PREFIX.txt (table), PREFIX.png (plot).")
def protons(trajectory, groups, hysteresis_angstrom, persistence, cutoff_angstrom, output):
    """Proton ownership and transfer events in TRAJECTORY (rung H5MD, or any file ASE reads);
    see `rung.md.analysis.protons`."""
    from pathlib import Path

    from rung.core import units as U
    from rung.core.errors import InputError
    from rung.md.analysis.protons import detect, plot_counts, read_trajectory

    specs = {}
    for g in groups:
        name, eq, sel = g.partition("=")
        if not eq or not name or not sel:
            raise InputError(f"--group {g!r}: write NAME=SELECTION, e.g. water=O")
        if name in specs:
            raise InputError(f"--group {name!r} is given twice")
        specs[name] = sel
    if any(Path(f"{output}{ext}").resolve() == Path(trajectory).resolve() for ext in (".h5", ".txt", ".png")):
        raise InputError(f"--output {output!r} would overwrite the trajectory {trajectory}; choose another prefix")
    traj = read_trajectory(trajectory)
    ev = detect(traj, specs or None, hysteresis=hysteresis_angstrom * U.ANGSTROM_TO_BOHR, persistence=persistence,
                cutoff=cutoff_angstrom * U.ANGSTROM_TO_BOHR)
    ev.to_hdf5(f"{output}.h5", attrs={"trajectory": str(trajectory), "hysteresis_angstrom": hysteresis_angstrom,
                                      "persistence": persistence, "cutoff_angstrom": cutoff_angstrom})
    table = ev.table()
    with open(f"{output}.txt", "w") as fh:
        fh.write(table + "\n")
    plot_counts(ev, f"{output}.png")
    click.echo(table)


if __name__ == "__main__":
    main()
