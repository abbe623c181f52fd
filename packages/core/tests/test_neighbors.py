import numpy as np
import pytest

from rung.core.neighbors import NeighborList, canonical, neighbor_list, neighbor_list_reference

rng = np.random.default_rng(7)
ORTHO = np.diag([7.0, 8.0, 9.0])
TRICLINIC = np.array([[6.0, 0.0, 0.0], [2.5, 5.5, 0.0], [-1.5, 1.8, 6.2]])
TINY = np.array([[2.1, 0.0, 0.0], [0.7, 2.4, 0.0], [0.3, -0.5, 2.2]])  # cutoff > the whole cell


def random_in(cell, n):
    return rng.random((n, 3)) @ cell + rng.normal(scale=3.0, size=(n, 3))  # some atoms outside the box


@pytest.mark.parametrize("half", [True, False])
@pytest.mark.parametrize(
    "cell, n, cutoff",
    [(None, 60, 3.0), (None, 1, 2.0), (ORTHO, 50, 3.2), (ORTHO, 40, 5.0), (TRICLINIC, 45, 3.5), (TRICLINIC, 30, 4.1),
     (TINY, 4, 5.0)],
)
def test_matches_reference(cell, n, cutoff, half):
    x = random_in(cell if cell is not None else np.eye(3) * 8, n)
    got = neighbor_list(x, cutoff, cell, half=half)
    ref = neighbor_list_reference(x, cutoff, cell, half=half)
    np.testing.assert_array_equal(canonical(got), canonical(ref))
    d = got.vectors(x, cell)
    assert np.all(np.linalg.norm(d, axis=1) < cutoff)


def test_full_is_half_twice():
    x = random_in(TRICLINIC, 30)
    h, f = neighbor_list(x, 4.0, TRICLINIC), neighbor_list(x, 4.0, TRICLINIC, half=False)
    assert 2 * h.i.size == f.i.size
    mirrored = np.column_stack([h.j, h.i, -h.shifts])
    both = np.concatenate([np.column_stack([h.i, h.j, h.shifts]), mirrored])
    np.testing.assert_array_equal(canonical(f), both[np.lexsort(both.T[::-1])])


def test_skin_reuse_is_exact_within_cutoff():
    x = random_in(ORTHO, 40)
    nl = NeighborList(3.0, skin=0.6)
    assert nl.update(x, ORTHO)
    for _ in range(20):
        x = x + rng.uniform(-0.05, 0.05, size=x.shape)
        nl.update(x, ORTHO)
        d = np.linalg.norm(nl.pairs.vectors(x, ORTHO), axis=1)
        within = canonical(type(nl.pairs)(nl.pairs.i[d < 3.0], nl.pairs.j[d < 3.0], nl.pairs.shifts[d < 3.0]))
        np.testing.assert_array_equal(within, canonical(neighbor_list_reference(x, 3.0, ORTHO)))
    assert 1 < nl.builds < 21


def test_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        neighbor_list(np.full((2, 3), np.nan), 1.0)
    with pytest.raises(ValueError, match="singular"):
        neighbor_list(np.zeros((2, 3)), 1.0, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="shape"):
        neighbor_list(np.zeros((2, 2)), 1.0)


def test_parallel_kernel_matches_reference(monkeypatch):
    from rung.core import neighbors

    monkeypatch.setattr(neighbors, "PARALLEL_MIN_ATOMS", 0)
    x = random_in(TRICLINIC, 80)
    np.testing.assert_array_equal(canonical(neighbor_list(x, 3.5, TRICLINIC)),
                                  canonical(neighbor_list_reference(x, 3.5, TRICLINIC)))
