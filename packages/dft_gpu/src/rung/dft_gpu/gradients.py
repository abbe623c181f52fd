"""Cheaper pieces of the SCF nuclear gradient: the ECP part of the core-Hamiltonian derivative and
the XC part of the density-fitted RKS gradient.

Contract
--------
:func:`hcore_generator` is a drop-in for PySCF's ``Gradients.hcore_generator`` (``pyscf.grad.rhf``):
it returns ``hcore_deriv(atom) -> (3, nao, nao)``, the derivative of the core Hamiltonian with respect
to that atom's position, equal to PySCF's to round-off (tested to 1e-12), but it evaluates the
semi-local ECP derivative integrals once per ECP centre instead of twice. :func:`speed_up` installs it
on a gradient object (molecules with ECPs; anything else keeps PySCF's), together with
:func:`df_rks_get_veff` and :func:`df_rks_extra_force`, PySCF's DF-RKS ``get_veff`` and
``extra_force`` with the XC term as per-atom forces from :func:`rung.dft_gpu.xc.rks_gradient_xc`
(the contraction PySCF's ``grad_elec`` makes of its XC matrix, from orbital-width GEMMs), and
:func:`df_get_jk` (with ``get_j``/``get_k``) for any density-fitted RHF/RKS gradient whose SCF ran on
the J/K engine: PySCF's ``get_jk`` from :func:`engine_jk_gradient` (below).

Equations
---------
With ``V_C`` the ECP of centre ``C`` and ``P_C[x] = <d_x mu | V_C | nu>`` (PySCF ``ECPscalar_ipnuc``
restricted to centre ``C``; it equals PySCF's ``ECPscalar_iprinv`` with the origin at ``C``), the ECP
part of ``dh/dR_A`` has two terms (Hellmann-Feynman / integration by parts):

- basis functions on ``A`` moving: ``-sum_C P_C[x][mu, nu]`` for ``mu`` on ``A`` (plus transpose),
- the operator ``V_A`` moving: ``P_A[x] + P_A[x]^T``.

PySCF computes the first from one all-centre ``ECPscalar_ipnuc`` call and the second from one
``ECPscalar_iprinv`` call per centre, i.e. every centre's integrals twice; here the per-centre
``P_C`` are computed once and summed for the first term. The rows of ``P_A`` whose ``mu`` sits on
``A`` itself enter both terms with opposite signs and cancel, so they are not computed (for CH3CHO
that skips 1/7 of the ECP derivative integrals). The kinetic and nuclear-attraction parts are
PySCF's (``int1e_ipkin``, ``int1e_ipnuc``, ``int1e_iprinv``), unchanged.

Density-fitted J/K derivative terms (:func:`engine_jk_gradient`, closed shells whose SCF ran on the
J/K engine): the same matrices and auxiliary-basis response as PySCF's ``df.grad.rhf.get_jk``, from
the SCF's cached tensor ``B = T (P|mn)`` (``T = L^-1``, ``V = (P|Q) = L L^T``) instead of PySCF's
re-evaluation of ``(P|mn)``, and from one set of derivative integrals per operator. With the occupied
orbitals ``C`` (occupations ``n``), ``D = C n C^T``:

    rhoj = T^T (B . D),    rhok[P,o,m] = sum_L T[L,P] sum_l B[L,m,l] C[l,o] n_o,

    vj[x,i,j] = -sum_P rhoj_P (d_x i j|P),   vk[x,i,k] = -sum_{P,o} (sum_j (d_x i j|P) C[j,o]) rhok[P,o,k].

The auxiliary response needs ``(mn|d_x P)``; translational invariance of the 3-centre integral gives
it from the ``int3c2e_ip1`` block already at hand, ``(mn|d_x P) = -(d_x m n|P) - (d_x n m|P)``, so
PySCF's second set of derivative integrals (``int3c2e_ip2``) is not needed. The 2-centre part
(``int2c2e_ip1``) is as in PySCF.
"""

