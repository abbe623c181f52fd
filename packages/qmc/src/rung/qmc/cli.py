"""Command line interface: ``qmc optimize``, ``qmc vmc``, ``qmc dmc``, ``qmc show``.

INPUT is an xyz file (any format ASE reads; geometry in Angstrom) or a rung dataset (.h5), in which
case the conformation's results are written into the dataset as ``qmc_*`` properties and the DFT
rung's saved orbitals are used when present.

Bad input (a file, an option, a conformation the DFT rung rejected) ends in one line and exit code 2
(:mod:`rung.core.cli`), before any computation.
"""

import click

from rung.core.cli import Group, property_prefix, trust_units

_POSITIVE = click.IntRange(min=1)


def _common(f):
    opts = [
        click.argument("input", type=click.Path(exists=True, dir_okay=False)),
        click.option("--molecule", default=None, help="molecule name in a dataset (default: the first)"),
        click.option("--index", default=0, show_default=True, type=click.IntRange(min=0), help="conformation index"),
        click.option("--basis", default="ccecp-cc-pvdz", show_default=True),
        click.option("--ecp", default="ccecp", show_default=True, help="'none' for all-electron"),
        click.option("--walkers", default=200, show_default=True, type=_POSITIVE),
        click.option("--vmc-blocks", default=20, show_default=True, type=_POSITIVE),
        click.option("--vmc-steps", default=10, show_default=True, type=_POSITIVE, help="sweeps per VMC block"),
        click.option("--seed", default=0, show_default=True),
        click.option("--jastrow/--no-jastrow", default=True, show_default=True),
        click.option("--three-body/--no-three-body", default=False, show_default=True,
                     help="add the electron-electron-nucleus Jastrow term"),
        click.option("--backend", type=click.Choice(["auto", "numba", "numpy", "cupy"]), default="numba",
                     show_default=True,
                     help="AO kernel: numba (CPU), numpy (reference), cupy (the AOs on the CUDA device, the rest "
                          "on the CPU kernels; unmeasured on a GPU so far, hence not the default), auto (cupy "
                          "where a GPU is usable or RUNG_DEVICE=gpu)"),
        click.option("--params", type=click.Path(exists=True, dir_okay=False), default=None,
                      help="Jastrow parameters from `qmc optimize --save`"),
        click.option("--multidet", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="QMCPACK /MultiDet file from `sci run` (its /orbitals, else the DFT rung's orbitals)"),
        click.option("--max-dets", default=20, show_default=True, type=_POSITIVE,
                     help="largest determinants kept from --multidet (after --min-coef and --weight)"),
        click.option("--min-coef", default=0.0, show_default=True, type=click.FloatRange(min=0.0),
                     help="--multidet: drop determinants with |c| below this"),
        click.option("--weight", default=None, type=click.FloatRange(0.0, 1.0, min_open=True),
                     help="--multidet: keep the fewest largest determinants whose sum of c^2 reaches this "
                          "fraction of the expansion's (e.g. 0.99)"),
        click.option("--allow-incomplete", is_flag=True,
                     help="accept a --multidet expansion from an unfinished sci run"),
        click.option("--out", default=None, help="write <OUT>.<method>.h5 result files (energies, trace, walkers) and <OUT>.parameters.h5"),
        click.option("--forces/--no-forces", default=False, show_default=True,
                     help="interatomic forces (ZVZB estimator, space warp); into the dataset as qmc_*_gradient"),
        click.option("--force-every", default=1, show_default=True, type=_POSITIVE, help="evaluate forces every N steps"),
        click.option("--replace", is_flag=True,
                     help="dataset input: overwrite a conformation's qmc_* values computed with other settings, "
                          "or mix levels of theory in one dataset (qmc_settings records each conformation's)"),
        trust_units,
        property_prefix,
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _progress(method, block, nblocks, energy, seconds, done=None, equilibration=False):
    """One progress line. ``block`` of ``nblocks`` counts from the run's start (a resumed DMC from its
    checkpoint's block); ``seconds`` for the ``done`` blocks of this process (all of them if not given):
    the ETA is their rate times the blocks left. Equilibration blocks (not averaged) say so."""
    done = block if done is None else done
    eta = seconds / max(done, 1) * (nblocks - block)
    mark = "  (equilibration, not averaged)" if equilibration else ""
    click.echo(f"{method} block {block}/{nblocks}  E = {energy:.6f} Ha  {seconds:.0f} s  ETA {eta:.0f} s{mark}",
               err=True)


def _run(input, molecule, index, basis, ecp, walkers, vmc_blocks, vmc_steps, seed, jastrow, three_body, backend,
         params, multidet, max_dets, min_coef, weight, allow_incomplete, out, forces, force_every, replace, trust_units, property_prefix,
         dmc_cfg,
         checkpoint=None, trace=None, opt_cfg=None, save=None, optimize_ci=False):
    from pathlib import Path

    import h5py

    from rung.core.backend import BackendUnavailable, resolve
    from rung.core.dataset import read_structures
    from rung.qmc.forces import ForceConfig
    from rung.qmc.run import (QMCConfig, check_record, kernel, load_parameters, record, result_settings,
                              save_parameters, trial_from_dataset)
    from rung.qmc.system import InputError, build_mol, mean_field
    from rung.qmc.vmc import VMCConfig

    # everything that can be refused is refused before any computation
    try:
        backend = resolve(backend)
    except BackendUnavailable as e:
        raise click.BadParameter(str(e), param_hint="--backend") from None
    if vmc_blocks * vmc_steps < 2:
        raise click.BadParameter(f"{vmc_blocks} block x {vmc_steps} step is 1 sample; the error bar needs at least 2 "
                                 "(raise --vmc-blocks or --vmc-steps)", param_hint="--vmc-blocks")
    cfg = QMCConfig(VMCConfig(nwalkers=walkers, nblocks=vmc_blocks, nsteps=vmc_steps, seed=seed), dmc_cfg,
                    opt_cfg, three_body=three_body, jastrow=jastrow, backend=backend,
                    forces=ForceConfig(every=force_every) if forces else None)
    ecp = None if ecp.lower() == "none" else ecp
    expansion = None
    if multidet:
        from rung.qmc.multideterminant import read_multidet

        expansion = read_multidet(multidet, max_dets=max_dets, min_coef=min_coef, weight=weight,
                                  allow_incomplete=allow_incomplete)
        click.echo(f"{Path(multidet).name}: {expansion.coef.size} determinants kept, {expansion.weight:.4f} of the "
                   "expansion's sum of c^2", err=True)
        if dmc_cfg is not None and jastrow and params is None:
            click.echo("warning: multideterminant DMC with a Jastrow not optimised for this expansion (no --params): "
                       "the fixed-node energy can be tens of mHa too high; run `qmc optimize --multidet ... --save P` "
                       "first and pass --params P", err=True)
    parameters = load_parameters(params) if params else None
    if parameters and CI_KEY in parameters:  # CI coefficients from `qmc optimize --optimize-ci`
        expansion = saved_ci(expansion, parameters)
    if optimize_ci:
        if expansion is None or not jastrow:
            raise click.BadParameter("CI coefficients are optimised together with the Jastrow of a --multidet "
                                     "expansion (give --multidet, and no --no-jastrow)", param_hint="--optimize-ci")
        import dataclasses  # not `from dataclasses import replace`: that would rebind the --replace flag

        expansion = dataclasses.replace(expansion, optimize_ci=True)
    is_dataset = h5py.is_hdf5(input)
    if is_dataset:  # qmc_* values that rung did not write are never written over: refused before any SCF
        from rung.core.dataset import check_foreign

        check_foreign(input, property_prefix + "qmc")
    mols = read_structures(input, check_units=not trust_units)
    m = next((x for x in mols if x.name == molecule), None) if molecule else mols[0]
    if m is None:
        raise click.BadParameter(f"no molecule {molecule!r} in {input} (it has: {', '.join(x.name for x in mols)})",
                                 param_hint="--molecule")
    if not index < m.n_conf:
        raise click.BadParameter(f"{m.name} in {input} has {m.n_conf} conformations", param_hint="--index")
    if is_dataset:
        mol, orb = trial_from_dataset(input, m.name, index, basis, ecp)
    else:
        mol = build_mol(m.atomic_numbers, m.conformations[index], basis, ecp, m.charge, m.multiplicity - 1)
        orb = mean_field(mol)
    if multidet:
        from rung.qmc.system import load_orbitals

        with h5py.File(multidet, "r") as f:
            own = "orbitals" in f
        if own:
            mol, orb = load_orbitals(multidet, None, group="orbitals")
        elif orb.source.startswith("pyscf"):  # made here, not the orbitals the expansion was built on
            raise InputError(f"{multidet} has no /orbitals and the input has no saved DFT orbitals: the "
                             "expansion's orbitals are unknown")
    if is_dataset:
        check_record(input, m.name, index, result_settings(mol, orb, cfg, expansion), replace=replace,
                     rung=property_prefix + "qmc")
    click.echo(f"{m.name}[{index}]: {sum(mol.nelec)} electrons, {mol.nao} AOs, orbitals: {orb.source} "
               f"(E = {orb.e_tot:.6f} Ha)", err=True)
    results = kernel(mol, orb, cfg, parameters=parameters, expansion=expansion,
                     checkpoint=checkpoint, trace=trace, progress=_progress)
    parameters = results.parameters
    for r in results.results.values():
        click.echo(f"{r.summary()}  ({r.nwalkers} walkers, {r.nsteps} steps, tau {r.tau})")
        if r.forces is not None:
            click.echo(format_forces(mol, r))
    if out:
        results.to_hdf5(out, backend=backend)
    if save:
        if expansion is not None and expansion.optimize_ci:
            from rung.qmc.multideterminant import ci_coefficients

            parameters = dict(parameters)
            parameters[CI_KEY] = ci_coefficients(expansion, parameters.pop("0.ci"))
        save_parameters(save, parameters)
        click.echo(f"wrote parameters to {save}", err=True)
    if is_dataset:
        record(Path(input), m.name, index, results, mol, orb, cfg, expansion=expansion, replace=replace,
               rung=property_prefix + "qmc")
        click.echo(f"wrote {property_prefix}qmc_* properties of {m.name}[{index}] into {input}", err=True)


CI_KEY = "multidet.coef"  # the full coefficient vector in a parameter file (its fixed one included)


def saved_ci(expansion, parameters: dict):
    """The expansion with the CI coefficients of a parameter file (``CI_KEY``, popped from ``parameters``);
    refused without --multidet or for another number of determinants."""
    from dataclasses import replace

    from rung.qmc.system import InputError

    coef = parameters.pop(CI_KEY)
    if expansion is None:
        raise InputError("the parameter file holds optimised CI coefficients: give the --multidet expansion they "
                         "belong to")
    if coef.shape != expansion.coef.shape:
        raise InputError(f"the parameter file holds {coef.size} CI coefficients, the --multidet selection has "
                         f"{expansion.coef.size} determinants (use the --max-dets/--min-coef/--weight of the "
                         "optimisation)")
    return replace(expansion, coef=coef)


def format_forces(mol, r) -> str:
    """The forces of a result as a table, Hartree/Bohr, with their error bars."""
    from rung.qmc.show import force_kind, forces_table

    symbols = [mol.atom_symbol(a) for a in range(mol.natm)]
    return "\n".join(forces_table(r.forces, r.forces_error, f"forces, {force_kind(r)}", symbols))


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rung-qmc")
def main():
    """QMC rung: VMC/DMC with Slater-Jastrow trial functions and ccECPs."""


@main.command("vmc")
@_common
def vmc_cmd(**kw):
    """Variational Monte Carlo energy of one conformation."""
    _run(dmc_cfg=None, **kw)


@main.command("optimize")
@_common
@click.option("--iterations", default=6, show_default=True, help="linear-method iterations")
@click.option("--opt-steps", default=20, show_default=True, help="VMC sweeps sampled per iteration")
@click.option("--save", type=click.Path(dir_okay=False), required=True, help="HDF5 file for the parameters")
@click.option("--optimize-ci/--no-optimize-ci", default=False, show_default=True,
              help="--multidet: optimise the CI coefficients with the Jastrow (the largest stays fixed); saved "
                   "with the parameters and used by vmc/dmc --params. Many determinants need more samples per "
                   "iteration (walkers x --opt-steps; ~300 per parameter, BENCHMARKS.md)")
def optimize_cmd(iterations, opt_steps, save, optimize_ci, **kw):
    """Optimise the Jastrow factor (and with --optimize-ci the CI coefficients) by the linear method, then a
    VMC run with the result."""
    from rung.qmc.optimize import OptimizeConfig

    _run(dmc_cfg=None, opt_cfg=OptimizeConfig(niter=iterations, nsteps=opt_steps, seed=kw["seed"]), save=save,
         optimize_ci=optimize_ci, **kw)


@main.command("dmc")
@_common
@click.option("--tau", default=0.01, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="time step, a.u.")
@click.option("--blocks", default=20, show_default=True, type=_POSITIVE)
@click.option("--steps", default=50, show_default=True, type=_POSITIVE, help="steps per DMC block")
@click.option("--equil-blocks", default=2, show_default=True, type=click.IntRange(min=0))
@click.option("--tmoves/--no-tmoves", default=True, show_default=True)
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, help="resume from / write to")
@click.option("--trace", type=click.Path(dir_okay=False), default=None, help="append-only per-block HDF5 trace")
def dmc_cmd(tau, blocks, steps, equil_blocks, tmoves, checkpoint, trace, **kw):
    """Fixed-node diffusion Monte Carlo (after a VMC equilibration; pass --params for an optimised Jastrow)."""
    from rung.qmc.dmc import DMCConfig

    if (blocks - equil_blocks) * steps < 2:
        raise click.BadParameter(f"{blocks} blocks, {equil_blocks} of them equilibration, x {steps} steps leave "
                                 f"{max(0, blocks - equil_blocks) * steps} averaged steps; the error bar needs at least 2",
                                 param_hint="--blocks")
    cfg = DMCConfig(tau=tau, nblocks=blocks, nsteps=steps, nequil_blocks=equil_blocks, tmoves=tmoves, seed=kw["seed"])
    _run(dmc_cfg=cfg, checkpoint=checkpoint, trace=trace, **kw)


@main.command("show")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--property-prefix", default=None, metavar="PREFIX",
              help="only the PREFIXqmc_* properties a run with this --property-prefix wrote (default: qmc_* "
                   "and every prefix's)")
def show_cmd(file, property_prefix):
    """Energies, error bars, forces, plateau flag and settings of a qmc result file (--out) or of a
    dataset's qmc_* properties (and <prefix>qmc_* ones written with --property-prefix)."""
    from rung.core.dataset import property_prefix as checked
    from rung.qmc.show import show

    click.echo(show(file, None if property_prefix is None else checked(property_prefix)))


if __name__ == "__main__":
    main()
