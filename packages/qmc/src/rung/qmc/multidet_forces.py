"""Nuclear derivatives of a table-method multideterminant expansion: the two matrices per spin that
:class:`rung.qmc.force_derivs.AnalyticDerivatives` contracts with the AO derivatives.

Excitation formalism of Filippi, Assaraf, Moroni, J. Chem. Phys. 144, 194105 (2016) (Assaraf, Moroni,
Filippi, J. Chem. Theory Comput. 13, 5273 (2017)) on the tables of
:class:`rung.qmc.multideterminant.TableMultiSlater`. Per spin, Phi[i, j] = phi_j(r_i) (electron i,
orbital j of the m the expansion uses), A0 = Phi[:, ref] the reference's Slater matrix, T = A0^-1 Phi,
each string S a minor R_S = sign_S det T[h_S, p_S]; psi_det = D0_up D0_dn q with
q = sum_I c_I R_up,a(I) R_dn,b(I).

Everything the determinants contribute is a function of Phi (both spins) and of a one-body operator
matrix Op[i, j] = (O_i phi_j)(r_i) (Op = -1/2 lap phi - grad_i J . grad phi + V_NL phi, as in the single
determinant, with grad J and the Jastrow ratios inside V_NL held fixed). With

    G = d ln psi / d Phi                                  (n x m; row i is electron i's ratio vector beta_i)

psi is linear in each row, so the determinant part of E_L is E = sum_ij Op[i, j] G[i, j] (over both
spins) and a nucleus moving changes Phi and Op through the AOs on it only:

    d ln psi = <G, dPhi>,      dE = <G, dOp> + <Gd, dPhi>,      Gd = dE / dPhi at fixed Op

(<a, b> = sum_ij a_ij b_ij). For one determinant G = A^-T and Gd = -(A^-1 Op A^-1)^T = -X^T, so the
single-determinant contraction serves unchanged with B0 = C G^T and C X -> -C Gd^T (C the MO
coefficients of the m orbitals): all 3 N_atom components stay one pass over (electron, AO) pairs.

E as a function of Phi. With P = A0^-1 Op and T_O = P - P[:, ref] T (the derivative of T along Op),
X_S = T[h, p], Y_S = T_O[h, p], u_S = sign_S tr(adj(X_S) Y_S) (the derivative of R_S along Op):

    E = sum_spins tr(P[:, ref]) + q_O / q,     q_O = sum_I c_I (u_up,a R_dn,b + R_up,a u_dn,b)

Gd is its gradient by reverse differentiation (cost of E itself; no per-atom work). With y_S = (C R_other)_S
and yu_S = (C u_other)_S (the other spin through the CI coefficients), e = q_O / q:

    dE/dR_S = (yu_S - e y_S) / q =: wr_S,     dE/du_S = y_S / q =: wu_S
    Tg[h_j, p_i] = sum_S wu_S adj_S[i, j]                             (= dE / dT_O = d ln q / dT)
    Ta[h_j, p_i] = sum_S wr_S adj_S[i, j] + wu_S sign_S H_S[i, j]     (H_S = d adj(X_S + t Y_S)/dt, the
                                                                       mixed adjugate, see
                                                                       :mod:`rung.qmc._kernels.table_derivs`)
    Tbar = Ta - P[:, ref]^T Tg,     Pbar = Tg + (I - Tg T^T) on the reference columns
    Gd = A0^-T Tbar,    then on the reference columns  Gd[:, ref] -= A0^-T (Tbar Phi^T + Pbar Op^T) A0^-T

and G the same with ln psi in place of E: G = A0^-T Tg, G[:, ref] += A0^-T (I - Tg T^T) (the ratio
vectors of :mod:`rung.qmc._kernels.table`). The added cost over the single determinant is one pass over
the strings (k^2 per string for u and for H up to k = 3, k^2 (k-1) determinants of order k-1 beyond), two
contractions with the CI coefficients (O(N_det), as Y), and O(n^2 m) dense products per spin and walker.
"""

from __future__ import annotations

import numpy as np


