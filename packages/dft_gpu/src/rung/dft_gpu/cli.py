"""Command line interface: `dft-gpu` (imports of PySCF and friends happen inside the commands).

Bad input (a file or an option) ends in one line and exit code 2 (:mod:`rung.core.cli`); a run that
cannot proceed for another reason (no J/K engine, an MPI setup problem) in one line and exit code 1.
"""

import os
import sys

import click

from rung.core.cli import Group, property_prefix, trust_units
from rung.core.mpi import comm_info

_MPI_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "PMIX_SIZE")


def _world():
    """MPI.COMM_WORLD when started by mpiexec with more than one rank, else None (mpi4py stays unimported)."""
    if not any(int(os.environ.get(v, "1") or 1) > 1 for v in _MPI_SIZE_VARS):
        return None
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise click.ClickException(f"started under mpiexec but mpi4py is not installed ({err}); "
                                   "install rung-dft-gpu[mpi]") from None
    return MPI.COMM_WORLD


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rung-dft-gpu")
def main():
    """DFT rung: PySCF with a density-fitted J/K engine (CPU/GPU), energies and forces for many conformations."""


@main.command("run")
@click.argument("input_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="rung dataset to write (a rerun resumes it)")
@click.option("--xc", default="wb97m-d3bj", show_default=True, help="functional (PySCF name; 'hf' for Hartree-Fock)")
@click.option("--basis", default="ccecp-aug-cc-pvtz", show_default=True)
@click.option("--ecp", default="ccecp", show_default=True, help="pseudopotential; 'none' for all-electron")
@click.option("--auxbasis", default=None, help="density-fitting basis (default: the J/K engine's choice)")
@click.option("--energy-grid", default=3, show_default=True, type=int, help="grid level of the energy SCF")
@click.option("--force-grid", default=4, show_default=True, type=int, help="grid level of the gradient SCF")
@click.option("--no-forces", is_flag=True, help="energies only")
@click.option("--conv-tol", default=1e-9, show_default=True, type=float, help="SCF energy convergence, Hartree")
@click.option("--force-conv-tol-grad", default=1e-6, show_default=True, type=float,
              help="orbital-gradient convergence of the SCF the forces come from")
@click.option("--max-cycle", default=100, show_default=True, type=int, help="SCF cycles per fallback strategy")
@click.option("--jk", type=click.Choice(["engine", "pyscf"]), default="engine", show_default=True,
              help="J/K through rung's engine or PySCF's density fitting")
@click.option("--backend", type=click.Choice(["auto", "numpy", "numba", "cupy"]), default="auto", show_default=True,
              help="J/K engine backend")
@click.option("--max-memory-mb", type=int, default=None)
@click.option("--save-orbitals", is_flag=True, help="write <out>.orbitals.h5 (trial wavefunctions for QMC)")
@click.option("--save-fcidump", is_flag=True, help="write <out>.<molecule>.<index>.fcidump (for sCI)")
@click.option("--fcidump-ncore", default=0, show_default=True, type=int, help="frozen doubly occupied orbitals")
@click.option("--fcidump-norb", default=None, type=int, help="active orbitals (default: all above the core)")
@click.option("--no-fast-paths", is_flag=True,
              help="PySCF's own XC quadrature and gradient code instead of rung's (same numbers; for comparison)")
@click.option("--input-units", type=click.Choice(["bohr", "angstrom", "nm"]), default=None,
              help="length unit of INPUT_PATH's coordinates where the file does not say (HDF5 without a 'units' "
                   "attribute, refused otherwise; xyz: angstrom)")
@click.option("--name-key", default="name", show_default=True,
              help="xyz input: the comment-line key holding each frame's molecule name (else the formula)")
@click.option("--retry-failed", is_flag=True,
              help="compute again the conformations recorded as failed (not those with NaN coordinates)")
@click.option("--merge-every", default=100, show_default=True, type=click.IntRange(min=1),
              help="fold results into --out every this many results per rank, while the run goes on")
@click.option("--merge-minutes", default=10.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="... or after this many minutes, whichever comes first")
@trust_units
@property_prefix
@click.option("--quiet", is_flag=True, help="no progress output")
def run_cmd(input_path, out_path, ecp, no_forces, no_fast_paths, quiet, input_units, name_key, retry_failed,
            merge_every, merge_minutes, trust_units, property_prefix, **opts):
    """Compute DFT energies and forces for every conformation in INPUT_PATH (HDF5 or xyz)."""
    import logging

    from rung.dft_gpu.run import run
    from rung.dft_gpu.scf import DFTConfig

    if not quiet and not sys.stderr.isatty():
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        config = DFTConfig(ecp=None if ecp.lower() == "none" else ecp, forces=not no_forces,
                           fast_paths=not no_fast_paths, **opts)
        s = run(input_path, out_path, config, comm=_world(), progress=not quiet, input_units=input_units,
                retry_failed=retry_failed, merge_every=merge_every, merge_every_s=60.0 * merge_minutes,
                name_key=name_key, check_units=not trust_units, property_prefix=property_prefix)
    except RuntimeError as err:
        raise click.ClickException(str(err)) from None
    if comm_info(_world())[0] == 0:
        click.echo(f"{s.out_path}: {s.n_done} done, {s.n_failed} failed, {s.n_pending} pending "
                   f"({s.computed} computed now, {s.failed_now} failed) in {s.wall_time_s:.1f} s")
        for name, reason in s.rejected.items():
            click.echo(f"rejected molecule {name}: {reason}")


@main.command("status")
@click.argument("dataset", type=click.Path(exists=True, dir_okay=False))
@click.option("--failures", "show", default=20, show_default=True, help="failure reasons to list")
@click.option("--json", "as_json", is_flag=True, help="everything (every failure) as one JSON object, for scripts")
@property_prefix
def status_cmd(dataset, show, as_json, property_prefix):
    """Done / failed / pending conformations of DATASET's DFT rung, with timings and failure reasons."""
    import json

    from rung.dft_gpu.run import status

    st = status(dataset, property_prefix)
    if as_json:
        st["failures"] = [{"molecule": m, "index": i, "reason": r} for m, i, r in st["failures"]]
        click.echo(json.dumps({"dataset": str(dataset), **st}, sort_keys=True))
        return
    c = st["counts"]
    click.echo(f"{dataset}: {c['done']} done, {c['failed']} failed, {c['pending']} pending "
               f"({sum(c.values())} conformations, {len(st['molecules'])} molecules)")
    for p in st["other_prefixes"]:  # results this status does not count, written under another prefix
        click.echo(f"also DFT results written with --property-prefix {p}: dft-gpu status --property-prefix {p}" if p
                   else "also DFT results written without --property-prefix: dft-gpu status without it")
    if st["wall_time_s"]:
        w = st["wall_time_s"]
        click.echo(f"wall time: {w['total']:.1f} s total, {w['mean']:.2f} s mean, {w['max']:.2f} s max per conformation")
    if st["settings"]:
        click.echo("settings: " + ", ".join(f"{k}={v}" for k, v in st["settings"].items()))
    for name, reason in st["rejected"].items():
        click.echo(f"rejected molecule {name}: {reason}")
    for name, index, reason in st["failures"][:show]:
        click.echo(f"failed {name}[{index}]: {reason}")
    if len(st["failures"]) > show:
        click.echo(f"... and {len(st['failures']) - show} more failures")


if __name__ == "__main__":
    main()
