"""Command line interface: ``sci run`` (CIPSI on an FCIDUMP or a dataset), ``sci show`` (a wavefunction file)
and ``sci export-qmcpack`` (its QMCPACK orbital file and input).

Bad input (a file or an option) ends in one line and exit code 2 (:mod:`rung.core.cli`).
"""

import click

from rung.core.cli import Group, property_prefix


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rung-sci")
def main():
    """Selected CI rung: CIPSI with bit-string determinants, EN-PT2, Davidson-Liu."""


@main.command()
@click.argument("fcidump", required=False, type=click.Path(dir_okay=False))
@click.option("--from-dataset", "dataset", type=click.Path(exists=True, dir_okay=False), help="rung.core dataset (HDF5)")
@click.option("--out", type=click.Path(dir_okay=False), help="wavefunction/checkpoint file (FCIDUMP mode); a rerun resumes it")
@click.option("--max-det", type=click.FloatRange(min=1), default=1e5, show_default=True,
              help="determinant budget (1e6 accepted)")
@click.option("--pt2-threshold", type=click.FloatRange(min=0), default=1e-5, show_default=True,
              help="stop when |E_PT2| < this (Hartree)")
@click.option("--growth", type=click.FloatRange(min=1, min_open=True), default=2.0, show_default=True,
              help="space growth factor per iteration (> 1)")
@click.option("--min-last-step", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="no last growth smaller than this fraction of a whole one: the growth before it goes "
                   "straight to --max-det (0: off; see CIPSIConfig.min_last_step)")
@click.option("--nroots", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--spin", type=float, default=None, help="target S (default |MS|)")
@click.option("--ncore", type=int, default=0, help="frozen core orbitals below the FCIDUMP's (for the /MultiDet export)")
@click.option("--basis", default="ccecp-cc-pvdz", show_default=True, help="dataset mode without DFT FCIDUMP: RHF basis")
@click.option("--ecp", default="ccecp", show_default=True, help="dataset mode: ECP ('' for none)")
@click.option("--frozen-core", type=int, default=0, help="dataset mode: orbitals frozen in the RHF Hamiltonian")
@click.option("--backend", type=click.Choice(["auto", "numba", "cupy"]), default="auto", show_default=True)
@property_prefix
def run(fcidump, dataset, out, max_det, pt2_threshold, growth, min_last_step, nroots, spin, ncore, basis, ecp,
        frozen_core, backend, property_prefix):
    """CIPSI on an FCIDUMP (``sci run FCIDUMP --out wf.h5``) or on a dataset (``sci run --from-dataset d.h5``)."""
    from rung.sci.cipsi import CIPSIConfig

    cfg = CIPSIConfig(max_det=int(max_det), pt2_threshold=pt2_threshold, growth=growth, min_last_step=min_last_step,
                      nroots=nroots, spin=spin)
    if (fcidump is None) == (dataset is None):
        raise click.UsageError("give either an FCIDUMP file or --from-dataset")
    if dataset:
        from rung.sci.workflow import run_dataset

        res = run_dataset(dataset, cfg, basis=basis, ecp=ecp or None, frozen_core=frozen_core, backend=backend,
                          log=click.echo, rung=property_prefix + "sci")
        click.echo(f"{len(res)} conformations done")
        return
    if out is None:
        raise click.UsageError("--out is required with an FCIDUMP")
    from dataclasses import replace

    from rung.sci.cipsi import kernel
    from rung.sci.fcidump import read_fcidump

    ham = replace(read_fcidump(fcidump), ncore=ncore)
    r = kernel(ham, cfg, backend=backend, checkpoint=out, log=click.echo)
    pm = (f" ± {r.pt2_error:.1e}" if r.pt2_error > 0 else "") + f" ({r.pt2_kind} PT2)"
    click.echo(f"E_var = {r.e_var[0]:.8f} Ha, E_var+PT2 = {r.e_var_pt2:.8f} Ha{pm}, "
               f"E_extrap = {r.e_extrapolated:.8f} Ha, n_det = {r.n_det}, <S^2> = {r.s2[0]:.4f} -> {out}")


@main.command()
@click.argument("wavefunction", type=click.Path(exists=True, dir_okay=False))
@click.option("--top", type=click.IntRange(min=0), default=5, show_default=True, help="determinants to list")
def show(wavefunction, top):
    """Energies, PT2 kind, completeness, settings and leading determinants of a wavefunction file."""
    from rung.sci.cipsi import summary

    for line in summary(wavefunction, top):
        click.echo(line)


@main.command("export-qmcpack")
@click.argument("wavefunction", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "prefix", required=True, type=click.Path(dir_okay=False),
              help="output prefix: writes PREFIX.h5 (basis, orbitals, /MultiDet) and PREFIX.xml (QMCPACK input)")
@click.option("--orbitals", type=click.Path(exists=True, dir_okay=False), default=None,
              help="orbitals file the expansion was built on (default: the wavefunction's own /orbitals)")
@click.option("--orbitals-group", default="orbitals", show_default=True,
              help="group in --orbitals (the DFT rung's orbitals file: MOLECULE/INDEX)")
@click.option("--max-dets", type=click.IntRange(min=1), default=None, help="keep the largest determinants only")
@click.option("--ext-level", type=click.IntRange(min=0), default=0, show_default=True,
              help="state QMCPACK evaluates (0: ground state, k: the k-th root, Coeff_k)")
@click.option("--allow-incomplete", is_flag=True, help="export an expansion from an unfinished sci run")
def export_qmcpack(wavefunction, prefix, orbitals, orbitals_group, max_dets, ext_level, allow_incomplete):
    """Write the QMCPACK orbital HDF5 and XML input for a /MultiDet wavefunction (``sci run`` output)."""
    from rung.sci.qmcpack import export

    out = export(wavefunction, prefix, orbitals=orbitals, orbitals_group=orbitals_group, max_dets=max_dets,
                 ext_level=ext_level, allow_incomplete=allow_incomplete)
    click.echo(f"wrote {out.h5} and {out.xml}")
    if out.ecp_files:
        click.echo("pseudopotential files the input refers to (QMCPACK XML format, e.g. from pseudopotentiallibrary.org): "
                   + ", ".join(out.ecp_files))


if __name__ == "__main__":
    main()
