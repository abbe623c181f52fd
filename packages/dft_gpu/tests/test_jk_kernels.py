"""CPU J/K kernels: the numba micro-kernel half-transform and the fused block contraction.

Oracles: NumPy products (einsum/matmul) of the same arrays, the array-generic BLAS block contraction
(``contract_block_generic``, itself checked against PySCF in test_jk.py), and PySCF's DF get_jk.
"""

import numpy as np
import pytest
from pyscf import df, gto

from rung.dft_gpu._kernels import _fused, _simd, cpu
from rung.dft_gpu.jk import JKEngine


def _sym_block(nblk, nao, seed):
    b = np.random.default_rng(seed).standard_normal((nblk, nao, nao))
    return np.ascontiguousarray(b + b.transpose(0, 2, 1))


@pytest.mark.parametrize("nv", sorted(_simd.TILES))
def test_tile_matches_numpy_and_writes_only_its_tile(nv):
    from numba import njit

    tile = _simd.TILES[nv]
    mr = _simd.ROWS[nv]

    @njit
    def run(b, boff, ldb, nrows, f, foff, ldf, x, xoff, ldx, ncols, nk, pfoff):
        tile(b, boff, ldb, nrows, f, foff, ldf, x, xoff, ldx, ncols, nk, pfoff)

    rng = np.random.default_rng(nv)
    nk, ldb, ldf, ldx = 37, 41, 8 * nv + 3, 8 * nv + 5
    b = rng.standard_normal(3 + mr * ldb)
    f = rng.standard_normal(2 + nk * ldf)
    for nrows, ncols in [(mr, 8 * nv), (1, 1), (max(mr - 1, 1), 8 * nv - 3)]:
        x = np.full(7 + mr * ldx, np.nan)
        run(b, 3, ldb, nrows, f, 2, ldf, x, 7, ldx, ncols, nk, 5 * ldb)
        bm = b[3:3 + mr * ldb].reshape(mr, ldb)[:nrows, :nk]
        fm = f[2:2 + nk * ldf].reshape(nk, ldf)[:, :ncols]
        got = x[7:7 + mr * ldx].reshape(mr, ldx)
        np.testing.assert_allclose(got[:nrows, :ncols], bm @ fm, rtol=0, atol=1e-12)
        assert np.isnan(got[:nrows, ncols:]).all() and np.isnan(got[nrows:]).all() and np.isnan(x[:7]).all()