from __future__ import annotations

import copy
import types

import numpy as np


def _ecp_per_centre(mol) -> dict:
    """``{atom: P_C}`` for each ECP centre, ``P_C`` (3, nao, nao) float64 = <d_x mu | V_C | nu> for the
    ``mu`` on other atoms; the rows of the AOs on ``C`` are zero (they cancel in ``hcore_deriv``)."""
    from pyscf import gto

    out = {}
    nbas, nao = mol.nbas, mol.nao_nr()
    slices = mol.aoslice_by_atom()
    for atm in sorted(set(mol._ecpbas[:, gto.ATOM_OF].tolist())):
        one = copy.copy(mol)  # shallow: only _ecpbas is replaced
        one._ecpbas = mol._ecpbas[mol._ecpbas[:, gto.ATOM_OF] == atm]
        s0, s1, p0, p1 = slices[atm]
        p = np.zeros((3, nao, nao))
        for (b0, b1), (a0, a1) in (((0, s0), (0, p0)), ((s1, nbas), (p1, nao))):
            if b1 > b0:
                p[:, a0:a1] = one.intor("ECPscalar_ipnuc", comp=3, shls_slice=(b0, b1, 0, nbas))
        out[atm] = p
    return out


def hcore_generator(mf_grad, mol=None):
    """``hcore_deriv(atom) -> (3, nao, nao)`` float64 (Hartree/Bohr), as PySCF's, for a molecule
    with ECPs (module docstring)."""
    mol = mf_grad.mol if mol is None else mol
    per_centre = _ecp_per_centre(mol)
    # PySCF's get_hcore without its ECP call: -(<d mu|T|nu> + <d mu|V_nuc|nu> + sum_C P_C), where rows
    # on A lack P_A's own (below they would be added back by the operator term of A: they cancel)
    h1 = -(mol.intor("int1e_ipkin", comp=3) + mol.intor("int1e_ipnuc", comp=3) + sum(per_centre.values()))
    charges = -mol.atom_charges()
    aoslices = mol.aoslice_by_atom()

    def hcore_deriv(atm_id):
        p0, p1 = aoslices[atm_id][2:]
        with mol.with_rinv_at_nucleus(atm_id):
            vrinv = mol.intor("int1e_iprinv", comp=3)  # <d mu| 1/|r-R_A| |nu>
        vrinv *= charges[atm_id]
        if atm_id in per_centre:
            vrinv += per_centre[atm_id]
        vrinv[:, p0:p1] += h1[:, p0:p1]
        return vrinv + vrinv.transpose(0, 2, 1)

    return hcore_deriv


def _xc_applies(ks_grad) -> bool:
    from pyscf.df.grad import rks as df_rks_grad
    from pyscf.dft import numint

    from rung.dft_gpu.xc import dense_quadrature_applies

    mf = ks_grad.base
    if not isinstance(ks_grad, df_rks_grad.Gradients) or ks_grad.grid_response or mf.do_nlc():
        return False
    if mf.mol.spin != 0 or not isinstance(mf._numint, numint.NumInt):
        return False
    return dense_quadrature_applies(mf._numint, mf.xc)


