"""Command line interface: ``nnp-md run input.toml [--restart]``."""

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rung-md")
def main():
    """MD rung: classical and ring-polymer molecular dynamics over rung potentials."""


@main.command()
@click.argument("input_file", type=click.Path(dir_okay=False))
@click.option("--restart", is_flag=True, help="Continue from the checkpoint <prefix>.chk.h5 (bit-for-bit).")
@click.option("--overwrite", is_flag=True, help="Replace the outputs of an earlier run.")
@click.option("--workdir", type=click.Path(file_okay=False), default=None, help="Output folder (default: current).")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--mpi", is_flag=True, help="Spread the beads over the ranks of MPI.COMM_WORLD (run under mpiexec).")
def run(input_file, restart, overwrite, workdir, quiet, mpi):
    """Run the MD described by INPUT_FILE (TOML; see `rung.md.config`)."""
    from rung.md.config import InputError, load_config
    from rung.md.simulation import run as run_md

    comm = None
    if mpi:
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
    try:
        config = load_config(input_file)
        res = run_md(config, workdir=workdir, restart=restart, overwrite=overwrite, comm=comm, progress=not quiet)
    except (InputError, RuntimeError) as err:
        raise click.ClickException(str(err)) from err
    if comm is None or comm.Get_rank() == 0:
        click.echo(f"done: step {res.state.step}, {res.ns_per_day:.4g} ns/day, {res.force_calls} force calls")


if __name__ == "__main__":
    main()
