"""The exact read-out refit (rung.nnp.train.readout) against oracles that do not use it.

Energies, forces and the loss are always measured with the inference engine (numba, float64) on a
model with the candidate last layers written into it; the design matrix of the generalised least
squares check is built from the engine too (energies and forces are affine in the last layer, so a
column is the change caused by one unit parameter).
"""

import numpy as np
import pytest

from rung.nnp.ani import ANIPotential, build_entries
from rung.nnp.model import ANIModel, Layer, Network
from rung.nnp.testing import conformations, random_model
from rung.nnp.train.readout import Labels, member_design, refit


def with_last(model, theta):
    """The model with each member's last layers set from theta (M, P) = [w_0, b_0, w_1, b_1, ...] (float64)."""
    members = []
    for m, nets in enumerate(model.members):
        new, k = [], 0
        for net in nets:
            h = net.layers[-1].weight.shape[1]
            last = Layer(theta[m, k:k + h][None, :].copy(), theta[m, k + h:k + h + 1].copy(), net.layers[-1].activation)
            new.append(Network(net.layers[:-1] + (last,)))
            k += h + 1
        members.append(tuple(new))
    return ANIModel(model.name, model.species, model.aev, model.self_energies, tuple(members))


def theta_of(model):
    """(M, P) last layers with the members' shifts measured from the self energies (b_s + sae_s)."""
    rows = []
    for nets in model.members:
        rows.append(np.concatenate([np.append(n.layers[-1].weight[0], n.layers[-1].bias[0] + model.self_energies[s])
                                    for s, n in enumerate(nets)]).astype(np.float64))
    return np.array(rows)


def from_theta(model, theta):
    """Inverse of theta_of for this model's self energies."""
    t = theta.copy()
    k = 0
    for s, n in enumerate(model.members[0]):
        k += n.layers[-1].weight.shape[1]
        t[:, k] -= model.self_energies[s]
        k += 1
    return with_last(model, t)


def predict(model, x, z, b):
    """Member energies (M, n_conf) and the engine's result (numba, float64)."""
    r = ANIPotential(model, dtype="float64", backend="numba").evaluate(x, z, batch=b)
    return r.energy_members, r


def data(n_conf=8, seed=0, formulas=("H2O", "NH3", "CH4", "CH3OH", "HCOOH", "H3CNH2"), amplitude=0.08):
    """Concatenated conformations: x (n_atoms, 3) Angstrom, numbers, batch."""
    xs, zs, bs, b = [], [], [], 0
    for _, z, x in conformations(formulas, n_conf, seed=seed, amplitude=amplitude):
        for c in range(x.shape[0]):
            xs.append(x[c])
            zs.append(z)
            bs.append(np.full(z.size, b))
            b += 1
    return np.concatenate(xs), np.concatenate(zs), np.concatenate(bs)


def labelled(teacher, x, z, b, *, seed=1, sig_e=1e-3, sig_f=2e-3):
    """Labels from a teacher model with per-sample 1/sigma^2 weights (sigma varying, random)."""
    rng = np.random.default_rng(seed)
    r = ANIPotential(teacher, dtype="float64").evaluate(x, z, batch=b)
    n = r.energy.size
    return Labels(x, z, b, r.energy, 1 / (sig_e * rng.uniform(0.5, 2, n)) ** 2, r.forces,
                  1 / (sig_f * rng.uniform(0.5, 2, (z.size, 3))) ** 2)


def loss(model, start, lab, l2sp, shift_l2sp):
    """L of every member, from the engine's energies and forces (the refit's definition, written out)."""
    out = []
    for m in range(len(model.members)):
        one = model.select(m)
        r = ANIPotential(one, dtype="float64").evaluate(lab.x, lab.numbers, batch=lab.batch)
        d = theta_of(one)[0] - theta_of(start.select(m))[0]
        bias = np.zeros(d.size, bool)
        k = 0
        for n in one.members[0]:
            k += n.layers[-1].weight.shape[1]
            bias[k] = True
            k += 1
        out.append(np.sum(lab.energy_weight * (r.energy - lab.energy) ** 2)
                   + np.sum(lab.forces_weight * (r.forces - lab.forces) ** 2)
                   + l2sp * np.sum(d[~bias] ** 2) + shift_l2sp * np.sum(d[bias] ** 2))
    return np.array(out)


