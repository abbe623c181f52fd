"""Density-fitted Coulomb (J) and exchange (K) matrices from batched GEMMs, with a device-cached tensor.

Contract
--------
:class:`JKEngine` builds the Cholesky-decomposed 3-index tensor of a molecule once with PySCF's
integral code (``pyscf.df``), keeps it on the compute device when it fits the memory budget (otherwise
streams it there aux block by aux block on every call), and returns J and K for a batch of
density matrices. :func:`accelerate` returns a copy of a PySCF RHF/UHF/RKS/UKS object whose ``get_jk``
(and ``get_k(omega=...)``, for range-separated hybrids) run on such engines; PySCF itself is not
modified and the caller's object is left untouched.

Equations
---------
With the 2-centre metric ``V[P,Q] = (P|Q)`` factorised as ``V = L L^T`` and the 3-centre integrals
``(pq|P)``, the tensor is ``B[L,p,q] = sum_P (L^-1)[L,P] (P|pq)``, so that
``(pq|rs) ~ sum_L B[L,p,q] B[L,r,s]`` (robust Coulomb-metric fitting; Whitten, J. Chem. Phys. 58,
4496 (1973); Weigend, Phys. Chem. Chem. Phys. 4, 4285 (2002)). For each density matrix ``D``:

    J[p,q] = sum_L B[L,p,q] rho[L],      rho[L] = sum_rs B[L,r,s] D[s,r]
    K[p,s] = sum_L (B_L D B_L)[p,s]

When ``D = sum_i n_i C[:,i] C[:,i]^T`` comes with its orbitals (PySCF tags density matrices with
``mo_coeff``/``mo_occ``), K uses the occupied-orbital factorisation ``F = C_occ sqrt(n_occ)``:

    X[i,L,q] = sum_p F[p,i] B[L,p,q],    K[q,s] = sum_{iL} X[i,L,q] X[i,L,s]

costing ``2 naux nao^2 nocc`` (GEMM) + ``naux nao^2 nocc`` (SYRK) FLOPs instead of ``4 naux nao^3``.
The fitted density then comes from the same intermediate, ``rho[L] = sum_iq X[i,L,q] F[q,i]``, so each
aux block of the tensor is read once per call for J and K together.
A symmetric density without orbitals is factorised by its eigenvectors (positive and negative parts
separately, ``D = F+ F+^T - F- F-^T``); a non-symmetric one (``hermi=0``) takes the direct form.
Range-separated exchange uses an engine built with ``omega``: the same algebra on the tensor of the
attenuated operator ``erf(omega r)/r`` (``omega > 0``) or ``erfc(|omega| r)/r`` (``omega < 0``).

Names: ``nao`` atomic orbitals, ``naux`` auxiliary functions, ``dm`` density matrix (AO basis),
``n_dm`` density matrices in one batch (2 for UHF).

Auxiliary basis
---------------
:data:`DEFAULT_AUXBASIS` (``"etb"``: PySCF's even-tempered set, the one PySCF itself picks for the
ccECP basis sets, ~8.5 nao functions) was chosen by measuring ωB97M-D3BJ DF errors against
conventional SCF in ccecp-cc-pvdz (table in ``BENCHMARKS.md``): the JK-fit sets tried
(def2-universal-jkfit, cc-pvdz-jkfit, cc-pvtz-jkfit; 5-6 nao) miss the 2e-5 Hartree / 1e-5
Hartree/Bohr targets already for glycine.

Gradients
---------
The returned SCF object is a PySCF density-fitting object (same auxiliary basis), so
``nuc_grad_method()`` gives PySCF's DF gradient; its J/K derivative terms are PySCF's unless
:func:`rung.dft_gpu.gradients.speed_up` is applied, which takes them (closed shells) from this
engine's cached tensors and one set of derivative integrals per operator.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import time

import numpy as np

from rung.core.backend import BACKENDS, resolve

log = logging.getLogger(__name__)

DEFAULT_AUXBASIS = "etb"


def resolve_auxbasis(mol, auxbasis=None):
    """The auxiliary basis to use for ``mol``, in PySCF's basis format.

    Parameters
    ----------
    mol : pyscf.gto.Mole
    auxbasis : str, dict or None
        None: :data:`DEFAULT_AUXBASIS`. ``"etb"`` or ``"etb:<beta>"``: PySCF's even-tempered set built
        from the orbital basis (``pyscf.df.addons.aug_etb``, exponent ratio ``beta``, default 2.0).
        Anything else is passed to PySCF unchanged (a named set such as ``"cc-pvtz-jkfit"``, a dict).
    """
    if auxbasis is None:
        auxbasis = DEFAULT_AUXBASIS
    if isinstance(auxbasis, str) and (auxbasis == "etb" or auxbasis.startswith("etb:")):
        from pyscf.df.addons import aug_etb

        beta = float(auxbasis[4:]) if auxbasis.startswith("etb:") else 2.0
        return aug_etb(mol, beta=beta)
    return auxbasis

#: Largest aux block contracted at once on the square tensor (the packed path: ``cpu.PACKED_BLOCK``).
MAX_BLOCK = 256
_MB = 1024**2


def _kernels(backend: str):
    if backend == "numba":
        from rung.dft_gpu._kernels import cpu

        return cpu
    if backend == "cupy":
        from rung.dft_gpu._kernels import gpu

        return gpu
    return None


def check_auxbasis(mol, auxmol) -> None:
    """Raise ``ValueError`` when an atom of ``mol`` has no auxiliary functions in ``auxmol``."""
    missing = sorted({mol.atom_symbol(i) for i in range(mol.natm) if mol.atom_pure_symbol(i) != "Ghost"
                      and not any(auxmol.bas_atom(b) == i for b in range(auxmol.nbas))})
    if missing:
        raise ValueError(f"auxiliary basis {auxmol.basis!r} has no functions for element(s) {', '.join(missing)}; "
                         "pass an auxbasis that covers every element of the molecule")


class JKEngine:
    """Density-fitted J/K for one molecule, one auxiliary basis and one range-separation parameter.

    Parameters
    ----------
    mol : pyscf.gto.Mole
        Built molecule (ECPs allowed: they do not enter J/K).
    auxbasis : str or dict, optional
        Auxiliary basis (see :func:`resolve_auxbasis`); default :data:`DEFAULT_AUXBASIS`.
    omega : float, optional
        Range-separation parameter, Bohr^-1: ``> 0`` long-range ``erf(omega r)/r``, ``< 0``
        short-range ``erfc(|omega| r)/r``; None or 0 for the full Coulomb operator.
    backend : {"auto", "numpy", "numba", "cupy"}
        ``numpy``: the reference kernel (slow oracle); ``numba``: the CPU kernels (BLAS GEMMs on the
        square tensor or, for ``nao >= 120`` on AVX-512 CPUs, the packed tensor with a numba
        micro-kernel for the exchange half-transform and J fused into the same pass over the tensor;
        see ``_kernels/cpu.py``); ``cupy``: GPU.
        ``auto`` takes the GPU when CuPy and a device are present, else ``numba``.
    max_memory_mb : float, optional
        Cap, MiB, on what the engine holds on its compute device (the cached tensor, and the work
        arrays of one call). The tensor is cached when it fits, else streamed in aux blocks.
        Default: PySCF's ``mol.max_memory`` on the CPU, 80% of the free device memory on the GPU.

    Attributes
    ----------
    nao, naux : int
    cached : bool
        True when the tensor is resident on the compute device.
    packed : bool
        The tensor is kept (and contracted) as packed lower triangles, ``(naux, nao (nao+1)/2)``;
        else square, ``(naux, nao, nao)``.
    timings : dict
        Accumulated wall time (s) of the tensor build (``build_s``) and of J/K calls (``jk_s``),
        and the number of calls (``calls``). Diagnostics only.
    """

    def __init__(self, mol, auxbasis=None, omega=None, backend: str = "auto", max_memory_mb: float | None = None):
        from pyscf import df, gto

        if not isinstance(mol, gto.Mole) or mol._atm is None or not mol.natm:
            raise ValueError("mol must be a built pyscf.gto.Mole with at least one atom")
        if getattr(mol, "cart", False):
            raise ValueError("Cartesian basis functions (mol.cart=True) are not supported; use spherical")
        self.backend = resolve(backend)
        self.auxbasis = resolve_auxbasis(mol, auxbasis)
        self.omega = None if omega is None or float(omega) == 0.0 else float(omega)
        self.nao = mol.nao_nr()
        if max_memory_mb is None:
            max_memory_mb = self._default_memory_mb(mol)
        if not max_memory_mb > 0:
            raise ValueError(f"max_memory_mb must be positive, got {max_memory_mb!r}")
        self.max_memory_mb = float(max_memory_mb)
        self._kern = _kernels(self.backend)
        if self.backend == "cupy":
            import cupy

            self._xp = cupy
        else:
            self._xp = np
        self.timings = {"build_s": 0.0, "jk_s": 0.0, "calls": 0}

        t0 = time.perf_counter()
        m = mol.copy()  # private copy: omega lives in the Mole's _env
        if self.omega is not None:
            m.omega = self.omega
        auxmol = df.addons.make_auxmol(m, self.auxbasis)
        check_auxbasis(m, auxmol)
        self.auxmol = auxmol  # the auxiliary basis as a Mole (with omega): the gradient's integrals reuse it
        dfobj = df.DF(m, self.auxbasis)
        dfobj.verbose = 0
        # keep PySCF's packed tensor in memory only when it fits the budget; else it goes to a temp file
        dfobj.max_memory = max(self.max_memory_mb, 1.0) + _current_rss_mb()
        dfobj.build()
        self._df = dfobj
        self.naux = dfobj.get_naoaux()
        self.packed = self.backend == "numba" and self._kern.takes_packed(self.nao)
        self._max_block = self._kern.PACKED_BLOCK if self.packed else MAX_BLOCK
        reserve = self._work_bytes(min(self.naux, self._max_block), self.nao, 4, streamed=False)
        self.cached = self._full_bytes() + reserve <= self.budget_bytes
        self._cderi = None
        if self.cached:
            self._cderi = self._load_all()
            self._df = None  # the cached tensor holds everything; drop PySCF's DF object
        self.timings["build_s"] += time.perf_counter() - t0
        log.info("JKEngine: nao=%d naux=%d omega=%s backend=%s cached=%s (%.1f MiB)", self.nao, self.naux,
                 self.omega, self.backend, self.cached, self._full_bytes() / _MB)

    # -- memory bookkeeping -------------------------------------------------------------------------
    @property
    def budget_bytes(self) -> float:
        return self.max_memory_mb * _MB

    def _default_memory_mb(self, mol) -> float:
        if self.backend == "cupy":
            import cupy

            free, _ = cupy.cuda.runtime.memGetInfo()
            return 0.8 * free / _MB
        return float(mol.max_memory)

    def _full_bytes(self) -> int:
        return 8 * self.naux * self._per_aux()

    def _per_aux(self) -> int:
        """float64 numbers per aux function of the tensor as this engine keeps it."""
        return self.nao * (self.nao + 1) // 2 if self.packed else self.nao * self.nao

    def _packed_resident_bytes(self) -> int:
        """Host bytes of PySCF's in-memory packed tensor (counted on the CPU backends only)."""
        if self.cached or self.backend == "cupy" or not isinstance(self._df._cderi, np.ndarray):
            return 0
        return self._df._cderi.nbytes

    def _work_bytes(self, nblk: int, rank: int, n_dm: int, streamed: bool | None = None,
                    direct: bool = True) -> int:
        """Bytes of one call's work arrays for aux blocks of ``nblk`` functions and factor rank ``rank``
        (``direct``: some density takes the direct K, which on the packed path unpacks the block)."""
        nao = self.nao
        per_aux = rank * nao  # K intermediate X
        if (not self.cached) if streamed is None else streamed:
            per_aux += nao * (nao + 1) // 2  # PySCF's packed block
            if not self.packed:
                per_aux += nao * nao  # unpacked block
        if self.packed and direct:
            per_aux += nao * nao  # unpacked block for the direct K
        # vj, vk, their temporaries (direct K, the SYRK result, J's lower triangle and its symmetrisation)
        # and the factors (plus the micro-kernel's zero-padded copy)
        out = (6 * n_dm + 1) * nao * nao + 2 * (rank + 8 * n_dm) * nao
        return 8 * (nblk * per_aux + out)

    def block_size(self, rank: int, n_dm: int, direct: bool = True) -> int:
        """Aux functions per block for a call with factor rank ``rank`` and ``n_dm`` densities
        (``direct``: some density needs the direct, unfactorised K).

        Raises
        ------
        MemoryError
            ``max_memory_mb`` cannot hold even a one-function block.
        """
        resident = self._full_bytes() if self.cached else self._packed_resident_bytes()
        free = self.budget_bytes - resident - self._work_bytes(0, rank, n_dm, direct=direct)
        per_aux = self._work_bytes(1, rank, n_dm, direct=direct) - self._work_bytes(0, rank, n_dm, direct=direct)
        nblk = int(free // per_aux)
        if nblk < 1:
            need = (resident + self._work_bytes(1, rank, n_dm, direct=direct)) / _MB
            raise MemoryError(f"max_memory_mb={self.max_memory_mb:g} is too small for J/K with nao={self.nao}: "
                              f"need at least {need:.1f} MiB")
        return min(nblk, self._max_block, self.naux)

    # -- tensor -------------------------------------------------------------------------------------
    def _load_all(self):
        xp, nao = self._xp, self.nao
        if self.packed and isinstance(self._df._cderi, np.ndarray):
            return self._df._cderi  # PySCF's in-memory tensor is already the packed layout: no copy
        out = xp.empty((self.naux, self._per_aux()) if self.packed else (self.naux, nao, nao))
        b0 = 0
        for packed in self._df.loop(blksize=MAX_BLOCK):
            b1 = b0 + packed.shape[0]
            if self.packed:
                out[b0:b1] = packed
            else:
                self._unpack(packed, out[b0:b1])
            b0 = b1
        return out

    def _unpack(self, packed, out=None):
        if self.backend == "numpy":
            from rung.dft_gpu._kernels.reference import unpack_tril

            res = unpack_tril(np.asarray(packed), self.nao)
            if out is None:
                return res
            out[...] = res
            return out
        if self.backend == "cupy":
            packed = self._xp.asarray(packed)
        return self._kern.unpack_tril(packed, self.nao, out=out)

    def blocks(self, nblk: int):
        """Yield the tensor in aux blocks on the compute device: ``(nblk_i, nao*(nao+1)//2)`` packed
        (:attr:`packed`), else ``(nblk_i, nao, nao)``."""
        if self.cached:
            for b0 in range(0, self.naux, nblk):
                yield self._cderi[b0:b0 + nblk]
            return
        if self.packed:
            for packed in self._df.loop(blksize=nblk):
                yield np.ascontiguousarray(packed)
            return
        buf = self._xp.empty((nblk, self.nao, self.nao))
        for packed in self._df.loop(blksize=nblk):
            yield self._unpack(packed, buf[:packed.shape[0]])

    # -- J and K ------------------------------------------------------------------------------------
    def get_jk(self, dm, hermi: int = 1, with_j: bool = True, with_k: bool = True):
        """J and K for one or several density matrices.

        Parameters
        ----------
        dm : (nao, nao) or (n_dm, nao, nao) float64
            AO density matrices (NumPy, or CuPy with the cupy backend). When tagged with ``mo_coeff``
            (nao, nmo) or (n_dm, nao, nmo) and ``mo_occ`` (nmo,) or (n_dm, nmo) (as PySCF's
            ``make_rdm1`` does) and consistent with them, K uses the occupied orbitals.
        hermi : {0, 1}
            1: the matrices are symmetric (checked); 0: general real matrices.
        with_j, with_k : bool

        Returns
        -------
        vj, vk : same shape as ``dm``, float64, Hartree (None where not requested), on the device
            ``dm`` came from.
        """
        if not (with_j or with_k):
            raise ValueError("nothing to compute: with_j and with_k are both False")
        if hermi not in (0, 1):
            raise ValueError(f"hermi must be 0 or 1 for real density matrices, got {hermi!r}")
        t0 = time.perf_counter()
        xp = self._xp
        from rung.core.backend import get_array_module, to_host

        dm_xp = get_array_module(dm) if hasattr(dm, "shape") else np
        if dm_xp is not np and self.backend != "cupy":
            raise TypeError("density matrix is a CuPy array but the engine runs on the CPU; move it to the host")
        shape = np.shape(dm)
        nao = self.nao
        if len(shape) not in (2, 3) or shape[-2:] != (nao, nao):
            raise ValueError(f"density matrix has shape {shape}; expected ({nao}, {nao}) or (n_dm, {nao}, {nao}) "
                             f"for this molecule (nao={nao})")
        if np.iscomplexobj(dm):
            raise TypeError("complex density matrices are not supported (real RHF/UHF/RKS/UKS only)")
        dms = np.asarray(to_host(dm), dtype=np.float64).reshape(-1, nao, nao)
        n_dm = dms.shape[0]

        factors = groups = None
        direct = []
        j_from_factors = False
        if with_k:
            fac_list, groups, direct_idx, j_from_factors = _factorise(dms, dm, hermi)
            direct = [(i, dms[i]) for i in direct_idx]
            factors = np.ascontiguousarray(np.concatenate(fac_list, axis=1).T) if fac_list else np.zeros((0, nao))
        rank = max(factors.shape[0] if factors is not None else 0, nao if direct else 0, 1)

        if self.backend == "numpy":
            vj, vk = self._get_jk_reference(dms, with_j, with_k)
        else:
            nblk = self.block_size(rank, n_dm, direct=bool(direct))
            if self.packed:
                dm_flat = self._kern.pack_density(dms) if with_j else None
            else:
                dm_flat = xp.asarray(dms.reshape(n_dm, nao * nao)) if with_j else None
            vj = xp.zeros((n_dm, dm_flat.shape[1])) if with_j else None
            vk = xp.zeros((n_dm, nao, nao)) if with_k else None
            fac_dev = xp.asarray(factors) if factors is not None else None
            direct_dev = [(i, xp.asarray(d)) for i, d in direct]
            work = {}
            for block in self.blocks(nblk):
                self._kern.contract_block(block, dm_flat, fac_dev, groups or [], direct_dev, vj, vk,
                                          j_from_factors=j_from_factors and with_j, work=work)
            if vj is not None:
                vj = self._kern.unpack_tril(vj, nao) if self.packed else vj.reshape(n_dm, nao, nao)
            if dm_xp is np:
                vj = None if vj is None else to_host(vj)
                vk = None if vk is None else to_host(vk)
        if len(shape) == 2:
            vj = None if vj is None else vj[0]
            vk = None if vk is None else vk[0]
        self.timings["jk_s"] += time.perf_counter() - t0
        self.timings["calls"] += 1
        return vj, vk

    def _get_jk_reference(self, dms, with_j, with_k):
        from rung.dft_gpu._kernels import reference

        nao = self.nao
        vj = np.zeros_like(dms) if with_j else None
        vk = np.zeros_like(dms) if with_k else None
        nblk = self.block_size(nao, dms.shape[0])
        for block in self.blocks(nblk):
            j, k = reference.get_jk(np.asarray(block), dms, with_j, with_k)
            if with_j:
                vj += j
            if with_k:
                vk += k
        return vj, vk


def _factorise(dms: np.ndarray, dm_tagged, hermi: int):
    """Split every density into K factors: ``D_n = sum_groups sign * F F^T``, or mark it for direct K.

    Returns
    -------
    factors : list of (nao, r) float64
    groups : list of (idm, r0, r1, sign); rows of the stacked ``factors^T``
    direct : list of int, densities needing the direct (unfactorised) K
    exact : bool, every density is reproduced by its factors to 1e-12 (relative), so J may use them
    """
    n_dm, nao, _ = dms.shape
    orbs = _occupied_factors(dms, dm_tagged)
    factors, groups, direct = [], [], []
    exact = True
    r = 0
    for i in range(n_dm):
        d = dms[i]
        scale = max(np.abs(d).max(), 1.0)
        if orbs is not None and orbs[i] is not None:
            parts = [(orbs[i], 1)]
        elif hermi == 1:
            asym = np.abs(d - d.T).max()
            if asym > 1e-10 * scale:
                raise ValueError(f"density matrix {i} is not symmetric (max |D - D^T| = {asym:.2e}) but hermi=1; "
                                 "pass hermi=0")
            w, v = np.linalg.eigh(0.5 * (d + d.T))
            cut = 1e-14 * max(np.abs(w).max(), 1e-300)
            parts = [(v[:, w > cut] * np.sqrt(w[w > cut]), 1), (v[:, w < -cut] * np.sqrt(-w[w < -cut]), -1)]
        else:
            direct.append(i)
            exact = False
            continue
        recon = sum(sign * (f @ f.T) for f, sign in parts)
        exact = exact and np.abs(recon - d).max() <= 1e-12 * scale
        for f, sign in parts:
            if f.shape[1]:
                factors.append(f)
                groups.append((i, r, r + f.shape[1], sign))
                r += f.shape[1]
    return factors, groups, direct, exact and r > 0


def _occupied_factors(dms: np.ndarray, dm_tagged):
    """Occupied-orbital factors ``C_occ sqrt(n_occ)`` from PySCF's tags, per density; None where absent.

    A factor is used only if it reproduces its density matrix (to 1e-10, relative), so a stale tag can
    not change the result; the caller then factorises the density itself.
    """
    mo_coeff = getattr(dm_tagged, "mo_coeff", None)
    mo_occ = getattr(dm_tagged, "mo_occ", None)
    if mo_coeff is None or mo_occ is None:
        return None
    from rung.core.backend import to_host

    n_dm, nao, _ = dms.shape
    mo_coeff = np.asarray(to_host(mo_coeff), dtype=np.float64)
    mo_occ = np.asarray(to_host(mo_occ), dtype=np.float64)
    nmo = mo_occ.shape[-1]
    if mo_coeff.shape[-2:] != (nao, nmo):
        return None
    mo_coeff = mo_coeff.reshape(-1, nao, nmo)
    mo_occ = mo_occ.reshape(-1, nmo)
    if mo_occ.shape[0] * 2 == n_dm and mo_coeff.shape[0] == mo_occ.shape[0]:  # ROHF: one set of orbitals
        mo_coeff = np.concatenate([mo_coeff, mo_coeff])
        mo_occ = np.concatenate([(mo_occ > 0).astype(float), (mo_occ == 2).astype(float)])
    if mo_occ.shape[0] != n_dm or mo_coeff.shape[0] != n_dm:
        return None
    out = []
    for i in range(n_dm):
        occ = mo_occ[i]
        sel = occ > 0
        f = mo_coeff[i][:, sel] * np.sqrt(occ[sel])
        ok = np.all(occ >= 0) and np.abs(f @ f.T - dms[i]).max() <= 1e-10 * max(np.abs(dms[i]).max(), 1.0)
        out.append(f if ok else None)
    return out


def _current_rss_mb() -> float:
    from pyscf import lib

    return float(lib.current_memory()[0])


# -- PySCF integration ------------------------------------------------------------------------------
class _JKAccelerated:
    """Mixin put in front of PySCF's density-fitting SCF class: J/K go through :class:`JKEngine`."""

    __name_mixin__ = "JKEngine"
    _keys = {"jk_backend", "jk_max_memory_mb", "jk_engines"}

    def __init__(self, mf, backend, max_memory_mb):
        self.__dict__.update(mf.__dict__)
        self.jk_backend = backend
        self.jk_max_memory_mb = max_memory_mb
        self.jk_engines = {}

    def jk_engine(self, mol=None, omega=None) -> JKEngine:
        """The engine for ``mol`` (default ``self.mol``) and ``omega``, built on first use."""
        mol = self.mol if mol is None else mol
        omega_key = None if omega is None or float(omega) == 0.0 else round(float(omega), 12)
        fp = _mol_fingerprint(mol, self.with_df.auxbasis)
        if self.jk_engines and next(iter(self.jk_engines))[0] != fp:
            self.jk_engines = {}  # new geometry or basis: drop the old tensors
        key = (fp, omega_key)
        if key not in self.jk_engines:
            budget = self.jk_max_memory_mb
            if budget is not None:
                budget = budget / self._n_engines()
            self.jk_engines[key] = JKEngine(mol, auxbasis=self.with_df.auxbasis, omega=omega_key,
                                            backend=self.jk_backend, max_memory_mb=budget)
        return self.jk_engines[key]

    def _n_engines(self) -> int:
        from pyscf.scf.hf import KohnShamDFT

        if not isinstance(self, KohnShamDFT):
            return 1
        omega, alpha, hyb = self._numint.rsh_and_hybrid_coeff(self.xc, spin=self.mol.spin)
        return 2 if omega != 0 and alpha != 0 and hyb != 0 else 1

    def get_jk(self, mol=None, dm=None, hermi=1, with_j=True, with_k=True, omega=None):
        if dm is None:
            dm = self.make_rdm1()
        if self.only_dfj and with_k:
            vj = self.get_jk(mol, dm, hermi, with_j, False, omega)[0] if with_j else None
            return vj, super().get_jk(mol, dm, hermi, False, True, omega)[1]
        return self.jk_engine(mol, omega).get_jk(dm, hermi=hermi, with_j=with_j, with_k=with_k)

    def reset(self, mol=None):
        self.jk_engines = {}
        return super().reset(mol)

    def jk_timings(self) -> dict:
        """Summed :attr:`JKEngine.timings` over this object's engines (seconds, calls)."""
        out = {"build_s": 0.0, "jk_s": 0.0, "calls": 0}
        for eng in self.jk_engines.values():
            for k in out:
                out[k] += eng.timings[k]
        return out


def _mol_fingerprint(mol, auxbasis) -> str:
    h = hashlib.sha1()
    for a in (mol._atm, mol._bas, mol._env):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(repr(auxbasis).encode())
    return h.hexdigest()


def accelerate(mf, auxbasis=None, backend: str = "auto", max_memory_mb: float | None = None):
    """Return a copy of a PySCF SCF object whose J/K run on :class:`JKEngine`.

    Parameters
    ----------
    mf : pyscf.scf.hf.RHF, pyscf.scf.uhf.UHF, pyscf.dft.rks.RKS or pyscf.dft.uks.UKS
        Conventional or density-fitted; ECPs allowed. Not modified.
    auxbasis : str or dict, optional
        Auxiliary basis (see :func:`resolve_auxbasis`). Default: the one of ``mf.with_df`` when ``mf``
        is density-fitted with an explicit auxbasis, else :data:`DEFAULT_AUXBASIS`.
    backend : {"auto", "numpy", "numba", "cupy"}
    max_memory_mb : float, optional
        Memory cap, MiB, shared by the engines of the object (two for range-separated hybrids).

    Returns
    -------
    A new SCF object of class ``<JKEngine><DF><RKS...>``: ``kernel()`` (with ``dm0``),
    ``nuc_grad_method()`` (PySCF's DF gradient, same auxbasis) and ``grids`` changes work as usual.

    Raises
    ------
    TypeError
        ``mf`` is not an RHF/UHF/RKS/UKS object (GHF, Dirac and periodic objects are not supported).
    ValueError
        RHF/RKS for a molecule with unpaired electrons, an auxbasis missing an element, a bad backend.
    """
    from pyscf import lib, scf
    from pyscf.df.df_jk import _DFHF

    # vars(), not hasattr(): a missing attribute sends PySCF's SCF.__getattr__ importing all of PySCF
    if not isinstance(mf, scf.hf.SCF) or isinstance(mf, (scf.ghf.GHF, scf.dhf.DHF)) or "cell" in vars(mf):
        raise TypeError(f"accelerate() needs a molecular PySCF RHF/UHF/RKS/UKS object, got {type(mf).__name__}")
    if isinstance(mf, _JKAccelerated):
        raise TypeError("this SCF object is already accelerated")
    mol = mf.mol
    if isinstance(mf, scf.hf.RHF) and not isinstance(mf, scf.rohf.ROHF) and (mol.nelectron % 2 or mol.spin):
        raise ValueError(f"{type(mf).__name__} needs a closed-shell molecule, but this one has {mol.nelectron} "
                         f"electrons and spin {mol.spin}; use UHF/UKS")
    resolve(backend)
    if auxbasis is None and isinstance(mf, _DFHF) and mf.with_df is not None:
        auxbasis = getattr(mf.with_df, "auxbasis", None)
    auxbasis = resolve_auxbasis(mol, auxbasis)
    from pyscf import df

    check_auxbasis(mol, df.addons.make_auxmol(mol, auxbasis))
    base = mf.undo_df() if isinstance(mf, _DFHF) else mf
    dfmf = base.density_fit(auxbasis=auxbasis)
    for name in ("grids", "nlcgrids", "_numint"):  # the caller's objects must not change with ours
        if name in vars(dfmf):
            setattr(dfmf, name, copy.copy(getattr(mf, name)))
    new = _JKAccelerated(dfmf, backend, max_memory_mb)
    return lib.set_class(new, (_JKAccelerated, dfmf.__class__))


__all__ = ["JKEngine", "accelerate", "resolve_auxbasis", "DEFAULT_AUXBASIS", "BACKENDS", "check_auxbasis"]
