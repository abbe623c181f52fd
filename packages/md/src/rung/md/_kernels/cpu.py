"""numba Lennard-Jones kernel, serial (threads cost more than they gain on small, shared machines).

Pairs are taken in the given (canonical) order within a bead, so a bead's result does not depend on
which other beads share the call."""

import numba
import numpy as np


@numba.njit(cache=True)
def _lj(x, t, i, j, epsilon, sigma, cutoff, energy, forces, virial):
    P = x.shape[0]
    rc2 = cutoff * cutoff
    sr6c = (sigma * sigma / rc2) ** 3
    e_cut = 4.0 * epsilon * (sr6c * sr6c - sr6c)
    for b in range(P):
        e = 0.0
        for q in range(i.shape[0]):
            a, c = i[q], j[q]
            dx = x[b, c, 0] - x[b, a, 0] + t[q, 0]
            dy = x[b, c, 1] - x[b, a, 1] + t[q, 1]
            dz = x[b, c, 2] - x[b, a, 2] + t[q, 2]
            r2 = dx * dx + dy * dy + dz * dz
            if r2 >= rc2:
                continue
            s6 = (sigma * sigma / r2) ** 3
            e += 4.0 * epsilon * (s6 * s6 - s6) - e_cut
            g = 24.0 * epsilon * (2.0 * s6 * s6 - s6) / r2
            fx, fy, fz = g * dx, g * dy, g * dz
            forces[b, c, 0] += fx
            forces[b, c, 1] += fy
            forces[b, c, 2] += fz
            forces[b, a, 0] -= fx
            forces[b, a, 1] -= fy
            forces[b, a, 2] -= fz
            virial[b, 0, 0] += fx * dx
            virial[b, 0, 1] += fx * dy
            virial[b, 0, 2] += fx * dz
            virial[b, 1, 0] += fy * dx
            virial[b, 1, 1] += fy * dy
            virial[b, 1, 2] += fy * dz
            virial[b, 2, 0] += fz * dx
            virial[b, 2, 1] += fz * dy
            virial[b, 2, 2] += fz * dz
        energy[b] = e


def lj(x, cell, i, j, shifts, epsilon, sigma, cutoff):
    """Same contract as :func:`rung.md._kernels.reference.lj`."""
    P, n, _ = x.shape
    t = np.zeros((len(i), 3)) if cell is None else np.ascontiguousarray(shifts @ cell, dtype=np.float64)
    energy, forces, virial = np.zeros(P), np.zeros((P, n, 3)), np.zeros((P, 3, 3))
    _lj(np.ascontiguousarray(x, dtype=np.float64), t, i, j, float(epsilon), float(sigma), float(cutoff),
        energy, forces, virial)
    return energy, forces, virial


@numba.njit(cache=True)
def nm_flow(q, p, m, inv_m, coef):
    """In place: the free ring-polymer flow of every normal mode (see ``normal_modes.free_propagator``).

    q, p : (P, n, 3) normal-mode positions and momenta; m, inv_m : (n,); coef : (4, P) (a, b, c, d).
    Same floating-point operations, in the same order, as the NumPy expression
    ``a q + b (p / m), (c m) q + d p``.
    """
    P, n = q.shape[0], q.shape[1]
    for k in range(P):
        a, b, c, d = coef[0, k], coef[1, k], coef[2, k], coef[3, k]
        for i in range(n):
            cm = c * m[i]
            for x in range(3):
                qq, pp = q[k, i, x], p[k, i, x]
                q[k, i, x] = a * qq + b * (pp * inv_m[i])
                p[k, i, x] = cm * qq + d * pp


@numba.njit(cache=True)
def standard_normal(rng, out):
    """Fills ``out`` (C-contiguous float64, any shape) with the numbers ``rng.standard_normal(out.shape)``
    gives, leaving ``rng`` (a NumPy Generator) in the same state: numba's Generator runs NumPy's
    algorithm on the same bit generator, here for less than NumPy's own fill (timings: BENCHMARKS.md)."""
    flat = out.reshape(-1)
    for j in range(flat.size):
        flat[j] = rng.standard_normal()