@pytest.mark.parametrize("ranks", [(5,), (34, 33), (47,), (3, 16, 9)])
def test_fused_block_matches_numpy(ranks):
    nao, nblk = 23, 5
    b = _sym_block(nblk, nao, 1)
    rng = np.random.default_rng(2)
    fs = [rng.standard_normal((nao, r)) for r in ranks]
    ldf = 8 * ((max(ranks) + 7) // 8)
    f = np.zeros((len(ranks), nao, ldf))
    for g, fg in enumerate(fs):
        f[g, :, :fg.shape[1]] = fg
    r = np.array(ranks, dtype=np.int64)
    xoffs = np.concatenate([[0], np.cumsum(nao * nblk * r)[:-1]]).astype(np.int64)
    gdm = np.array([min(g, 1) for g in range(len(ranks))], dtype=np.int64)
    gsign = np.array([1.0 if g != 2 else -1.0 for g in range(len(ranks))])
    n_dm = int(gdm.max()) + 1
    x = np.empty(int(nao * nblk * r.sum()))
    rho = np.empty((len(ranks), nblk))
    vj = np.zeros((n_dm, nao * nao))
    _fused.fused_block(b.reshape(-1), nblk, nao, f.reshape(-1), ldf, r, xoffs, gdm, gsign, x, rho, vj, True)
    rho_dm = np.zeros((n_dm, nblk))
    for g, fg in enumerate(fs):
        want = np.einsum("Lqp,pi->qLi", b, fg)
        got = x[xoffs[g]:xoffs[g] + want.size].reshape(want.shape)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
        np.testing.assert_allclose(rho[g], np.einsum("qLi,qi->L", want, fg), rtol=0, atol=1e-11)
        rho_dm[gdm[g]] += gsign[g] * rho[g]
    j = np.einsum("nL,Lqp->nqp", rho_dm, b)
    low = np.tril(np.ones((nao, nao), dtype=bool))
    np.testing.assert_allclose(vj.reshape(n_dm, nao, nao)[:, low], j[:, low], rtol=0, atol=1e-11)
    assert not vj.reshape(n_dm, nao, nao)[:, ~low].any()


@pytest.mark.parametrize("j_from_factors", [True, False])
def test_contract_block_matches_generic(monkeypatch, j_from_factors):
    """Both CPU paths give the same J/K for factor groups of two densities (one with a negative part)."""
    nao, nblk = 19, 6
    b = _sym_block(nblk, nao, 3)
    rng = np.random.default_rng(4)
    fa, fb, fneg = rng.standard_normal((nao, 7)), rng.standard_normal((nao, 12)), rng.standard_normal((nao, 3))
    factors = np.ascontiguousarray(np.concatenate([fa, fb, fneg], axis=1).T)
    groups = [(0, 0, 7, 1), (1, 7, 19, 1), (1, 19, 22, -1)]
    dms = np.stack([fa @ fa.T, fb @ fb.T - fneg @ fneg.T])
    direct = [(1, rng.standard_normal((nao, nao)))]
    out = {}
    for name, fn in [("fused", cpu.contract_block), ("generic", cpu.contract_block_generic)]:
        monkeypatch.setattr(cpu, "USE_MICROKERNEL", True)
        vj, vk = np.zeros((2, nao * nao)), np.zeros((2, nao, nao))
        fn(b, dms.reshape(2, -1), factors, groups, direct, vj, vk, j_from_factors=j_from_factors)
        out[name] = vj, vk
    for a, w in zip(out["fused"], out["generic"]):
        np.testing.assert_allclose(a, w, rtol=0, atol=1e-11)
    vj_ref = np.einsum("Lpq,nqp,Lrs->nrs", b, dms, b).reshape(2, -1)
    np.testing.assert_allclose(out["fused"][0], vj_ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("microkernel", [True, False])
def test_engine_both_cpu_paths_match_pyscf(monkeypatch, microkernel):
    """The engine's numba backend agrees with PySCF through the micro-kernel and through plain BLAS."""
    monkeypatch.setattr(cpu, "USE_MICROKERNEL", microkernel)
    mol = gto.M(atom="O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692", basis="ccecp-cc-pvdz",
                ecp="ccecp", verbose=0)
    aux = "def2-universal-jkfit"
    ref = df.DF(mol, aux)
    ref.build()
    d = np.random.default_rng(5).standard_normal((2, mol.nao, mol.nao))
    dms = d + d.transpose(0, 2, 1)
    vj, vk = JKEngine(mol, aux, backend="numba").get_jk(dms)
    vj0, vk0 = ref.get_jk(dms, hermi=1)
    np.testing.assert_allclose(vj, vj0, rtol=0, atol=1e-10)
    np.testing.assert_allclose(vk, vk0, rtol=0, atol=1e-10)


@pytest.mark.parametrize("omega, max_memory_mb", [(None, None), (0.3, 0.6)])
def test_engine_microkernel_uhf_orbitals_match_pyscf(monkeypatch, omega, max_memory_mb):
    """UHF densities tagged with their orbitals (occupied-orbital K, two groups), long-range operator,
    and a memory cap that streams the tensor in several aux blocks, all through the micro-kernel."""
    from pyscf import scf

    monkeypatch.setattr(cpu, "USE_MICROKERNEL", True)
    mol = gto.M(atom="N 0 0 0.14; H 0 0.80 -0.49; H 0 -0.80 -0.49", basis="ccecp-cc-pvdz", ecp="ccecp",
                spin=1, verbose=0)
    aux = "def2-universal-jkfit"
    mf = scf.UHF(mol).density_fit(auxbasis=aux)
    mf.kernel()
    dm = mf.make_rdm1()
    eng = JKEngine(mol, aux, omega=omega, backend="numba", max_memory_mb=max_memory_mb)
    if max_memory_mb is not None:
        assert not eng.cached and eng.block_size(mol.nelectron, 2) < eng.naux
    vj, vk = eng.get_jk(dm)
    vj0, vk0 = mf.with_df.get_jk(dm, hermi=1, omega=omega)
    np.testing.assert_allclose(vj, vj0, rtol=0, atol=1e-10)
    np.testing.assert_allclose(vk, vk0, rtol=0, atol=1e-10)