def test_force_design_is_the_engine():
    """Linear predictions at arbitrary last layers equal the engine with those layers written in."""
    model = random_model(3, members=2)
    x, z, b = data(n_conf=3)
    sp = np.array([list(model.atomic_numbers).index(k) for k in z])
    from rung.nnp._kernels import cpu
    from rung.nnp.train.readout import _aev_columns

    p = model.aev
    ent = build_entries(x, b, b.max() + 1, None, p.Rcr, p.Rca)
    args = (sp, ent.start, ent.nbr, ent.vec, ent.dist, ent.ang_start, ent.ang, p)
    G, J = cpu.aev_forward(*args, np.float64), cpu.aev_jacobian(*args)
    rng = np.random.default_rng(0)
    theta = theta_of(model) + rng.normal(size=theta_of(model).shape)
    test = from_theta(model, theta)
    e_members, _ = predict(test, x, z, b)
    for m in range(2):
        Phi, dPhi = member_design(test.members[m], sp, G, J, ent, b, b.max() + 1, _aev_columns(p))
        r = ANIPotential(test.select(m), dtype="float64").evaluate(x, z, batch=b)
        np.testing.assert_allclose(Phi @ theta[m], e_members[m], rtol=0, atol=1e-10)
        np.testing.assert_allclose(-dPhi.reshape(-1, theta.shape[1]) @ theta[m], r.forces.ravel(), rtol=0, atol=1e-8)


def test_aev_jacobian_kernel():
    """The numba Jacobian equals the NumPy one, and contracted with any dE/dG it is the backward kernel."""
    from rung.nnp._kernels import cpu, reference

    model = random_model(0)
    x, z, b = data(n_conf=1)
    sp = np.array([list(model.atomic_numbers).index(k) for k in z])
    p = model.aev
    ent = build_entries(x, b, b.max() + 1, None, p.Rcr, p.Rca)
    args = (sp, ent.start, ent.nbr, ent.vec, ent.dist, ent.ang_start, ent.ang, p)
    J = cpu.aev_jacobian(*args)
    np.testing.assert_allclose(J, reference.aev_jacobian(*args), rtol=0, atol=1e-13)
    lam = np.random.default_rng(1).normal(size=(z.size, p.length))
    np.testing.assert_allclose(np.einsum("eql,el->eq", J, lam[ent.centre]), cpu.aev_backward(*args, lam), atol=1e-12)


def test_scatter_columns_kernel():
    """The numba scatter of per-entry columns equals the NumPy one, into a strided block of a wider array."""
    from rung.nnp._kernels import cpu, reference

    rng = np.random.default_rng(2)
    n_atoms, n_e, K = 7, 40, 5
    centre, nbr = rng.integers(0, n_atoms, n_e), rng.integers(0, n_atoms, n_e)
    Y = rng.normal(size=(n_e, 3, K))
    out = rng.normal(size=(n_atoms, 3, K + 4))
    want = out.copy()
    reference.scatter_columns(centre, nbr, Y, want[:, :, 2:2 + K])
    cpu.scatter_columns(centre, nbr, Y, out[:, :, 2:2 + K])
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-13)
    assert np.array_equal(out[:, :, :2], want[:, :, :2]) and np.array_equal(out[:, :, 2 + K:], want[:, :, 2 + K:])


@pytest.fixture(scope="module")
def problem():
    """A 2-member student, labels from a model with other hidden layers (not representable exactly)."""
    student = random_model(0, members=2)
    x, z, b = data(n_conf=4)
    return student, labelled(random_model(7), x, z, b)


def test_refit_is_the_minimiser(problem):
    """Central differences of L (exact for a quadratic, up to rounding) vanish at the solution, against
    their size at the start, along random directions in all last-layer weights and shifts and along
    each shift; random steps raise L. Both ensemble members, each refit on its own."""
    student, lab = problem
    l2sp, shift_l2sp = 0.3, 1e-4
    fit = refit(student, lab, l2sp=l2sp, shift_l2sp=shift_l2sp)
    L = loss(fit.model, student, lab, l2sp, shift_l2sp)
    np.testing.assert_allclose(L, fit.loss_after, rtol=1e-8)
    np.testing.assert_allclose(loss(student, student, lab, l2sp, shift_l2sp), fit.loss_before, rtol=1e-8)
    t_fit, t_start = theta_of(fit.model), theta_of(student)
    rng = np.random.default_rng(2)
    P = t_fit.shape[1]
    shifts = np.cumsum([n.layers[-1].weight.shape[1] + 1 for n in student.members[0]]) - 1
    directions = [rng.normal(size=P) for _ in range(4)] + [np.eye(P)[k] for k in shifts]
    h = 1e-4

    def slope(theta, d):
        return (loss(from_theta(student, theta + h * d), student, lab, l2sp, shift_l2sp)
                - loss(from_theta(student, theta - h * d), student, lab, l2sp, shift_l2sp)) / (2 * h)

    for d in directions:
        at_fit, at_start = slope(t_fit, d), slope(t_start, d)
        assert np.all(np.abs(at_fit) < 1e-7 * np.abs(at_start)), (at_fit, at_start)
    for _ in range(3):
        assert np.all(loss(from_theta(student, t_fit + 1e-3 * rng.normal(size=t_fit.shape)), student, lab, l2sp,
                           shift_l2sp) > L)