def df_rks_get_veff(ks_grad, mol=None, dm=None):
    """PySCF's density-fitted RKS ``Gradients.get_veff`` (``pyscf.df.grad.rks``; no grid response, no
    VV10) with the XC term as per-atom forces: the returned matrix holds the J/K derivative terms only
    (from the gradient object's ``get_jk``/``get_j``/``get_k``, :func:`df_get_jk` once :func:`speed_up`
    installed it, combined as PySCF does; tags ``exc1_grid`` and ``aux`` kept), and the XC term,
    :func:`rung.dft_gpu.xc.rks_gradient_xc` (natm, 3) Hartree/Bohr, rides on it as the tag ``xc_force``,
    which :func:`df_rks_extra_force` adds. PySCF's ``grad_elec`` uses the matrix only through
    ``2 sum_{m on A, n} V[x,m,n] D[m,n]``, which is what ``rks_gradient_xc`` computes for the XC part
    without forming it."""
    from pyscf import lib
    from pyscf.grad import rks as rks_grad

    from rung.dft_gpu.xc import rks_gradient_xc

    mol = ks_grad.mol if mol is None else mol
    dm = ks_grad.base.make_rdm1() if dm is None else dm
    mf = ks_grad.base
    ni = mf._numint
    grids, _ = rks_grad._initialize_grids(ks_grad)
    xc_force = rks_gradient_xc(ni, mol, grids, mf.xc, dm)
    aux = ks_grad.auxbasis_response
    if not ni.libxc.is_hybrid_xc(mf.xc):
        vj = ks_grad.get_j(mol, dm)
        veff = vj
        e1_aux = vj.aux.sum((0, 1)) if aux else None
    else:
        omega, alpha, hyb = ni.rsh_and_hybrid_coeff(mf.xc, spin=mol.spin)
        if omega == 0:
            vj, vk = ks_grad.get_jk(mol, dm)
            scale = [(None, hyb)]
        elif alpha == 0:  # short-range exchange only
            vj, vk = ks_grad.get_j(mol, dm), ks_grad.get_k(mol, dm, omega=-omega)
            scale = [(None, hyb)]
        elif hyb == 0:  # long-range exchange only
            vj, vk = ks_grad.get_j(mol, dm), ks_grad.get_k(mol, dm, omega=omega)
            scale = [(None, alpha)]
        else:  # both, with different fractions
            vj, vk = ks_grad.get_jk(mol, dm)
            scale = [(None, hyb), (ks_grad.get_k(mol, dm, omega=omega), alpha - hyb)]
        vk_total = vk * scale[0][1]
        vk_aux = vk.aux * scale[0][1] if aux else None
        for extra, fraction in scale[1:]:
            vk_total = vk_total + extra * fraction
            if aux:
                vk_aux = vk_aux + extra.aux * fraction
        veff = vj - vk_total * 0.5
        e1_aux = (vj.aux - vk_aux * 0.5).sum((0, 1)) if aux else None
    veff = np.asarray(veff)
    if aux:
        return lib.tag_array(veff, exc1_grid=None, aux=e1_aux, xc_force=xc_force)
    return lib.tag_array(veff, exc1_grid=None, xc_force=xc_force)


def df_rks_extra_force(ks_grad, atom_id, envs):
    """PySCF's density-fitted RKS ``extra_force`` (auxiliary-basis response) plus the XC force of
    ``atom_id`` that :func:`df_rks_get_veff` tagged on ``envs["vhf"]``, Hartree/Bohr (3,)."""
    from pyscf.df.grad import rks as df_rks_grad

    e1 = df_rks_grad.Gradients.extra_force(ks_grad, atom_id, envs)
    return e1 + envs["vhf"].xc_force[atom_id]


def df_get_jk(mf_grad, mol=None, dm=None, hermi=0, with_j=True, with_k=True, omega=None):
    """Drop-in for PySCF's density-fitted ``Gradients.get_jk`` (``pyscf.df.grad.rhf``): ``vj, vk``
    (3, nao, nao) tagged with ``aux`` (1, 1, natm, 3) when ``auxbasis_response``; from
    :func:`engine_jk_gradient` when the SCF ran on the J/K engine, ``dm`` is its closed-shell density
    and the fitted ``rhok`` (twice ``8 naux nocc nao`` bytes) fits in half of ``max_memory``, else
    PySCF's (which keeps ``rhok`` in a temporary file)."""
    from pyscf import lib
    from pyscf.df.grad import rhf as df_rhf_grad

    mol = mf_grad.mol if mol is None else mol
    dm = mf_grad.base.make_rdm1() if dm is None else dm
    orbitals = _engine_orbitals(mf_grad.base, mol, dm)
    if orbitals is not None:
        naux = mf_grad.base.jk_engine(mol, omega).naux
        if 2 * 8 * naux * orbitals[0].size / 2**20 > 0.5 * mf_grad.max_memory:
            orbitals = None
    if orbitals is None:
        return df_rhf_grad.Gradients.get_jk(mf_grad, mol, dm, hermi, with_j, with_k, omega)
    aux = mf_grad.auxbasis_response
    out = engine_jk_gradient(mf_grad.base, mol, *orbitals, omega=omega, with_j=with_j, with_k=with_k,
                             aux_response=aux, max_memory_mb=mf_grad.max_memory)
    vj, vk = ((None if v is None else lib.tag_array(v, aux=a[None, None]) if aux else v)
              for v, a in zip(out[:2], out[2:]))
    return vj, vk