@numba.njit(cache=True)
def flow_o_flow(q, p, m, inv_m, coef, c1, sigma, xi, dk):
    """In place, one pass: every normal mode's free flow (as :func:`nm_flow`), its Langevin O step
    p <- c1_k p + sigma_ki xi, and the free flow again.

    q, p, xi : (P, n, 3) C-contiguous normal-mode positions, momenta and N(0, 1) noise; m, inv_m : (n, 3)
    each atom's mass and its inverse, repeated per component; coef : (4, P) (a, b, c, d) of the half-step
    flow; c1 : (P,); sigma : (P, n, 3); dk : (P, n, 3) out, each component's kinetic-energy change in the
    O step (the caller sums it: a running sum in here would keep the loop from vectorising; timings:
    BENCHMARKS.md).
    The same floating-point operations, in the same order, as nm_flow, p <- c1 p + sigma xi, nm_flow.
    """
    P = q.shape[0]
    N = q.size // P
    q, p, xi, dk, sigma = q.reshape(P, N), p.reshape(P, N), xi.reshape(P, N), dk.reshape(P, N), sigma.reshape(P, N)
    m, inv_m = m.reshape(N), inv_m.reshape(N)
    for k in range(P):
        a, b, c, d, ck = coef[0, k], coef[1, k], coef[2, k], coef[3, k], c1[k]
        for j in range(N):
            cm = c * m[j]
            qq, pp = q[k, j], p[k, j]
            qq, pp = a * qq + b * (pp * inv_m[j]), cm * qq + d * pp
            new = pp * ck + sigma[k, j] * xi[k, j]
            dk[k, j] = 0.5 * (new * new - pp * pp) * inv_m[j]
            q[k, j] = a * qq + b * (new * inv_m[j])
            p[k, j] = cm * qq + d * new


# --- proton ownership (rung.md.analysis.protons) ----------------------------------------------------------
def bin_grid(cells, cutoff):
    """Per frame: the inverse cell, bins per lattice direction (at least ``cutoff`` wide along each cell
    height, at most 64) and how many bins a search must reach. cells (frames, 3, 3) Bohr ->
    inv (frames, 3, 3), nb (frames, 3) int64, reach (frames, 3) int64 (NumPy, outside the kernels: numba's
    LAPACK bindings take long to compile)."""
    cells = np.asarray(cells, dtype=np.float64)
    inv = np.linalg.inv(cells)
    vol = np.abs(np.linalg.det(cells))
    cross = np.stack([np.cross(cells[:, (d + 1) % 3], cells[:, (d + 2) % 3]) for d in range(3)], axis=1)
    h = vol[:, None] / np.linalg.norm(cross, axis=-1)  # (frames, 3) cell heights
    nb = np.clip((h / cutoff).astype(np.int64), 1, 64)
    reach = np.ceil(cutoff * nb / h).astype(np.int64)
    return np.ascontiguousarray(inv), nb, reach


@numba.njit(cache=True)
def _frac(x, origin, inv, periodic):
    s = np.empty(3)
    for d in range(3):
        s[d] = ((x[0] - origin[0]) * inv[0, d] + (x[1] - origin[1]) * inv[1, d] + (x[2] - origin[2]) * inv[2, d])
        if periodic:
            s[d] -= np.floor(s[d])
    return s


