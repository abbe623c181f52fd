"""Proton-transfer events (rung.md.analysis.protons): scripted trajectories with known hops (rattling
inside the hysteresis window, a hop across the periodic boundary), the cell-list detector against the
O(N^2) brute force on random trajectories, bad input, the CLI."""

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from rung.core import units as U
from rung.core.errors import InputError
from rung.core.testing import check_bad_input
from rung.md.analysis import protons
from rung.md.analysis.protons import Trajectory, detect, heavy_distances, heavy_distances_brute
from rung.md.cli import main

A = U.ANGSTROM_TO_BOHR
L = 12.0  # cubic box, Angstrom


def scripted(seed=0):
    """Two water pairs in a 12 A box (Angstrom in, Bohr out) and the scripted events.

    Atoms: 0 O1 (x = 3), 1 O2 (x = 5.8), 2 O3 (x = 10.6), 3 O4 (x = 1.4, 2.8 A from O3 across the
    boundary); 4-7 bonded H on each O that only jitter; 8 H* between O1 and O2; 9 H# between O3 and O4.
    H* : O1 -> O2 (frame 20), back O2 -> O1 (frame 50); between, |delta| < 0.2 A rattling.
    H# : O3 -> O4 across the boundary (frame 35), with its x unwrapped past L (rung never wraps).
    """
    rng = np.random.default_rng(seed)
    nf = 70
    o = np.array([[3.0, 6, 6], [5.8, 6, 6], [10.6, 3, 3], [1.4, 3, 3]])
    bonded = o + np.array([[0, 0.97, 0], [0, -0.97, 0], [0, 0, 0.97], [0, 0, -0.97]])
    x = np.zeros((nf, 10, 3))
    x[:, :4] = o
    x[:, 4:8] = bonded
    # H*: distance from O1 along x; mid = 1.4 is delta = 0
    s = np.full(nf, 0.97)
    s[10:20] = 1.4 + rng.uniform(-0.09, 0.09, 10)  # rattling: |delta| < 0.18 A < 0.3 A
    s[20:30] = 1.83
    s[30:50] = 1.4 + rng.uniform(-0.09, 0.09, 20)
    s[50:] = 0.97
    x[:, 8] = o[0] + np.c_[s, np.zeros(nf), np.zeros(nf)]
    r = np.full(nf, 0.97)
    r[20:35] = 1.4 + rng.uniform(-0.09, 0.09, 15)
    r[35:] = 1.83
    x[:, 9] = o[2] + np.c_[r, np.zeros(nf), np.zeros(nf)]  # x up to 12.43 > L: outside the box
    x += rng.normal(scale=0.02, size=x.shape)  # thermal jitter
    numbers = np.array([8, 8, 8, 8, 1, 1, 1, 1, 1, 1])
    cell = np.repeat(np.eye(3)[None] * L, nf, axis=0)
    events = [(20, 8, 0, 1), (35, 9, 2, 3), (50, 8, 1, 0)]
    return Trajectory(numbers, x * A, cell * A, np.arange(nf) * 1.0), events


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_scripted_hops_are_found_exactly(backend):
    traj, expected = scripted()
    ev = detect(traj, {"water": "0-2", "site": "3"}, backend=backend)
    got = list(zip(ev.frame.tolist(), ev.hydrogen.tolist(), ev.donor.tolist(), ev.acceptor.tolist()))
    assert got == expected
    assert ev.groups == ("water", "site")
    assert ev.counts[-1].tolist() == [[2, 1], [0, 0]]  # water -> water twice, water -> site once
    assert ev.counts[34].tolist() == [[1, 0], [0, 0]] and ev.counts[35].tolist() == [[1, 1], [0, 0]]
    assert ev.owner[25, 4] == 1 and ev.owner[-1, 4] == 0  # owner columns follow `hydrogens` (8 is the 5th H)
    assert "water -> site" in ev.table() and ev.table().splitlines()[-1].split()[-1] == "3"
    # a wide window sees nothing; a persistence longer than the excursions (10 and 15 frames) only H#
    assert detect(traj, hysteresis=2.0 * A).frame.size == 0
    late = detect(traj, persistence=12)
    assert list(zip(late.frame, late.hydrogen)) == [(35, 9)]
    # without the periodic cell the O3 -> O4 hop is gone (11.4 A apart), the other two remain
    open_ = detect(Trajectory(traj.numbers, traj.positions, None, traj.time_fs))
    assert list(zip(open_.frame, open_.hydrogen)) == [(20, 8), (50, 8)]


def _detect_brute_force(traj, **kwargs):
    """The NumPy reference detector on the O(N^2) pairs of heavy_distances_brute instead of the cell list."""

    def brute_pairs(x, hyd, heavy, cutoff, cell=None):
        r = heavy_distances_brute(x, hyd, heavy, cutoff, cell)
        h, k = np.nonzero(np.isfinite(r))
        return h, k, r[h, k]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(protons, "heavy_pairs", brute_pairs)
        return detect(traj, backend="numpy", **kwargs)