def df_get_j(mf_grad, mol=None, dm=None, hermi=0, omega=None):
    """:func:`df_get_jk`'s ``vj`` (PySCF's ``Gradients.get_j``)."""
    return df_get_jk(mf_grad, mol, dm, hermi, with_k=False, omega=omega)[0]


def df_get_k(mf_grad, mol=None, dm=None, hermi=0, omega=None):
    """:func:`df_get_jk`'s ``vk`` (PySCF's ``Gradients.get_k``)."""
    return df_get_jk(mf_grad, mol, dm, hermi, with_j=False, omega=omega)[1]


def _engine_orbitals(mf, mol, dm):
    """``(C_occ, n_occ)`` of a closed-shell SCF run on the J/K engine when ``C n C^T`` is ``dm``; else None."""
    from rung.dft_gpu.jk import _JKAccelerated

    if not isinstance(mf, _JKAccelerated) or mf.only_dfj or mol.spin != 0 or mf.mo_coeff is None:
        return None
    mo_coeff, mo_occ = np.asarray(mf.mo_coeff), np.asarray(mf.mo_occ)
    dm = np.asarray(dm)
    if mo_coeff.ndim != 2 or mo_occ.ndim != 1 or dm.shape != (mol.nao, mol.nao) or mo_coeff.shape[0] != mol.nao:
        return None
    sel = mo_occ > 0
    c, n = np.ascontiguousarray(mo_coeff[:, sel]), mo_occ[sel]
    if np.abs((c * n) @ c.T - dm).max() > 1e-10 * max(np.abs(dm).max(), 1.0):
        return None
    return c, n


def engine_jk_gradient(mf, mol, c, n, omega=None, with_j=True, with_k=True, aux_response=True,
                       max_memory_mb=None):
    """J/K derivative terms of the density-fitted SCF gradient from the J/K engine's cached tensor
    (module docstring), equal to PySCF's ``df.grad.rhf.get_jk`` to round-off.

    Parameters
    ----------
    mf : SCF object accelerated by :func:`rung.dft_gpu.jk.accelerate` (its engine for ``omega`` is
        reused, or built if the SCF did not use that operator)
    mol : pyscf.gto.Mole, the SCF's molecule
    c : (nao, nocc) float64, occupied orbitals; n : (nocc,) their occupations (``D = c n c^T``)
    omega : None (full Coulomb), > 0 (``erf(omega r)/r``) or < 0 (``erfc``), Bohr^-1
    with_j, with_k : which terms
    aux_response : include the response of the auxiliary functions (PySCF's ``auxbasis_response``)
    max_memory_mb : cap on one block of derivative integrals, MiB (default ``mf.max_memory``)

    Returns
    -------
    vj, vk : (3, nao, nao) float64 or None, PySCF's returned matrices (minus the derivative on the first
        AO index, Hartree/Bohr)
    jaux, kaux : (natm, 3) float64 or None, their auxiliary-basis response per atom (PySCF's ``aux``
        tag summed over its two density indices)
    """
    max_memory_mb = mf.max_memory if max_memory_mb is None else max_memory_mb
    eng = mf.jk_engine(mol, omega)
    auxmol = eng.auxmol
    if eng.omega is not None:
        auxmol.omega = eng.omega
    with mol.with_range_coulomb(eng.omega):  # None: the Coulomb operator as it is
        return _engine_jk_gradient(mol, auxmol, eng, c, n, with_j, with_k, aux_response, max_memory_mb)


