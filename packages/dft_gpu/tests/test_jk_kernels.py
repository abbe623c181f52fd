"""CPU J/K kernels: the numba micro-kernel half-transform on the packed tensor and the block contraction.

Oracles: NumPy products (einsum/matmul) of the same arrays (the packed tensor unpacked by PySCF), the
array-generic BLAS block contraction on the square tensor (``contract_block_generic``, itself checked
against PySCF in test_jk.py), and PySCF's DF get_jk.
"""

import numpy as np
import pytest
from pyscf import df, gto, lib

from rung.dft_gpu._kernels import _simd, cpu
from rung.dft_gpu.jk import JKEngine


def _sym_block(nblk, nao, seed):
    b = np.random.default_rng(seed).standard_normal((nblk, nao, nao))
    return np.ascontiguousarray(b + b.transpose(0, 2, 1))


@pytest.mark.parametrize("nv", sorted(_simd.SYMTILES))
@pytest.mark.parametrize("n", [29, 24])
def test_symtile_sweep_matches_numpy_and_writes_only_its_rows(nv, n):
    """Tiles in increasing q0 (a short first tile when n is not a multiple of MR) leave X = B F for the
    packed symmetric B; nothing outside X's rows and first ncols columns is written."""
    from numba import njit

    tile = _simd.SYMTILES[nv]
    mr = _simd.ROWS[nv]

    @njit
    def sweep(b, boff, n, f, foff, ldf, x, xoff, ldx, ncols, pf):
        nrows = n % mr if n % mr else mr
        q0 = 0
        while q0 < n:
            tile(b, boff, q0, nrows, f, foff, ldf, x, xoff, ldx, ncols, pf)
            q0 += nrows
            nrows = mr

    rng = np.random.default_rng(10 * nv + n)
    bsq = _sym_block(1, n, n)[0]
    b = np.concatenate([rng.standard_normal(3), lib.pack_tril(bsq)])
    ldf, ldx = 8 * nv + 8, 8 * nv + 5
    f = rng.standard_normal(2 + n * ldf)
    for ncols in (8 * nv, 8 * nv - 3, 1):
        for pf in (0, 40):
            x = np.full(7 + n * ldx + 4, np.nan)
            sweep(b, 3, n, f, 2, ldf, x, 7, ldx, ncols, pf)
            fm = f[2:2 + n * ldf].reshape(n, ldf)[:, :ncols]
            got = x[7:7 + n * ldx].reshape(n, ldx)
            np.testing.assert_allclose(got[:, :ncols], bsq @ fm, rtol=0, atol=1e-12)
            assert np.isnan(got[:, ncols:]).all() and np.isnan(x[:7]).all() and np.isnan(x[7 + n * ldx:]).all()


@pytest.mark.parametrize("nc", sorted(_simd.NARROWTILES))
@pytest.mark.parametrize("n", [29, 24, 5])
def test_narrowtile_sweep_matches_numpy_and_writes_only_its_rows(nc, n):
    """The narrow tile (lanes along the packed rows) swept over a packed symmetric B leaves X = B F in
    the column-major accumulator; rows past n are untouched (short first tile, masked vector tails, an
    n below one vector)."""
    from numba import njit

    tile = _simd.NARROWTILES[nc]
    mr = _simd.NARROW_ROWS[nc]

    @njit
    def sweep(b, boff, n, fc, ldc, xc):
        nrows = n % mr if n % mr else mr
        q0 = 0
        while q0 < n:
            tile(b, boff, q0, nrows, fc, ldc, xc)
            q0 += nrows
            nrows = mr

    rng = np.random.default_rng(100 * nc + n)
    bsq = _sym_block(1, n, n)[0]
    b = np.concatenate([rng.standard_normal(3), lib.pack_tril(bsq)])
    ldc = n + 5
    fm = rng.standard_normal((n, nc))
    fc = np.full((nc, ldc), np.nan)
    fc[:, :n] = fm.T
    xc = np.full((nc, ldc), np.nan)
    xc[:, :n] = 0.0
    sweep(b, 3, n, fc.reshape(-1), ldc, xc.reshape(-1))
    np.testing.assert_allclose(xc[:, :n].T, bsq @ fm, rtol=0, atol=1e-12)
    assert np.isnan(xc[:, n:]).all()


