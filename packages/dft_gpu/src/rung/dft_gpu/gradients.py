"""Cheaper pieces of the SCF nuclear gradient: the ECP part of the core-Hamiltonian derivative and
the XC part of the density-fitted RKS gradient.

Contract
--------
:func:`hcore_generator` is a drop-in for PySCF's ``Gradients.hcore_generator`` (``pyscf.grad.rhf``):
it returns ``hcore_deriv(atom) -> (3, nao, nao)``, the derivative of the core Hamiltonian with respect
to that atom's position, equal to PySCF's to round-off (tested to 1e-12), but it evaluates the
semi-local ECP derivative integrals once per ECP centre instead of twice. :func:`speed_up` installs it
on a gradient object (molecules with ECPs; anything else keeps PySCF's), together with
:func:`df_rks_get_veff`, PySCF's DF-RKS ``get_veff`` whose XC term comes from
:func:`rung.dft_gpu.xc.rks_gradient_vxc` (the same matrix from dense GEMMs over grid slabs).

Equations
---------
With ``V_C`` the ECP of centre ``C`` and ``P_C[x] = <d_x mu | V_C | nu>`` (PySCF ``ECPscalar_ipnuc``
restricted to centre ``C``; it equals PySCF's ``ECPscalar_iprinv`` with the origin at ``C``), the ECP
part of ``dh/dR_A`` has two terms (Hellmann-Feynman / integration by parts):

- basis functions on ``A`` moving: ``-sum_C P_C[x][mu, nu]`` for ``mu`` on ``A`` (plus transpose),
- the operator ``V_A`` moving: ``P_A[x] + P_A[x]^T``.

PySCF computes the first from one all-centre ``ECPscalar_ipnuc`` call and the second from one
``ECPscalar_iprinv`` call per centre, i.e. every centre's integrals twice; here the per-centre
``P_C`` are computed once and summed for the first term. The kinetic and nuclear-attraction parts are
PySCF's (``int1e_ipkin``, ``int1e_ipnuc``, ``int1e_iprinv``), unchanged.
"""

from __future__ import annotations

import copy
import types


def _ecp_per_centre(mol) -> dict:
    """``{atom: P_C}`` with ``P_C`` (3, nao, nao) float64 = <d_x mu | V_C | nu> for each ECP centre."""
    from pyscf import gto

    out = {}
    for atm in sorted(set(mol._ecpbas[:, gto.ATOM_OF].tolist())):
        one = copy.copy(mol)  # shallow: only _ecpbas is replaced
        one._ecpbas = mol._ecpbas[mol._ecpbas[:, gto.ATOM_OF] == atm]
        out[atm] = one.intor("ECPscalar_ipnuc", comp=3)
    return out


def hcore_generator(mf_grad, mol=None):
    """``hcore_deriv(atom) -> (3, nao, nao)`` float64 (Hartree/Bohr), as PySCF's, for a molecule
    with ECPs (module docstring)."""
    mol = mf_grad.mol if mol is None else mol
    per_centre = _ecp_per_centre(mol)
    # PySCF's get_hcore without its ECP call: -(<d mu|T|nu> + <d mu|V_nuc|nu> + sum_C P_C)
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
    VV10) with the XC part from :func:`rung.dft_gpu.xc.rks_gradient_vxc`; J/K derivative terms are
    PySCF's, combined the same way (tags ``exc1_grid`` and ``aux`` kept)."""
    from pyscf import lib
    from pyscf.grad import rks as rks_grad

    from rung.dft_gpu.xc import rks_gradient_vxc

    mol = ks_grad.mol if mol is None else mol
    dm = ks_grad.base.make_rdm1() if dm is None else dm
    mf = ks_grad.base
    ni = mf._numint
    grids, _ = rks_grad._initialize_grids(ks_grad)
    vxc = rks_gradient_vxc(ni, mol, grids, mf.xc, dm)
    aux = ks_grad.auxbasis_response
    if not ni.libxc.is_hybrid_xc(mf.xc):
        vj = ks_grad.get_j(mol, dm)
        vxc += vj
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
        vxc += vj - vk_total * 0.5
        e1_aux = (vj.aux - vk_aux * 0.5).sum((0, 1)) if aux else None
    if aux:
        return lib.tag_array(vxc, exc1_grid=None, aux=e1_aux)
    return lib.tag_array(vxc, exc1_grid=None)


def speed_up(mf_grad):
    """Install the cheaper pieces on a PySCF gradient object where they apply, returning it:
    :func:`hcore_generator` (ECPs, no x2c, no PBC pseudopotential) and :func:`df_rks_get_veff`
    (density-fitted RKS, semi-local XC without Laplacian, no grid response, no VV10)."""
    mol = mf_grad.mol
    if mol.has_ecp() and not mol._pseudo and not getattr(mf_grad.base, "with_x2c", None):
        mf_grad.hcore_generator = types.MethodType(hcore_generator, mf_grad)
    if _xc_applies(mf_grad):
        mf_grad.get_veff = types.MethodType(df_rks_get_veff, mf_grad)
    return mf_grad


__all__ = ["hcore_generator", "df_rks_get_veff", "speed_up"]