@numba.njit(cache=True)
def proton_frame(xh, xk, cell, inv, nb, reach, origin, periodic, cutoff, owner, d_own, other, d_other):
    """For every hydrogen: its distance to its owner and the nearest other heavy atom, cell list.

    xh : (n_h, 3) float64, Bohr; xk : (n_heavy, 3) float64, Bohr
    cell : (3, 3) float64 Bohr, rows the lattice vectors (open boundaries: a box holding every atom,
        from ``origin``); inv, nb, reach : its inverse, bins and search reach (:func:`bin_grid`)
    periodic : bool; cutoff : Bohr, atoms farther away are ignored
    owner : (n_h,) int64 index into the heavy atoms, -1 for none
    d_own : (n_h,) float64 out, Bohr: minimum-image distance to the owner, inf beyond the cutoff
    other, d_other : (n_h,) int64 / float64 out: the nearest heavy atom other than the owner (lowest index
        among equal distances) and its distance; -1 / inf when none is inside the cutoff
    Every periodic image inside the cutoff is seen (also for cells thinner than twice the cutoff).
    """
    nk = xk.shape[0]
    nbins = nb[0] * nb[1] * nb[2]
    kb = np.empty(nk, dtype=np.int64)
    xkw = np.empty((nk, 3))  # heavy atoms wrapped into the cell
    for k in range(nk):
        s = _frac(xk[k], origin, inv, periodic)
        b = 0
        for d in range(3):
            b = b * nb[d] + min(max(int(s[d] * nb[d]), 0), nb[d] - 1)
        kb[k] = b
        for d in range(3):
            xkw[k, d] = origin[d] + s[0] * cell[0, d] + s[1] * cell[1, d] + s[2] * cell[2, d]
    start = np.zeros(nbins + 1, dtype=np.int64)
    for k in range(nk):
        start[kb[k] + 1] += 1
    for b in range(nbins):
        start[b + 1] += start[b]
    fill = start[:-1].copy()
    order = np.empty(nk, dtype=np.int64)
    for k in range(nk):
        order[fill[kb[k]]] = k
        fill[kb[k]] += 1
    c2 = cutoff * cutoff
    for i in range(xh.shape[0]):
        s = _frac(xh[i], origin, inv, periodic)
        hb = np.empty(3, dtype=np.int64)
        xw = np.empty(3)
        for d in range(3):
            hb[d] = min(max(int(s[d] * nb[d]), 0), nb[d] - 1)
            xw[d] = origin[d] + s[0] * cell[0, d] + s[1] * cell[1, d] + s[2] * cell[2, d]
        own = owner[i]
        best_own, best, best_k = np.inf, np.inf, -1
        for o0 in range(-reach[0], reach[0] + 1):
            q0 = hb[0] + o0
            i0 = (q0 - (q0 % nb[0])) // nb[0]
            if not periodic and i0 != 0:
                continue
            for o1 in range(-reach[1], reach[1] + 1):
                q1 = hb[1] + o1
                i1 = (q1 - (q1 % nb[1])) // nb[1]
                if not periodic and i1 != 0:
                    continue
                for o2 in range(-reach[2], reach[2] + 1):
                    q2 = hb[2] + o2
                    i2 = (q2 - (q2 % nb[2])) // nb[2]
                    if not periodic and i2 != 0:
                        continue
                    b = ((q0 % nb[0]) * nb[1] + (q1 % nb[1])) * nb[2] + (q2 % nb[2])
                    sx = i0 * cell[0, 0] + i1 * cell[1, 0] + i2 * cell[2, 0] - xw[0]
                    sy = i0 * cell[0, 1] + i1 * cell[1, 1] + i2 * cell[2, 1] - xw[1]
                    sz = i0 * cell[0, 2] + i1 * cell[1, 2] + i2 * cell[2, 2] - xw[2]
                    for p in range(start[b], start[b + 1]):
                        k = order[p]
                        dx = xkw[k, 0] + sx
                        dy = xkw[k, 1] + sy
                        dz = xkw[k, 2] + sz
                        r2 = dx * dx + dy * dy + dz * dz
                        if r2 >= c2:
                            continue
                        r = np.sqrt(r2)
                        if r >= cutoff:
                            continue
                        if k == own:
                            best_own = min(best_own, r)
                        elif r < best or (r == best and k < best_k):
                            best, best_k = r, k
        d_own[i] = best_own
        other[i] = best_k
        d_other[i] = best