def _engine_jk_gradient(mol, auxmol, eng, c, n, with_j, with_k, aux_response, max_memory_mb):
    """:func:`engine_jk_gradient` with ``mol`` and ``auxmol`` carrying the engine's operator (omega)."""
    from pyscf.ao2mo.outcore import balance_partition
    from pyscf.df.grad.rhf import _int3c_wrapper

    nao, nocc = c.shape
    cn = c * n
    dm = cn @ c.T
    rhoj, rhok = _fitted(eng, auxmol, c, cn)
    naux = rhoj.shape[0]
    vj, vk = np.zeros((3, nao, nao)), np.zeros((3, nao, nao))
    jaux, kaux = np.zeros((3, naux)), np.zeros((3, naux))
    rhok_oo = (rhok.reshape(-1, nao) @ c).reshape(naux, nocc, nocc)  # [P,o,o'] = sum_m rhok[P,o,m] C[m,o']
    get_ip1 = _int3c_wrapper(mol, auxmol, "int3c2e_ip1", "s1")
    aux_loc = auxmol.ao_loc
    blksize = int(min(max(max_memory_mb * 0.25e6 / 8 / (3 * nao * nao), 20), naux, 240))
    for shl0, shl1, _ in balance_partition(aux_loc, blksize):
        p0, p1 = aux_loc[shl0], aux_loc[shl1]
        nb = p1 - p0
        ip1 = get_ip1((0, mol.nbas, 0, mol.nbas, shl0, shl1)).transpose(0, 3, 2, 1)  # [x,P,j,i] = (d_x i j|P)
        if with_j:
            vj += (rhoj[p0:p1] @ ip1.reshape(3, nb, nao * nao)).reshape(3, nao, nao).transpose(0, 2, 1)
            if aux_response:  # sum_ij (ij|d_x P) D_ij = -2 sum_ij (d_x i j|P) D_ij
                jaux[:, p0:p1] -= 2 * (ip1.reshape(3 * nb, nao * nao) @ dm.ravel()).reshape(3, nb) * rhoj[p0:p1]
        if with_k:
            half = np.matmul(c.T, ip1.reshape(3 * nb, nao, nao)).reshape(3, nb * nocc, nao)  # [x,(P,o),i]
            rk = rhok[p0:p1].reshape(nb * nocc, nao)
            for x in range(3):
                vk[x] += half[x].T @ rk
            if aux_response:  # (o o'|d_x P) = -(M + M^T), M[x,P,o,o'] = sum_mn C[n,o] (d_x m n|P) C[m,o']
                mm = (half.reshape(-1, nao) @ c).reshape(3, nb, nocc, nocc)
                g = -(mm + mm.transpose(0, 1, 3, 2)) * n
                kaux[:, p0:p1] += np.einsum("xpij,pij->xp", g, rhok_oo[p0:p1])
    out_aux = [None, None]
    if aux_response:
        ip2c = auxmol.intor("int2c2e_ip1", comp=3)  # (d_x P|Q)
        jaux -= rhoj * (ip2c @ rhoj)
        w = rhok_oo.reshape(naux, -1) @ rhok_oo.transpose(0, 2, 1).reshape(naux, -1).T
        kaux -= np.einsum("xpq,pq->xp", ip2c, w)
        slices = auxmol.aoslice_by_atom()[:, 2:]
        out_aux = [-np.array([a[:, p0:p1].sum(axis=1) for p0, p1 in slices]) for a in (jaux, kaux)]
    return ((-vj if with_j else None), (-vk if with_k else None),
            (out_aux[0] if with_j else None), (out_aux[1] if with_k else None))