@pytest.mark.parametrize("triclinic", [False, True])
def test_cell_list_detector_equals_brute_force(triclinic):
    """Random walks of 24 O and 40 H in a 10 A cell: the same distances and the same events."""
    rng = np.random.default_rng(7 + triclinic)
    cell = np.eye(3) * 10.0
    if triclinic:
        cell[1, 0], cell[2, 0], cell[2, 1] = 2.0, 1.0, -1.5
    n_o, n_h, nf = 24, 40, 25
    start = rng.uniform(size=(n_o + n_h, 3)) @ cell
    x = start + np.cumsum(rng.normal(scale=0.25, size=(nf, n_o + n_h, 3)), axis=0)
    numbers = np.r_[np.full(n_o, 8), np.ones(n_h, dtype=int)]
    traj = Trajectory(numbers, x * A, np.repeat(cell[None] * A, nf, axis=0), np.arange(nf) * 1.0)
    cut = 3.0 * A  # below half the smallest cell height (the brute force's minimum-image condition)
    hyd, heavy = np.arange(n_o, n_o + n_h), np.arange(n_o)
    for t in (0, nf - 1):
        np.testing.assert_allclose(heavy_distances(traj.positions[t], hyd, heavy, cut, traj.cell[t]),
                                   heavy_distances_brute(traj.positions[t], hyd, heavy, cut, traj.cell[t]),
                                   rtol=1e-12, atol=1e-12)
    a = detect(traj, cutoff=cut)  # the numba kernel
    b = _detect_brute_force(traj, cutoff=cut)
    assert a.frame.size > 10  # the walk does make hops
    assert np.all(a.owner[0] >= -1) and np.all(a.donor >= 0)  # unowned at first, never an event from nobody
    for k in ("frame", "hydrogen", "donor", "acceptor", "owner", "counts"):
        assert np.array_equal(getattr(a, k), getattr(b, k)), k


@pytest.mark.parametrize("cell_kind", ["cubic", "triclinic", "thin", "open"])
def test_numba_frame_kernel_against_numpy_distances(cell_kind):
    """proton_frame (cell list) against the dense distances: the NumPy O(N^2) minimum image where it
    holds, rung.core's neighbour list (every image) for a cell thinner than twice the cutoff, plain
    distances without a cell. Owner distance, nearest other atom (lowest index on ties) and its distance."""
    from rung.md._kernels.cpu import bin_grid, proton_frame

    rng = np.random.default_rng(11)
    cell = {"cubic": np.eye(3) * 10.0, "triclinic": np.array([[10.0, 0, 0], [2.0, 9.0, 0], [1.0, -1.5, 11.0]]),
            "thin": np.diag([10.0, 10.0, 4.0]), "open": None}[cell_kind]
    n_h, n_k = 60, 30
    box = np.eye(3) * 10.0 if cell is None else cell
    lo = 0.0 if cell is None else -0.5  # periodic: atoms also outside the cell (wrapping is the kernel's)
    x = (rng.uniform(lo, 1.0 - lo, size=(n_h + n_k, 3)) @ box) * A
    hyd, heavy = np.arange(n_h), np.arange(n_h, n_h + n_k)
    cut = 3.0 * A
    if cell_kind in ("cubic", "triclinic"):
        ref = heavy_distances_brute(x, hyd, heavy, cut, cell * A)
    elif cell_kind == "thin":
        ref = heavy_distances(x, hyd, heavy, cut, cell * A)
    else:
        r = np.linalg.norm(x[heavy][None] - x[hyd][:, None], axis=-1)
        ref = np.where(r < cut, r, np.inf)
    owner = rng.integers(-1, n_k, size=n_h)
    owner[:5] = np.argmin(ref[:5], axis=1)  # some owners that are near
    if cell is None:
        lo, hi = x.min(0) - 1e-3, x.max(0) + 1e-3
        c, origin, periodic = np.diag(hi - lo), lo, False
    else:
        c, origin, periodic = cell * A, np.zeros(3), True
    d_own, other, d_other = np.empty(n_h), np.empty(n_h, dtype=np.int64), np.empty(n_h)
    inv, nb, reach = bin_grid(c[None], cut)
    proton_frame(x[hyd], x[heavy], c, inv[0], nb[0], reach[0], origin, periodic, cut, owner, d_own, other, d_other)
    want_own = np.where(owner >= 0, ref[np.arange(n_h), np.maximum(owner, 0)], np.inf)
    rest = ref.copy()
    rest[np.arange(n_h)[owner >= 0], owner[owner >= 0]] = np.inf
    want_other = np.where(np.isfinite(rest.min(1)), np.argmin(rest, axis=1), -1)
    np.testing.assert_allclose(d_own, want_own, rtol=1e-12)
    assert np.array_equal(other, want_other)
    np.testing.assert_allclose(d_other, rest.min(1), rtol=1e-12)
    assert np.isfinite(d_other).sum() > n_h // 2 and np.isfinite(d_own).sum() >= 5