@numba.njit(cache=True)
def proton_events(xh, xk, cells, invs, nbs, reaches, origins, periodic, cutoff, hysteresis, persistence):
    """Ownership of every hydrogen over a trajectory and its transfer events (rung.md.analysis.protons).

    xh : (frames, n_h, 3), xk : (frames, n_heavy, 3) float64, Bohr; cells : (frames, 3, 3) Bohr, the
    periodic cells or (open) boxes from ``origins`` (frames, 3); invs, nbs, reaches : :func:`bin_grid`
    of the cells; cutoff, hysteresis : Bohr;
    persistence : frames. Returns owner (frames, n_h) int64 index into the heavy atoms (-1 none) and
    events (n_events, 4) int64 rows (frame, hydrogen, donor, acceptor), hydrogen/donor/acceptor as
    indices into the hydrogen and heavy arrays, in the order found.
    """
    nf, nh = xh.shape[0], xh.shape[1]
    owner = np.full((nf, nh), -1, dtype=np.int64)
    d_own = np.empty(nh)
    other = np.empty(nh, dtype=np.int64)
    d_other = np.empty(nh)
    pending = np.full(nh, -1, dtype=np.int64)
    since = np.zeros(nh, dtype=np.int64)
    events = np.empty((16, 4), dtype=np.int64)
    n = 0
    for t in range(nf):
        cur = owner[t - 1].copy() if t > 0 else np.full(nh, -1, dtype=np.int64)
        proton_frame(xh[t], xk[t], cells[t], invs[t], nbs[t], reaches[t], origins[t], periodic, cutoff, cur,
                     d_own, other, d_other)
        if t == 0:
            owner[0] = other
            continue
        for i in range(nh):
            delta = d_own[i] - d_other[i]  # inf - inf = nan: nobody near, no event (nan > x is False)
            over = cur[i] >= 0 and delta > hysteresis
            if over and pending[i] != other[i]:
                since[i] = t
            pending[i] = other[i] if over else -1
            if over and t - since[i] + 1 >= persistence:
                if n == events.shape[0]:
                    grown = np.empty((2 * n, 4), dtype=np.int64)
                    grown[:n] = events
                    events = grown
                events[n, 0], events[n, 1], events[n, 2], events[n, 3] = since[i], i, cur[i], other[i]
                n += 1
                cur[i] = other[i]
                pending[i] = -1
            if cur[i] < 0:  # no owner yet: the first heavy atom inside the cutoff takes it, not an event
                cur[i] = other[i]
        owner[t] = cur
    return owner, events[:n].copy()


# --- normal modes (rung.md.normal_modes): the real-FFT spectrum <-> normal-mode coordinates ---------------
@numba.njit(cache=True)
def nm_unpack(F, out, s1, s2):
    """out[0] = s1 Re F[0]; out[k] = s2 Re F[k], out[P-k] = s2 Im F[k] (1 <= k <= (P-1)//2);
    out[P/2] = s1 Re F[P/2] (P even). F : (P//2 + 1, n, 3) complex128; out : (P, n, 3) float64."""
    P, n = out.shape[0], out.shape[1]
    h = (P - 1) // 2
    for i in range(n):
        for x in range(3):
            out[0, i, x] = F[0, i, x].real * s1
    for k in range(1, h + 1):
        for i in range(n):
            for x in range(3):
                out[k, i, x] = F[k, i, x].real * s2
                out[P - k, i, x] = F[k, i, x].imag * s2
    if P % 2 == 0:
        for i in range(n):
            for x in range(3):
                out[P // 2, i, x] = F[P // 2, i, x].real * s1


@numba.njit(cache=True)
def nm_pack(xt, G, s1, s2):
    """The inverse of :func:`nm_unpack` with s1 = sqrt(P), s2 = sqrt(P/2): G (P//2 + 1, n, 3) complex128
    out, xt (P, n, 3) float64 in."""
    P, n = xt.shape[0], xt.shape[1]
    h = (P - 1) // 2
    for i in range(n):
        for x in range(3):
            G[0, i, x] = complex(xt[0, i, x] * s1, 0.0)
    for k in range(1, h + 1):
        for i in range(n):
            for x in range(3):
                G[k, i, x] = complex(xt[k, i, x] * s2, xt[P - k, i, x] * s2)
    if P % 2 == 0:
        for i in range(n):
            for x in range(3):
                G[P // 2, i, x] = complex(xt[P // 2, i, x] * s1, 0.0)
