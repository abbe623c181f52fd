"""Helpers for testing the selected-CI rung against PySCF (test oracles; they need only PySCF)."""

from pathlib import Path

import numpy as np

# H2O/6-31G FCIDUMP (PySCF), shipped with the package so a clone runs its tests and benchmarks
REFERENCE_FCIDUMP = str(Path(__file__).with_name("data") / "FCIDUMP.h2o_631g")


def random_hamiltonian(norb, nelec, seed=0, scale=0.3):
    """Random real integrals with the 8-fold symmetry, diagonally dominant h1 (a test Hamiltonian)."""
    from pyscf import ao2mo

    from rung.sci.fcidump import Hamiltonian

    rng = np.random.default_rng(seed)
    h1 = rng.normal(size=(norb, norb)) * scale
    h1 = h1 + h1.T + np.diag(np.arange(norb) * 1.0)
    eri = ao2mo.restore(1, ao2mo.restore(8, rng.normal(size=(norb,) * 4) * scale, norb), norb)
    return Hamiltonian(h1, eri, 1.5, nelec)


def fci_space(layout):
    """Every determinant of the space in PySCF's address order (alpha string major), (n, 2, nw)."""
    from pyscf.fci import cistring

    sa = cistring.make_strings(range(layout.norb), layout.na)
    sb = cistring.make_strings(range(layout.norb), layout.nb)
    dets = np.zeros((len(sa) * len(sb), 2, layout.nw), np.uint64)
    for s, strings, rep in ((0, sa, True), (1, sb, False)):
        v = np.repeat(strings, len(sb)) if rep else np.tile(strings, len(sa))
        for k in range(layout.nw):
            dets[:, s, k] = np.array([(int(x) >> (64 * k)) & ((1 << 64) - 1) for x in v], dtype=np.uint64)
    return dets


def pyscf_dense_h(ham):
    """Dense FCI H (PySCF's ``direct_spin1.pspace`` over the whole space), Hartree, core energy excluded.

    Rows and columns in PySCF's address order (alpha string major, as :func:`fci_space`).
    """
    from pyscf import fci
    from pyscf.fci import cistring

    n = cistring.num_strings(ham.norb, ham.nelec[0]) * cistring.num_strings(ham.norb, ham.nelec[1])
    addr, h0 = fci.direct_spin1.pspace(ham.h1, ham.eri, ham.norb, ham.nelec, np=n)
    out = np.zeros((n, n))
    out[np.ix_(addr, addr)] = h0
    return out