def test_generalised_least_squares(problem):
    """With 1/sigma^2 weights the refit is GLS: numpy lstsq of the whitened system, with the design
    matrix from the engine (column = change of energies and forces for a unit parameter)."""
    student, lab = problem
    one = student.select(1)
    l2sp = 1e-3
    t0 = theta_of(one)
    base_e, base = predict(one, lab.x, lab.numbers, lab.batch)
    cols = []
    for k in range(t0.shape[1]):
        t = t0.copy()
        t[0, k] += 1.0
        e, r = predict(from_theta(one, t), lab.x, lab.numbers, lab.batch)
        cols.append(np.concatenate([e[0] - base_e[0], (r.forces - base.forces).ravel()]))
    A = np.array(cols).T
    y = np.concatenate([lab.energy - base_e[0], (lab.forces - base.forces).ravel()])
    w = np.sqrt(np.concatenate([lab.energy_weight, lab.forces_weight.ravel()]))
    bias = np.zeros(t0.shape[1], bool)
    bias[np.cumsum([n.layers[-1].weight.shape[1] + 1 for n in one.members[0]]) - 1] = True
    reg = np.diag(np.where(bias, 0.0, np.sqrt(l2sp)))
    d = np.linalg.lstsq(np.vstack([A * w[:, None], reg]), np.concatenate([y * w, np.zeros(t0.shape[1])]), rcond=None)[0]
    fit = refit(one, lab, l2sp=l2sp, shift_l2sp=0.0)
    np.testing.assert_allclose(theta_of(fit.model)[0] - t0[0], d, rtol=1e-6, atol=1e-9 * np.abs(d).max())


def test_frozen_layers_unchanged_and_strong_prior(problem):
    student, lab = problem
    fit = refit(student, lab, frozen=["C.*", "*.bias"], l2sp=0.1)
    for old, new in zip(student.members, fit.model.members):
        for s, (a, b) in enumerate(zip(old, new)):
            for la, lb in zip(a.layers[:-1], b.layers[:-1]):
                assert la.weight.dtype == lb.weight.dtype and la.weight.tobytes() == lb.weight.tobytes()
                assert la.bias.tobytes() == lb.bias.tobytes()
            if student.species[s] == "C":  # frozen by pattern: the same last layer
                assert a.layers[-1] is b.layers[-1]
            else:
                assert a.layers[-1].bias[0] == b.layers[-1].bias[0] and np.any(a.layers[-1].weight != b.layers[-1].weight)
    assert np.array_equal(fit.model.self_energies, student.self_energies)
    stiff = refit(student, lab, l2sp=1e20, shift_l2sp=1e20)
    np.testing.assert_allclose(theta_of(stiff.model), theta_of(student), rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="frozen"):
        refit(student, lab, frozen=["*.weight", "*.bias"])


def test_recovers_a_teacher_last_layer():
    """Labels from the student's own hidden layers with other last layers and shifts: the refit finds
    them and reproduces held-out energies and forces of other molecules."""
    student = random_model(0)
    rng = np.random.default_rng(4)
    t_teacher = theta_of(student) + 0.3 * rng.normal(size=theta_of(student).shape)
    teacher = from_theta(student, t_teacher)
    x, z, b = data(n_conf=8)
    fit = refit(student, labelled(teacher, x, z, b), l2sp=1e-12)
    np.testing.assert_allclose(theta_of(fit.model), t_teacher, rtol=0, atol=1e-6)
    xv, zv, bv = data(n_conf=3, seed=9, formulas=("CH3CHO", "N2H4", "H2CO"))
    et, rt = predict(teacher, xv, zv, bv)
    ef, rf = predict(fit.model, xv, zv, bv)
    np.testing.assert_allclose(ef, et, rtol=0, atol=1e-8)
    np.testing.assert_allclose(rf.forces, rt.forces, rtol=0, atol=1e-8)


def test_transfer_beats_base_and_shift_only(single64, ani1x_file):
    """ANI-1x member 0 refit on labels of the mean of members 1-7 (other hidden layers: not exactly
    representable), thermal-size displacements: held-out errors of other conformations fall below
    the base model's and a shift-only refit's."""
    from rung.nnp import load_model

    student = single64.model
    others = load_model(ani1x_file, dtype="float64").model
    teacher = ANIModel("others", others.species, others.aev, others.self_energies, others.members[1:])
    formulas = ("H2O", "NH3", "CH4", "CH3OH", "HCOOH", "H3CNH2", "CH3CHO", "N2H4", "H2CO", "C2H6")
    lab = labelled(teacher, *data(n_conf=12, formulas=formulas, amplitude=0.03))
    xv, zv, bv = data(n_conf=5, seed=5, formulas=formulas, amplitude=0.03)
    ref_e, ref = predict(teacher, xv, zv, bv)

    def rmse(model):
        e, r = predict(model, xv, zv, bv)
        return np.sqrt(np.mean((e.mean(0) - ref_e.mean(0)) ** 2)), np.sqrt(np.mean((r.forces - ref.forces) ** 2))

    base = rmse(student)
    shifts = rmse(refit(student, lab, frozen=["*.weight"]).model)
    full = rmse(refit(student, lab).model)
    assert full[0] < 0.8 * min(base[0], shifts[0]) and full[1] < 0.9 * min(base[1], shifts[1]), (base, shifts, full)
