import numpy as np
import pytest
from scipy.linalg import expm

from rung.md.normal_modes import (free_propagator, from_normal_modes, normal_mode_frequencies, normal_mode_matrix,
                                  to_normal_modes)


@pytest.mark.parametrize("P", [1, 2, 3, 4, 7, 16, 32])
def test_matrix_is_orthogonal_and_diagonalises_the_springs(P):
    C = normal_mode_matrix(P)
    np.testing.assert_allclose(C.T @ C, np.eye(P), atol=1e-13)
    # spring matrix of the ring: sum_j (q_j - q_{j+1})^2 = q^T K q
    K = 2 * np.eye(P) - np.roll(np.eye(P), 1, axis=0) - np.roll(np.eye(P), -1, axis=0)
    if P == 1:
        K = np.zeros((1, 1))
    if P == 2:
        K = np.array([[2.0, -2.0], [-2.0, 2.0]])
    wk = normal_mode_frequencies(P, 1.0)  # omega_P = 1: omega_k^2 = eigenvalues of K
    np.testing.assert_allclose(C.T @ K @ C, np.diag(wk**2), atol=1e-12)
    np.testing.assert_allclose(C[:, 0], np.full(P, 1 / np.sqrt(P)))


def test_transforms_round_trip():
    x = np.random.default_rng(1).normal(size=(8, 5, 3))
    C = normal_mode_matrix(8)
    xt = to_normal_modes(x, C)
    np.testing.assert_allclose(xt[0], np.sqrt(8) * x.mean(axis=0), atol=1e-13)
    np.testing.assert_allclose(from_normal_modes(xt, C), x, atol=1e-13)
    np.testing.assert_array_equal(to_normal_modes(x[:1], normal_mode_matrix(1)), x[:1])


@pytest.mark.parametrize("P", [1, 2, 3, 4, 7, 8, 32])
def test_transforms_against_the_matrix_and_with_scratch_arrays(P):
    """The FFT transforms (numba unpack/pack) equal C^T x and C x~; writing into reused scratch arrays
    gives the same bits, and the inverse returns a new array."""
    rng = np.random.default_rng(P)
    x = rng.normal(size=(P, 6, 3))
    C = normal_mode_matrix(P)
    xt = to_normal_modes(x, C)
    np.testing.assert_allclose(xt, np.einsum("jk,jnx->knx", C, x), atol=1e-13)
    np.testing.assert_allclose(from_normal_modes(xt, C), np.einsum("jk,knx->jnx", C, xt), atol=1e-13)
    out, work = np.full((P, 6, 3), np.nan), np.full((P // 2 + 1, 6, 3), np.nan, dtype=np.complex128)
    for _ in range(2):
        assert np.array_equal(to_normal_modes(x, C, out=out, work=work), xt)
        back = from_normal_modes(xt, C, work=work)
        assert np.array_equal(back, from_normal_modes(xt, C)) and not np.shares_memory(back, work)


@pytest.mark.parametrize("kind", ["exact", "cayley"])
def test_free_propagator_against_matrix_functions(kind):
    m, t = 1837.0, 7.5
    w = np.array([0.0, 0.003, 0.02, 0.4])
    coef = free_propagator(w, t, kind)
    for k, wk in enumerate(w):
        A = np.array([[0.0, 1.0 / m], [-m * wk**2, 0.0]])
        ref = expm(t * A) if kind == "exact" else np.linalg.solve(np.eye(2) - t * A / 2, np.eye(2) + t * A / 2)
        got = np.array([[coef[0, k], coef[1, k] / m], [coef[2, k] * m, coef[3, k]]])
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-14)
        assert abs(np.linalg.det(got) - 1) < 1e-12  # symplectic
    if kind == "cayley":  # strongly stable: |trace| < 2 for every frequency and step
        assert np.all(np.abs(2 * coef[0]) < 2 + 1e-15)


def test_bad_input():
    with pytest.raises(ValueError, match="beads"):
        normal_mode_matrix(0)
    with pytest.raises(ValueError, match="propagator"):
        free_propagator([0.0], 1.0, "verlet")