def _kernels(numba: bool):
    """(string_traces, string_adjoints): the numba kernels or their NumPy references."""
    from rung.qmc._kernels import table_derivs as k

    if numba:
        return k.string_traces, k.string_adjoints
    return k.string_traces_reference, k.string_adjoints_reference


def ci_vector(det):
    """The CI coefficients (ndet,) float64 psi has once its parameters are in place (optimised "ci"
    parameters are copied into ``coef`` only by ``recompute``); None for a single determinant."""
    coef = getattr(det, "coef", None)
    if coef is None:
        return None
    coef = coef.copy()
    if det.parameters:
        coef[det.free] = det.parameters["ci"]
    return coef


def ratio_matrices(det) -> list:
    """G = d ln psi / d Phi per spin, [(nw, n_s, m_s) float64]: row i the ratio vector of electron i
    (:meth:`rung.qmc.multideterminant.TableMultiSlater.ratio_matrix`, cached by the local energy)."""
    return [det.ratio_matrix(s) for s in (0, 1)]


def effective_matrices(det, ops, numba: bool = True) -> tuple:
    """(G, Gd) per spin for a :class:`~rung.qmc.multideterminant.TableMultiSlater` in the state of its
    walkers (module docstring).

    Parameters
    ----------
    det : TableMultiSlater, in the state of the configurations (its A0^-1, T, minors, contractions)
    ops : [(nw, n_s, m_s) float64] per spin, Hartree — the operator matrices Op[i, j] = (O_i phi_j)(r_i)
    numba : the numba string kernels (else their NumPy references)

    Returns
    -------
    G : [(nw, n_s, m_s) float64] — d ln psi / d Phi
    Gd : [(nw, n_s, m_s) float64], Hartree — d E / d Phi at fixed Op, E = <G, Op>
    """
    traces, adjoints = _kernels(numba)
    q = det.q
    to, u = [], []
    for s in (0, 1):
        if det.nelec[s] == 0:
            to.append(None)
            u.append(np.zeros_like(det.R[s]))
            continue
        p = det.inverse[s] @ ops[s]  # (nw, n, m) A0^-1 Op
        to.append(p - p[:, :, det.ref[s]] @ det.T[s])  # T_O
        u.append(traces(det.adj[s], to[s], *det.tables[s][:3]))
    yu = [det._contract(0, u[1]), det._contract(1, u[0])]  # (nw, ns_s)
    e = (np.einsum("wa,wa->w", u[0], det.Y[0]) + np.einsum("wa,wa->w", det.R[0], yu[0])) / q
    gs, gds = [], []
    for s in (0, 1):
        nw, n, m = det.T[s].shape
        if n == 0:
            gs.append(np.zeros((nw, 0, m)))
            gds.append(np.zeros((nw, 0, m)))
            continue
        ref, t, phi, op = det.ref[s], det.T[s], det.mo[s][0], ops[s]
        wu = det.Y[s] / q[:, None]
        wr = (yu[s] - e[:, None] * det.Y[s]) / q[:, None]
        tg, ta = adjoints(t, to[s], det.adj[s], wr, wu, *det.tables[s])
        ainv_t = np.swapaxes(det.inverse[s], 1, 2)  # (nw, n_electron, n_ref) A0^-T
        tgt = tg @ np.swapaxes(t, 1, 2)  # (nw, n, n) Tg T^T
        g = ainv_t @ tg
        g[:, :, ref] += ainv_t - ainv_t @ tgt
        p_ref = det.inverse[s] @ op[:, :, ref]  # P[:, ref]
        tbar = ta - np.swapaxes(p_ref, 1, 2) @ tg
        pbar = tg.copy()
        pbar[:, :, ref] += np.eye(n) - tgt
        abar = tbar @ np.swapaxes(phi, 1, 2) + pbar @ np.swapaxes(op, 1, 2)  # (nw, n_ref, n_electron)
        gd = ainv_t @ tbar
        gd[:, :, ref] -= ainv_t @ abar @ ainv_t
        gs.append(g)
        gds.append(gd)
    return gs, gds