@pytest.mark.parametrize("ranks", [(5,), (2,), (34, 33), (47,), (3, 16, 9), (35, 1)])
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
    ldxs = nblk * r + 3  # padded rows: the kernel must use the stride it is given
    xoffs = np.concatenate([[0], np.cumsum(nao * ldxs)[:-1]]).astype(np.int64)
    gdm = np.array([min(g, 1) for g in range(len(ranks))], dtype=np.int64)
    gsign = np.array([1.0 if g != 2 else -1.0 for g in range(len(ranks))])
    n_dm = int(gdm.max()) + 1
    x = np.empty(int(nao * ldxs.sum()))
    rho = np.empty((len(ranks), nblk))
    vj = np.zeros((n_dm, nao * (nao + 1) // 2))
    _simd.fused_block(lib.pack_tril(b).reshape(-1), nblk, nao, f.reshape(-1), ldf, r, xoffs, ldxs, gdm, gsign,
                       x, rho, vj, True)
    rho_dm = np.zeros((n_dm, nblk))
    for g, fg in enumerate(fs):
        want = np.einsum("Lqp,pi->qLi", b, fg)
        got = x[xoffs[g]:xoffs[g] + nao * ldxs[g]].reshape(nao, ldxs[g])[:, :nblk * r[g]].reshape(want.shape)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
        np.testing.assert_allclose(rho[g], np.einsum("qLi,qi->L", want, fg), rtol=0, atol=1e-11)
        rho_dm[gdm[g]] += gsign[g] * rho[g]
    j = np.einsum("nL,Lqp->nqp", rho_dm, b)
    np.testing.assert_allclose(lib.unpack_tril(vj, filltriu=lib.SYMMETRIC), j, rtol=0, atol=1e-11)


@pytest.mark.parametrize("j_from_factors", [True, False])
def test_contract_block_packed_matches_generic(j_from_factors):
    """The packed block through the micro-kernel and the square block through plain GEMMs give the same
    J/K for factor groups of two densities (one with a negative part) and a direct-K density."""
    nao, nblk = 19, 6
    b = _sym_block(nblk, nao, 3)
    rng = np.random.default_rng(4)
    fa, fb, fneg = rng.standard_normal((nao, 7)), rng.standard_normal((nao, 12)), rng.standard_normal((nao, 3))
    factors = np.ascontiguousarray(np.concatenate([fa, fb, fneg], axis=1).T)
    groups = [(0, 0, 7, 1), (1, 7, 19, 1), (1, 19, 22, -1)]
    dms = np.stack([fa @ fa.T, fb @ fb.T - fneg @ fneg.T])
    direct = [(1, rng.standard_normal((nao, nao)))]
    vj, vk = np.zeros((2, nao * (nao + 1) // 2)), np.zeros((2, nao, nao))
    cpu.contract_block(lib.pack_tril(b), cpu.pack_density(dms), factors, groups, direct, vj, vk,
                       j_from_factors=j_from_factors)
    vj_sq, vk_sq = np.zeros((2, nao * nao)), np.zeros((2, nao, nao))
    cpu.contract_block_generic(b, dms.reshape(2, -1), factors, groups, direct, vj_sq, vk_sq,
                               j_from_factors=j_from_factors)
    vj = lib.unpack_tril(vj, filltriu=lib.SYMMETRIC)
    np.testing.assert_allclose(vj, vj_sq.reshape(2, nao, nao), rtol=0, atol=1e-11)
    np.testing.assert_allclose(vk, vk_sq, rtol=0, atol=1e-11)
    np.testing.assert_allclose(vj, np.einsum("Lpq,nqp,Lrs->nrs", b, dms, b), rtol=0, atol=1e-10)


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
    eng = JKEngine(mol, aux, backend="numba")
    assert eng.packed == microkernel
    vj, vk = eng.get_jk(dms)
    vj0, vk0 = ref.get_jk(dms, hermi=1)
    np.testing.assert_allclose(vj, vj0, rtol=0, atol=1e-10)
    np.testing.assert_allclose(vk, vk0, rtol=0, atol=1e-10)


@pytest.mark.parametrize("omega, max_memory_mb", [(None, None), (0.3, 0.3)])
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
    assert eng.packed
    if max_memory_mb is not None:
        assert not eng.cached and eng.block_size(mol.nelectron, 2) < eng.naux
    vj, vk = eng.get_jk(dm)
    vj0, vk0 = mf.with_df.get_jk(dm, hermi=1, omega=omega)
    np.testing.assert_allclose(vj, vj0, rtol=0, atol=1e-10)
    np.testing.assert_allclose(vk, vk0, rtol=0, atol=1e-10)


@pytest.mark.parametrize("hermi", [1, 0])
def test_packed_engine_memory_cap_is_honoured(monkeypatch, hermi):
    """The packed tensor streamed under a memory cap: the traced peak of a call stays under the cap (also
    for hermi=0, whose direct K unpacks each block), and J/K equal the NumPy reference's."""
    import tracemalloc

    monkeypatch.setattr(cpu, "USE_MICROKERNEL", True)
    mol = gto.M(atom="O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692", basis="ccecp-cc-pvdz",
                ecp="ccecp", verbose=0)
    aux = "def2-universal-jkfit"
    d = np.random.default_rng(6).standard_normal((2, mol.nao, mol.nao))
    dms = d + d.transpose(0, 2, 1) if hermi else d
    full = JKEngine(mol, aux, backend="numba")
    assert full.packed and full.cached
    full.get_jk(dms, hermi=hermi)  # compiles the kernels outside the traced call
    vj0, vk0 = JKEngine(mol, aux, backend="numpy").get_jk(dms, hermi=hermi)  # the NumPy reference
    cap_mb = 0.45  # the packed tensor alone is ~0.24 MiB
    capped = JKEngine(mol, aux, backend="numba", max_memory_mb=cap_mb)
    assert capped.packed and not capped.cached
    assert 1 <= capped.block_size(mol.nao, 2, direct=not hermi) < capped.naux
    tracemalloc.start()
    vj, vk = capped.get_jk(dms, hermi=hermi)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak <= cap_mb * 2**20, f"peak {peak / 2**20:.3f} MiB over the {cap_mb} MiB cap"
    np.testing.assert_allclose(vj, vj0, rtol=0, atol=1e-10)
    np.testing.assert_allclose(vk, vk0, rtol=0, atol=1e-10)


def test_packed_engine_j_only_and_scf_match_pyscf(monkeypatch):
    """J alone (GEMMs on the packed blocks with the packed symmetrised density, as an RKS-PBE SCF asks
    for it) and a whole RKS-PBE SCF through the packed path, against PySCF's DF."""
    from pyscf import dft

    from rung.dft_gpu.jk import accelerate

    monkeypatch.setattr(cpu, "USE_MICROKERNEL", True)
    mol = gto.M(atom="O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692", basis="ccecp-cc-pvdz",
                ecp="ccecp", verbose=0)
    aux = "def2-universal-jkfit"
    d = np.random.default_rng(7).standard_normal((mol.nao, mol.nao))
    eng = JKEngine(mol, aux, backend="numba")
    assert eng.packed
    vj, vk = eng.get_jk(d, hermi=0, with_k=False)
    assert vk is None
    ref = df.DF(mol, aux)
    ref.build()
    np.testing.assert_allclose(vj, ref.get_jk(d, hermi=0, with_k=False)[0], rtol=0, atol=1e-10)
    mf = dft.RKS(mol, xc="pbe")
    mf.grids.level = 1
    ours = accelerate(mf, auxbasis=aux, backend="numba")
    e = ours.kernel()
    assert ours.jk_engines and all(x.packed for x in ours.jk_engines.values())
    e0 = mf.density_fit(auxbasis=aux).kernel()
    assert abs(e - e0) < 1e-8, (e, e0)


@pytest.mark.parametrize("pyscf_in_memory", [True, False])
def test_packed_engine_caches_pyscf_tensor_matches_pyscf(monkeypatch, pyscf_in_memory):
    """The packed engine caches PySCF's tensor: PySCF's in-memory array itself (no second copy), or,
    with PySCF's tensor on its temporary HDF5 file (its memory limit forced to ~1 MiB) while the
    engine's budget holds it, a copy read from the file. J/K equal PySCF's DF get_jk either way."""
    from rung.dft_gpu import jk

    monkeypatch.setattr(cpu, "USE_MICROKERNEL", True)
    if not pyscf_in_memory:
        monkeypatch.setattr(jk, "_current_rss_mb", lambda: -999.0)  # PySCF's max_memory = 1000 - 999 MiB
    seen = []
    load_all = JKEngine._load_all

    def spy(self):
        source = self._df._cderi
        out = load_all(self)
        seen.append((isinstance(source, np.ndarray), out is source))
        return out

    monkeypatch.setattr(JKEngine, "_load_all", spy)
    mol = gto.M(atom="O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692", basis="ccecp-cc-pvdz",
                ecp="ccecp", verbose=0)
    aux = "def2-universal-jkfit"
    eng = JKEngine(mol, aux, backend="numba", max_memory_mb=1000)
    assert eng.packed and eng.cached
    assert seen == [(pyscf_in_memory, pyscf_in_memory)]
    d = np.random.default_rng(8).standard_normal((2, mol.nao, mol.nao))
    dms = d + d.transpose(0, 2, 1)
    ref = df.DF(mol, aux)
    ref.build()
    vj, vk = eng.get_jk(dms)
    vj0, vk0 = ref.get_jk(dms, hermi=1)
    np.testing.assert_allclose(vj, vj0, rtol=0, atol=1e-10)
    np.testing.assert_allclose(vk, vk0, rtol=0, atol=1e-10)
