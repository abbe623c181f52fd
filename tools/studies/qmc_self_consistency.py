"""How large is the "self-consistency error" of QMC forces with frozen orbitals? (water, ccECP)

rung.qmc.forces differentiates the trial function with its MO coefficients frozen. When the orbitals
come from an SCF at each geometry (the QMC rung's protocol: DFT or HF orbitals, then a Jastrow), the
energy surface the rung really samples also moves through the orbitals' response; the difference is
the self-consistency error (Nakano et al., Phys. Rev. B 109, 205151 (2024)). For the SCF determinant
alone it vanishes (stationarity, the envelope-theorem test); with a Jastrow it does not.

Measured here on one set of VMC samples of an optimised Slater-Jastrow (RHF orbitals): the frozen-orbital
ZVZB force, and -dE/dR of the correlated-sampling (reweighted) energy with the orbitals re-made by a
tight RHF at R +- h (Jastrow parameters fixed). Both are exact for the samples; the difference's
statistical error comes from splitting the samples into batches.

    .venv/bin/python tools/studies/qmc_self_consistency.py
"""

import numpy as np
from pyscf import gto, scf

from rung.qmc.forces import ForceConfig, NuclearDerivatives, displaced_builder, zvzb
from rung.qmc.hamiltonian import Hamiltonian
from rung.qmc.optimize import OptimizeConfig, optimize
from rung.qmc.system import _spin_orbitals, initial_configs, slater_jastrow
from rung.qmc.vmc import VMCConfig, sweep, vmc

WATER = "O 0 0 0.2217; H 0 1.4309 -0.8867; H 0 -1.4309 -0.8867"  # Bohr
H = 2e-3  # Bohr, the relaxed-orbital difference step


def rhf(mol):
    mf = scf.RHF(mol)
    mf.conv_tol, mf.conv_tol_grad, mf.verbose = 1e-12, 1e-9, 0
    mf.kernel()
    return _spin_orbitals(mf.mo_coeff, mf.mo_occ, mf.e_tot, "rhf")


def main(nwalkers=200, nsteps=60, nbatch=6, seed=1):
    mol = gto.M(atom=WATER, unit="Bohr", basis="ccecp-cc-pvdz", ecp="ccecp", verbose=0)
    orb = rhf(mol)
    wf = slater_jastrow(mol, orb)
    ham = Hamiltonian.from_mol(mol)
    rng = np.random.default_rng(seed)
    optimize(wf, ham, initial_configs(mol, 100, rng), OptimizeConfig(niter=5, nsteps=20, seed=seed))
    params = wf.parameters
    c = vmc(wf, ham, initial_configs(mol, nwalkers, rng), VMCConfig(nwalkers=nwalkers, nblocks=2, nsteps=10), rng=rng).configs
    nd = NuclearDerivatives(displaced_builder(mol, orb, parameters=params), mol.atom_coords(), ForceConfig(warp=False))
    relaxed = {}
    for a, x in ((0, 2), (1, 1), (1, 2)):
        for s in (1, -1):
            m = mol.copy()
            coords = mol.atom_coords().copy()
            coords[a, x] += s * H
            m.set_geom_(coords, unit="Bohr")
            relaxed[(a, x, s)] = (slater_jastrow(m, rhf(m), parameters=params), Hamiltonian.from_mol(m))
    rows = []  # per step: E_L, logpsi, frozen dl/de, relaxed (logpsi, E_L) per displacement
    for step in range(nsteps):
        sweep(wf, c, 0.3, rng)
        state = nd.state()
        r0 = np.random.default_rng()
        r0.bit_generator.state = state
        _, lv0 = wf.recompute(c)
        el0 = ham.local_energy(wf, c, r0)["total"]
        dl, de = nd(c)
        rel = {}
        for k, (w2, h2) in relaxed.items():
            r = np.random.default_rng()
            r.bit_generator.state = state
            _, lv = w2.recompute(c)
            rel[k] = (lv - lv0, h2.local_energy(w2, c, r)["total"])
        wf.recompute(c)
        rows.append((el0, dl, de, rel))
    print(f"water ccECP/ccecp-cc-pvdz, RHF orbitals x optimised Jastrow, {nwalkers} walkers x {nsteps} steps")
    print("component   frozen-MO force   relaxed-orbital force   difference (self-consistency error), Ha/Bohr")
    for a, x in ((0, 2), (1, 1), (1, 2)):
        fr, rx = [], []
        for batch in np.array_split(np.arange(nsteps), nbatch):
            el = np.concatenate([rows[i][0] for i in batch])
            dl = np.concatenate([rows[i][1][:, a, x] for i in batch])
            de = np.concatenate([rows[i][2][:, a, x] for i in batch])
            fr.append(zvzb(np.array([el.mean()]), np.array([[[de.mean()]]]), np.array([[[dl.mean()]]]),
                           np.array([[[(el * dl).mean()]]]))[0][0, 0])
            e = []
            for s in (1, -1):
                lw = np.concatenate([2 * rows[i][3][(a, x, s)][0] for i in batch])
                ep = np.concatenate([rows[i][3][(a, x, s)][1] for i in batch])
                w = np.exp(lw - lw.max())
                e.append(np.dot(w, ep) / w.sum())
            rx.append(-(e[0] - e[1]) / (2 * H))
        fr, rx = np.array(fr), np.array(rx)
        d = rx - fr
        sem = lambda v: v.std(ddof=1) / np.sqrt(v.size)  # noqa: E731
        print(f"{'O' if a == 0 else 'H'}{a} {'xyz'[x]}       {fr.mean():+.4f}({sem(fr):.4f})      {rx.mean():+.4f}({sem(rx):.4f})"
              f"          {d.mean():+.4f}({sem(d):.4f})")


if __name__ == "__main__":
    main()