def test_backends_agree_on_open_random_walks():
    """Without a cell: the numba kernel's events equal the NumPy reference's (O(N^2) and neighbour list)."""
    rng = np.random.default_rng(5)
    n_o, n_h, nf = 20, 30, 30
    x = rng.uniform(size=(n_o + n_h, 3)) * 9.0 + np.cumsum(rng.normal(scale=0.25, size=(nf, n_o + n_h, 3)), axis=0)
    traj = Trajectory(np.r_[np.full(n_o, 8), np.ones(n_h, dtype=int)], x * A, None, np.arange(nf) * 1.0)
    a, b = detect(traj, cutoff=3.0 * A), _detect_brute_force(traj, cutoff=3.0 * A)
    c = detect(traj, cutoff=3.0 * A, backend="numpy")
    assert a.frame.size > 5 and a.backend == "numba" and b.backend == "numpy"
    for k in ("frame", "hydrogen", "donor", "acceptor", "owner", "counts"):
        assert np.array_equal(getattr(a, k), getattr(b, k)), k
        assert np.array_equal(getattr(c, k), getattr(b, k)), k


def test_bad_input():
    traj, _ = scripted()
    no_h = Trajectory(traj.numbers[:4], traj.positions[:, :4], traj.cell, traj.time_fs)
    with pytest.raises(InputError, match="no hydrogen"):
        detect(no_h)
    with pytest.raises(InputError, match="overlap"):
        detect(traj, {"water": "O", "site": "3"})
    with pytest.raises(InputError, match="do not exist"):
        detect(traj, {"water": "0-20"})
    with pytest.raises(InputError, match="hydrogen"):
        detect(traj, {"water": "O,H"})
    with pytest.raises(InputError, match="neither"):
        detect(traj, {"water": "Xx"})
    with pytest.raises(InputError, match="backend"):
        detect(traj, backend="cuda")


def test_cli_extxyz_and_rung_h5md(tmp_path):
    from ase import Atoms
    from ase.io import write

    traj, _ = scripted()
    frames = [Atoms(numbers=traj.numbers, positions=p / A, cell=np.eye(3) * L, pbc=True) for p in traj.positions]
    write(tmp_path / "traj.xyz", frames, format="extxyz")
    out = tmp_path / "pt"
    r = CliRunner().invoke(main, ["analyze", "protons", str(tmp_path / "traj.xyz"), "--group", "water=0-2",
                                  "--group", "site=3", "--output", str(out)])
    assert r.exit_code == 0, r.output
    assert "water -> site" in r.output and r.output.strip().splitlines()[-1].split() == ["total", "3"]
    with h5py.File(f"{out}.h5") as f:
        assert f["frame"][:].tolist() == [20, 35, 50] and list(f.attrs["groups"]) == ["water", "site"]
        assert f["time"].attrs["units"] == "fs" and f["counts"].shape == (70, 2, 2)
    check_bad_input(CliRunner().invoke(main, ["analyze", "protons", str(tmp_path / "traj.xyz"), "--group", "w=O",
                                              "--group", "s=3", "--output", str(out)]), "overlap")
    check_bad_input(CliRunner().invoke(main, ["analyze", "protons", str(tmp_path / "traj.xyz"), "--group", "w"]),
                    "--group")
    # a rung H5MD file (nnp-md run on the first frame, 4 steps): read, no events
    write(tmp_path / "w.xyz", frames[0], format="extxyz")
    (tmp_path / "in.toml").write_text('structure = "w.xyz"\nsteps = 4\ndt_fs = 0.25\nthermostat = "none"\n'
                                      'potential = {type = "harmonic", k = 0.5}\n[output]\ntrajectory_every = 1\n')
    r = CliRunner().invoke(main, ["run", str(tmp_path / "in.toml"), "--workdir", str(tmp_path / "md"), "--quiet"])
    assert r.exit_code == 0, r.output
    # an output prefix that names the trajectory itself (md.h5 --output md) is refused, the file left intact
    size = (tmp_path / "md/md.h5").stat().st_size
    check_bad_input(CliRunner().invoke(main, ["analyze", "protons", str(tmp_path / "md/md.h5"), "--output",
                                              str(tmp_path / "md/md")]), "overwrite")
    assert (tmp_path / "md/md.h5").stat().st_size == size
    r = CliRunner().invoke(main, ["analyze", "protons", str(tmp_path / "md/md.h5"), "--output", str(out)])
    assert r.exit_code == 0, r.output
    assert r.output.strip().splitlines()[-1].split() == ["total", "0"]
    with h5py.File(f"{out}.h5") as f:
        assert f["owner"].shape == (5, 6) and f["time"][-1] == pytest.approx(1.0)