def _fitted(eng, auxmol, c, cn):
    """``rhoj`` (naux,) and ``rhok`` (naux, nocc, nao) of :func:`engine_jk_gradient` from the engine's
    tensor ``B = T (P|mn)``, with ``T`` as PySCF's ``cholesky_eri`` builds it (Cholesky factor of the
    metric, or its eigenvector fallback for a near-singular metric)."""
    import scipy.linalg
    from pyscf import lib
    from pyscf.df.incore import _eig_decompose

    from rung.core.backend import to_host

    nao, nocc = c.shape
    naux = eng.naux
    rho, x = np.zeros(naux), np.empty((naux, nocc, nao))
    b0 = 0
    for block in eng.blocks(max(1, min(naux, int(32e6 / (8 * nao * nao))))):
        block = to_host(block)  # a GPU engine's cached tensor comes to the host block by block
        sq = lib.unpack_tril(block) if eng.packed else block
        nb = sq.shape[0]
        y = (sq.reshape(nb * nao, nao) @ cn).reshape(nb, nao, nocc)  # [L,m,o] = sum_l B[L,m,l] cn[l,o]
        x[b0:b0 + nb] = y.transpose(0, 2, 1)
        rho[b0:b0 + nb] = np.einsum("lmo,mo->l", y, c)
        b0 += nb
    j2c = auxmol.intor("int2c2e", hermi=1)
    try:
        low = scipy.linalg.cholesky(j2c, lower=True)
    except scipy.linalg.LinAlgError:
        t = _eig_decompose(auxmol, j2c)  # (naux_kept, naux)
        if t.shape[0] != naux:
            raise RuntimeError("the engine's tensor and the metric decomposition disagree") from None
        return t.T @ rho, (t.T @ x.reshape(naux, -1)).reshape(-1, nocc, nao)
    if low.shape[0] != naux:
        raise RuntimeError("the engine's tensor and the auxiliary basis disagree")
    solve = lambda v: scipy.linalg.solve_triangular(low, v, lower=True, trans="T", check_finite=False)  # noqa: E731
    return solve(rho), solve(x.reshape(naux, -1)).reshape(naux, nocc, nao)


def speed_up(mf_grad):
    """Install the cheaper pieces on a PySCF gradient object where they apply, returning it:
    :func:`hcore_generator` (ECPs, no x2c, no PBC pseudopotential) and :func:`df_rks_get_veff`
    (density-fitted RKS, semi-local XC without Laplacian, no grid response, no VV10)."""
    mol = mf_grad.mol
    if mol.has_ecp() and not mol._pseudo and not getattr(mf_grad.base, "with_x2c", None):
        mf_grad.hcore_generator = types.MethodType(hcore_generator, mf_grad)
    if _xc_applies(mf_grad):  # both or neither: get_veff's matrix leaves its XC term to extra_force
        mf_grad.get_veff = types.MethodType(df_rks_get_veff, mf_grad)
        mf_grad.extra_force = types.MethodType(df_rks_extra_force, mf_grad)
    if _engine_jk_applies(mf_grad):
        for name, fn in (("get_jk", df_get_jk), ("get_j", df_get_j), ("get_k", df_get_k)):
            setattr(mf_grad, name, types.MethodType(fn, mf_grad))
    return mf_grad


def _engine_jk_applies(mf_grad) -> bool:
    from pyscf.df.grad import rhf as df_rhf_grad
    from pyscf.df.grad import rks as df_rks_grad

    from rung.dft_gpu.jk import _JKAccelerated

    return (isinstance(mf_grad, (df_rhf_grad.Gradients, df_rks_grad.Gradients))
            and isinstance(mf_grad.base, _JKAccelerated) and mf_grad.mol.spin == 0)


__all__ = ["hcore_generator", "df_rks_get_veff", "df_rks_extra_force", "df_get_jk", "df_get_j", "df_get_k", "engine_jk_gradient",
           "speed_up"]
