"""Register-blocked micro-kernel for numba, written as LLVM vector IR (``@intrinsic``): the product of a
packed symmetric matrix with a thin factor matrix, each stored element read once.

Why this exists
---------------
The occupied-orbital exchange needs the half-transform ``X[q, L, i] = sum_p B[L, q, p] F[p, i]`` of
every aux function ``L``: a product with a short dimension (``i``: tens of occupied orbitals) against a
large streamed operand (the tensor). ``B_L`` is symmetric; the tensor is kept as its packed lower
triangle (PySCF's ``cderi`` layout, ``nao (nao+1)/2`` numbers per aux function, half the memory of the
square), and the micro-kernel reads each packed element ``B(q, p)``, ``q > p``, once and uses it twice:

    X[q, :] += B(q, p) F[p, :]      (row ``q`` of the tile: accumulators in vector registers)
    X[p, :] += B(q, p) F[q, :]      (the mirrored element: row ``p`` of an earlier tile, in L1)

A tile is ``MR`` consecutive rows ``q`` and ``8 NV`` columns: per ``p < q0`` (``q0`` the tile's first
row) it loads ``NV`` vectors of the (cache-resident) factor row ``F[p, :]`` and of ``X[p, :]``,
broadcasts the ``MR`` packed elements ``B(q0+m, p)`` (``MR`` streams along the packed rows, in memory
order), and issues ``2 MR NV`` fused multiply-adds; the factor rows ``F[q0+m, :]`` of the tile stay in
registers. The ``MR x MR`` diagonal block of the tile is added at the end. This is the outer-product
micro-kernel of Goto and van de Geijn (ACM TOMS 34, 12 (2008)) without packing, with the symmetric
(``dsymm``-like) use of each element. Measured on aspirin (BENCHMARKS.md, session 3): as fast as the
square-tensor kernel it replaced, within 2%; the kernel is limited by instruction issue, not by the
bytes it streams, so the packed layout saves memory rather than time.

A remainder of at most :data:`FEW_COLUMNS` columns (nocc = 34 = 16 + 16 + 2) would leave most lanes of
such a tile idle; it takes the narrow tile of :func:`make_narrowtile`, vectorised along the packed rows.

:func:`fused_block` drives them over one aux block for every factor group, and takes the fitted
densities and J in the same pass (see :mod:`rung.dft_gpu._kernels.cpu` for the equations).

It is written with explicit ``<8 x double>`` LLVM values because numba's auto-vectoriser keeps to
256-bit vectors on these CPUs (LLVM's ``prefer-256-bit`` tuning) and does not register-block loops;
explicit 512-bit values compile to AVX-512 instructions where the CPU has them and are split into
narrower ones by LLVM elsewhere (same results, just slower: see :data:`HAVE_AVX512`).
"""

from __future__ import annotations

import llvmlite.binding as llvm_binding
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

#: Lanes of one vector (float64 in 512 bits).
LANES = 8
#: Rows per tile for a tile of ``NV`` vectors: ``MR * NV`` accumulators, ``MR * NV`` factor vectors of
#: the tile's rows, ``NV`` factor and ``2 NV`` output vectors of row ``p`` and one broadcast must fit
#: the 32 vector registers of AVX-512.
ROWS = {1: 12, 2: 6}
MAX_NV = 2
#: Independent FMA chains for the mirrored sum ``X[p, :]`` per ``p`` (2 was the fastest of 1-3: BENCHMARKS.md).
CHAINS = 2
#: ``llvm.prefetch`` locality of the tensor prefetches (2: into L2 and the levels below it).
PF_LOCALITY = 2

#: The host CPU has 512-bit vectors, so the micro-kernel runs at full width.
HAVE_AVX512 = "+avx512f" in llvm_binding.get_host_cpu_features().flatten().split(",")

_F64 = ir.DoubleType()
_VEC = ir.VectorType(_F64, LANES)
_MASK = ir.VectorType(ir.IntType(1), LANES)
_I64 = ir.IntType(64)
_I32 = ir.IntType(32)
_I64VEC = ir.VectorType(_I64, LANES)


def _ptr_suffix() -> str:
    """Name-mangling suffix of a vector pointer in intrinsic names (opaque ``p0`` on recent LLVM)."""
    text = str(_VEC.as_pointer())
    return "p0" if text.strip() == "ptr" else "p0v8f64"


def _declare(module, name, fnty):
    if name in module.globals:
        return module.globals[name]
    return ir.Function(module, fnty, name)


def _vector_intrinsics(module):
    """The LLVM intrinsics the micro-kernels use on ``<8 x double>``: fma, masked load, masked store."""
    vptr, sfx = _VEC.as_pointer(), _ptr_suffix()
    fma = _declare(module, "llvm.fma.v8f64", ir.FunctionType(_VEC, [_VEC, _VEC, _VEC]))
    mload = _declare(module, f"llvm.masked.load.v8f64.{sfx}", ir.FunctionType(_VEC, [vptr, _I32, _MASK, _VEC]))
    mstore = _declare(module, f"llvm.masked.store.v8f64.{sfx}",
                      ir.FunctionType(ir.VoidType(), [_VEC, vptr, _I32, _MASK]))
    return fma, mload, mstore


def _splat(builder, value, vecty):
    undef = ir.Constant(vecty, ir.Undefined)
    one = builder.insert_element(undef, value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(one, undef, ir.Constant(ir.VectorType(_I32, vecty.count), [0] * vecty.count))


def make_symtile(mr: int, nv: int):
    """A numba intrinsic computing one ``mr``-row, ``8 nv``-column tile of ``X = B F`` for a packed
    symmetric ``B``, with the mirrored contributions of the tile's elements to the rows above it.

    The intrinsic has the signature
    ``symtile(b, boff, q0, nrows, f, foff, ldf, x, xoff, ldx, ncols, pfoff)`` with ``b``, ``f``, ``x``
    one-dimensional C-contiguous float64 arrays and integer element offsets. With
    ``B(q, p) = b[boff + h (h+1)/2 + l]``, ``h = max(q, p)``, ``l = min(q, p)`` (a packed lower
    triangle, PySCF's ``pack_tril`` order), ``F[p, c] = f[foff + p*ldf + c]`` and
    ``X[q, c] = x[xoff + q*ldx + c]``, for the tile rows ``q0 <= q < q0 + nrows`` and ``c < ncols``:

        X[q, c]  = sum_{p < q0 + nrows} B(q, p) F[p, c]        (stored)
        X[p, c] += sum_{q0 <= q < q0 + nrows} B(q, p) F[q, c]   for p < q0 (accumulated)

    so calling it for tiles in increasing ``q0`` that cover ``0 .. n-1`` leaves ``X = B F`` (the first
    tile may be short). Requires ``1 <= nrows <= mr`` and (``nrows == mr`` or ``q0 == 0``);
    ``ncols <= 8 nv``; ``f`` must hold ``8 nv`` readable columns per row (zero-padded: padded columns
    are computed and masked out of every store). Nothing outside the named rows and columns of ``x``
    is written. With ``pfoff != 0`` the kernel also prefetches, once per cache line, the packed
    elements ``pfoff`` ahead of the ones it reads (rows a later tile or the next aux function reads; prefetches
    never fault, so they may point past the end of ``b``).
    """
    if mr < 1 or not 1 <= nv <= MAX_NV:
        raise ValueError(f"bad tile shape {mr} x {nv} vectors")
    vptr = _VEC.as_pointer()
    sfx = _ptr_suffix()

    @intrinsic
    def symtile(typingctx, b, boff, q0, nrows, f, foff, ldf, x, xoff, ldx, ncols, pfoff):
        sig = types.void(b, boff, q0, nrows, f, foff, ldf, x, xoff, ldx, ncols, pfoff)

        def codegen(context, builder, signature, args):
            b_, boff_, q0_, nrows_, f_, foff_, ldf_, x_, xoff_, ldx_, ncols_, pfoff_ = args
            bptr = context.make_array(signature.args[0])(context, builder, b_).data
            fptr = context.make_array(signature.args[4])(context, builder, f_).data
            xptr = context.make_array(signature.args[7])(context, builder, x_).data
            mod = builder.module
            fma, mload, mstore = _vector_intrinsics(mod)
            i8p = ir.IntType(8).as_pointer()
            prefetch = _declare(mod, "llvm.prefetch.p0" if sfx == "p0" else "llvm.prefetch.p0i8",
                                ir.FunctionType(ir.VoidType(), [i8p, _I32, _I32, _I32]))
            i64 = lambda v: ir.Constant(_I64, v)  # noqa: E731
            ncols_v = _splat(builder, ncols_, _I64VEC)
            masks = [builder.icmp_signed("<", ir.Constant(_I64VEC, [v * LANES + k for k in range(LANES)]), ncols_v)
                     for v in range(nv)]
            zero = ir.Constant(_VEC, [0.0] * LANES)

            def vload(ptr, off):
                return builder.load(builder.bitcast(builder.gep(ptr, [off]), vptr), align=8)

            def tri(h):  # h (h+1) / 2
                return builder.lshr(builder.mul(h, builder.add(h, i64(1))), i64(1))

            last = builder.sub(nrows_, i64(1))
            valid = [builder.icmp_signed("<", i64(m), nrows_) for m in range(mr)]
            qrow = [builder.add(q0_, builder.select(valid[m], i64(m), last)) for m in range(mr)]  # clamped
            rows = [builder.add(boff_, tri(q)) for q in qrow]  # packed row starts
            fq = [[vload(fptr, builder.add(builder.add(foff_, builder.mul(q, ldf_)), i64(v * LANES)))
                   for v in range(nv)] for q in qrow]
            # accumulators as allocas: LLVM's mem2reg keeps them in registers
            acc = [[cgutils.alloca_once(builder, _VEC) for _ in range(nv)] for _ in range(mr)]
            for row in acc:
                for a in row:
                    builder.store(zero, a)
            def body(p):  # one column p < q0 of the rectangle left of the tile
                frow = builder.add(foff_, builder.mul(p, ldf_))
                fp = [vload(fptr, builder.add(frow, i64(v * LANES))) for v in range(nv)]
                xrow = builder.add(xoff_, builder.mul(p, ldx_))
                xp_ptr = [builder.bitcast(builder.gep(xptr, [builder.add(xrow, i64(v * LANES))]), vptr)
                          for v in range(nv)]
                # the mirrored sum, in CHAINS independent FMA chains (a shorter latency chain per p)
                nch = min(CHAINS, mr)
                xs = [[builder.call(mload, [xp_ptr[v], ir.Constant(_I32, 8), masks[v], zero])] + [zero] * (nch - 1)
                      for v in range(nv)]
                for m in range(mr):
                    bs = _splat(builder, builder.load(builder.gep(bptr, [builder.add(rows[m], p)])), _VEC)
                    for v in range(nv):
                        builder.store(builder.call(fma, [bs, fp[v], builder.load(acc[m][v])]), acc[m][v])
                        xs[v][m % nch] = builder.call(fma, [bs, fq[m][v], xs[v][m % nch]])
                for v in range(nv):
                    total = xs[v][0]
                    for c in range(1, nch):
                        total = builder.fadd(total, xs[v][c])
                    builder.call(mstore, [total, xp_ptr[v], ir.Constant(_I32, 8), masks[v]])

            # the rectangle p < q0 (empty for q0 == 0), eight columns (one cache line of each packed
            # row) per trip: the prefetches are issued once per trip, outside the unrolled body
            n8 = builder.lshr(q0_, i64(3))
            with cgutils.for_range(builder, n8) as loop:
                p8 = builder.shl(loop.index, i64(3))
                with builder.if_then(builder.icmp_signed("!=", pfoff_, i64(0))):
                    for m in range(mr):
                        addr = builder.gep(bptr, [builder.add(builder.add(rows[m], p8), pfoff_)])
                        builder.call(prefetch, [builder.bitcast(addr, i8p), ir.Constant(_I32, 0),
                                                ir.Constant(_I32, PF_LOCALITY), ir.Constant(_I32, 1)])
                with cgutils.for_range(builder, i64(LANES)) as inner:
                    body(builder.add(p8, inner.index))
            tail = builder.shl(n8, i64(3))
            with cgutils.for_range(builder, builder.sub(q0_, tail)) as loop:
                body(builder.add(tail, loop.index))
            # the tile's own diagonal block: B(q0+m, q0+k), zero outside the valid rows
            diag0 = builder.add(rows[0], q0_)  # B(q0, q0): always a valid address
            for m in range(mr):
                for k in range(mr):
                    h, lo = max(m, k), min(m, k)
                    ok = valid[h]
                    addr = builder.select(ok, builder.add(builder.add(rows[h], q0_), i64(lo)), diag0)
                    val = builder.select(ok, builder.load(builder.gep(bptr, [addr])), ir.Constant(_F64, 0.0))
                    bs = _splat(builder, val, _VEC)
                    for v in range(nv):
                        builder.store(builder.call(fma, [bs, fq[k][v], builder.load(acc[m][v])]), acc[m][v])
            for m in range(mr):
                with builder.if_then(valid[m]):
                    xrow = builder.add(xoff_, builder.mul(builder.add(q0_, i64(m)), ldx_))
                    for v in range(nv):
                        ptr = builder.bitcast(builder.gep(xptr, [builder.add(xrow, i64(v * LANES))]), vptr)
                        builder.call(mstore, [builder.load(acc[m][v]), ptr, ir.Constant(_I32, 8), masks[v]])
            return context.get_dummy_value()

        return sig, codegen

    return symtile


def _hsum(builder, v):
    """Sum of the 8 lanes of ``v`` (a shuffle tree: 3 adds)."""
    n = LANES
    while n > 1:
        n //= 2
        undef = ir.Constant(v.type, ir.Undefined)
        lo = builder.shuffle_vector(v, undef, ir.Constant(ir.VectorType(_I32, n), list(range(n))))
        hi = builder.shuffle_vector(v, undef, ir.Constant(ir.VectorType(_I32, n), list(range(n, 2 * n))))
        v = builder.fadd(lo, hi)
    return builder.extract_element(v, ir.Constant(_I32, 0))


def make_narrowtile(mr: int, nc: int):
    """A numba intrinsic computing one ``mr``-row tile of ``X = B F`` for a packed symmetric ``B`` and a
    factor of only ``nc`` columns, vectorised over ``p`` (the packed rows) instead of over columns.

    The symmetric tile of :func:`make_symtile` spends a whole 8-lane vector on each group of up to 8
    columns; for the 1-3 columns left over after the 16-column passes (nocc = 34 = 16 + 16 + 2) most
    of its lanes would idle. Here the lanes run along ``p``: per 8 columns ``p`` of the rectangle
    ``p < q0`` left of the tile, it loads the ``mr`` packed row pieces ``B(q0+m, p:p+8)``, ``nc``
    vectors of ``F[p:p+8, c]`` and of ``X[p:p+8, c]``, and issues ``2 mr nc`` fused multiply-adds:

        acc[m, c]   += B(q0+m, p:p+8) * F[p:p+8, c]          (summed over lanes at the tile's end)
        X[p:p+8, c] += sum_m B(q0+m, p:p+8) * F[q0+m, c]      (the mirrored elements)

    Signature ``narrowtile(b, boff, q0, nrows, fc, ldc, xc)``: ``b`` packed as in :func:`make_symtile`,
    ``fc[c*ldc + p] = F[p, c]`` (columns stored contiguously, the transpose of the symmetric tile's
    factor layout) and ``xc[c*ldc + p]`` the matching accumulator of ``X[p, c]``, for ``c < nc``. For the
    tile rows ``q0 <= q < q0 + nrows``:

        xc[c, q] += sum_{p < q0 + nrows} B(q, p) F[p, c]
        xc[c, p] += sum_{q0 <= q < q0 + nrows} B(q, p) F[q, c]   for p < q0

    so tiles in increasing ``q0`` covering ``0 .. n-1`` on a zeroed ``xc`` leave ``X = B F``. Requires
    ``1 <= nrows <= mr`` and (``nrows == mr`` or ``q0 == 0``). Only the rows ``p < q0 + nrows`` of the
    ``nc`` columns of ``xc`` are touched.
    """
    if not 1 <= mr <= LANES or nc < 1:
        raise ValueError(f"bad narrow tile shape {mr} rows x {nc} columns")
    vptr = _VEC.as_pointer()

    @intrinsic
    def narrowtile(typingctx, b, boff, q0, nrows, fc, ldc, xc):
        sig = types.void(b, boff, q0, nrows, fc, ldc, xc)

        def codegen(context, builder, signature, args):
            b_, boff_, q0_, nrows_, fc_, ldc_, xc_ = args
            bptr = context.make_array(signature.args[0])(context, builder, b_).data
            fptr = context.make_array(signature.args[4])(context, builder, fc_).data
            xptr = context.make_array(signature.args[6])(context, builder, xc_).data
            mod = builder.module
            fma, mload, mstore = _vector_intrinsics(mod)
            i64 = lambda v: ir.Constant(_I64, v)  # noqa: E731
            zero = ir.Constant(_VEC, [0.0] * LANES)

            def vptr_at(ptr, off):
                return builder.bitcast(builder.gep(ptr, [off]), vptr)

            def tri(h):  # h (h+1) / 2
                return builder.lshr(builder.mul(h, builder.add(h, i64(1))), i64(1))

            last = builder.sub(nrows_, i64(1))
            valid = [builder.icmp_signed("<", i64(m), nrows_) for m in range(mr)]
            qrow = [builder.add(q0_, builder.select(valid[m], i64(m), last)) for m in range(mr)]  # clamped
            rows = [builder.add(boff_, tri(q)) for q in qrow]
            cols = [builder.mul(i64(c), ldc_) for c in range(nc)]
            fq = [[_splat(builder, builder.load(builder.gep(fptr, [builder.add(cols[c], q)])), _VEC)
                   for c in range(nc)] for q in qrow]
            acc = [[cgutils.alloca_once(builder, _VEC) for _ in range(nc)] for _ in range(mr)]
            for row in acc:
                for a in row:
                    builder.store(zero, a)

            def body(p, mask):  # lanes p .. p+7 of the rectangle; mask: None (all lanes) or the tail's
                def load(ptr, off):
                    if mask is None:
                        return builder.load(vptr_at(ptr, off), align=8)
                    return builder.call(mload, [vptr_at(ptr, off), ir.Constant(_I32, 8), mask, zero])

                bv = [load(bptr, builder.add(rows[m], p)) for m in range(mr)]
                for c in range(nc):
                    off = builder.add(cols[c], p)
                    fv = load(fptr, off)
                    xs = [load(xptr, off), zero]  # two FMA chains for the mirrored sum
                    for m in range(mr):
                        builder.store(builder.call(fma, [bv[m], fv, builder.load(acc[m][c])]), acc[m][c])
                        xs[m % 2] = builder.call(fma, [bv[m], fq[m][c], xs[m % 2]])
                    total = builder.fadd(xs[0], xs[1])
                    if mask is None:
                        builder.store(total, vptr_at(xptr, off), align=8)
                    else:
                        builder.call(mstore, [total, vptr_at(xptr, off), ir.Constant(_I32, 8), mask])

            n8 = builder.lshr(q0_, i64(3))
            with cgutils.for_range(builder, n8) as loop:
                body(builder.shl(loop.index, i64(3)), None)
            tail = builder.shl(n8, i64(3))
            ntail = builder.sub(q0_, tail)
            with builder.if_then(builder.icmp_signed(">", ntail, i64(0))):
                mask = builder.icmp_signed("<", ir.Constant(_I64VEC, list(range(LANES))),
                                           _splat(builder, ntail, _I64VEC))
                body(tail, mask)
            # the tile's own diagonal block, one masked vector per row: B(q0+m, q0:q0+m+1) forward and
            # its strictly lower part mirrored into X[q0:q0+m, c] (needs mr <= 8)
            lane = ir.Constant(_I64VEC, list(range(LANES)))
            dx = [zero] * nc
            for m in range(mr):
                upto = _splat(builder, builder.select(valid[m], i64(m + 1), i64(0)), _I64VEC)
                bd = builder.call(mload, [vptr_at(bptr, builder.add(rows[m], q0_)), ir.Constant(_I32, 8),
                                          builder.icmp_signed("<", lane, upto), zero])
                strict = builder.select(builder.icmp_signed("<", lane, _splat(builder, i64(m), _I64VEC)), bd, zero)
                for c in range(nc):
                    fd = builder.call(mload, [vptr_at(fptr, builder.add(cols[c], q0_)), ir.Constant(_I32, 8),
                                              builder.icmp_signed("<", lane, upto), zero])
                    builder.store(builder.call(fma, [bd, fd, builder.load(acc[m][c])]), acc[m][c])
                    dx[c] = builder.call(fma, [strict, fq[m][c], dx[c]])
            inrows = builder.icmp_signed("<", lane, _splat(builder, nrows_, _I64VEC))
            for c in range(nc):
                ptr = vptr_at(xptr, builder.add(cols[c], q0_))
                old = builder.call(mload, [ptr, ir.Constant(_I32, 8), inrows, zero])
                builder.call(mstore, [builder.fadd(old, dx[c]), ptr, ir.Constant(_I32, 8), inrows])
            # lane sums into the tile's rows of X
            for m in range(mr):
                with builder.if_then(valid[m]):
                    for c in range(nc):
                        xq = builder.gep(xptr, [builder.add(cols[c], qrow[m])])
                        builder.store(builder.fadd(builder.load(xq), _hsum(builder, builder.load(acc[m][c]))), xq)
            return context.get_dummy_value()

        return sig, codegen

    return narrowtile


SYMTILES = {nv: make_symtile(ROWS[nv], nv) for nv in range(1, MAX_NV + 1)}

#: Columns of the wider tile (2 vectors of 8); a remainder of at most 8 columns takes the 1-vector tile.
CHUNK = LANES * MAX_NV
#: The micro-kernel prefetches the packed tensor this many tiles ahead in the first column pass; the
#: second pass, which finds its aux function in cache, prefetches the same rows of the next one (so
#: that its first pass mostly reads L2 too; timings: BENCHMARKS.md).
PREFETCH_TILES = 2
#: A column chunk this narrow (the remainder of ``r`` after the 16-column passes, e.g. 2 of nocc = 34)
#: takes the narrow tile (:func:`make_narrowtile`, lanes along ``p``) instead of an 8-lane symmetric
#: tile pass, which costs the same for 1 or 8 columns (timings per column count: BENCHMARKS.md).
FEW_COLUMNS = 3
#: Rows per narrow tile for ``nc`` columns: ``mr nc`` accumulators, ``mr nc`` broadcast factors, ``mr``
#: row pieces and ``2 nc`` factor/output vectors must fit the 32 vector registers.
NARROW_ROWS = {1: 8, 2: 4, 3: 4}
NARROWTILES = {nc: make_narrowtile(mr, nc) for nc, mr in NARROW_ROWS.items()}
_S1, _S2 = SYMTILES[1], SYMTILES[2]
_R1, _R2 = ROWS[1], ROWS[2]
_N1, _N2, _N3 = NARROWTILES[1], NARROWTILES[2], NARROWTILES[3]
_M1, _M2, _M3 = NARROW_ROWS[1], NARROW_ROWS[2], NARROW_ROWS[3]


# -- drivers (numba): in this module, so that an edit to the micro-kernel above invalidates numba's
# on-disk cache of the functions that inline it (the cache is keyed on the caller's source file)


@njit(cache=True)
def _half_transform_one(b, boff, nao, f, foff, ldf, r, x, xoff, ldx, fc, xc):
    """``x[xoff + q*ldx + i] = sum_p B(q, p) f[foff + p*ldf + i]`` for ``q < nao``, ``i < r``, with
    ``B(q, p)`` the packed symmetric matrix at ``b[boff:]`` (:func:`make_symtile`). A last chunk of at
    most ``FEW_COLUMNS`` columns (from ``narrow_start(r)``) takes :func:`_narrow_columns` with ``fc``
    (FEW_COLUMNS, nao), those columns of ``f`` transposed (:func:`fused_block` fills it once per call),
    and ``xc`` scratch of the same shape."""
    for c0 in range(0, r, CHUNK):
        ncols = min(CHUNK, r - c0)
        if ncols <= FEW_COLUMNS:
            _narrow_columns(b, boff, nao, fc, ncols, x, xoff + c0, ldx, xc)
            continue
        wide = ncols > LANES
        mr = _R2 if wide else _R1
        nrows = nao % mr
        if nrows == 0:
            nrows = mr
        q0 = 0
        while q0 < nao:
            pf = 0
            if c0 == 0:  # prefetch distance: from this tile's rows to those PREFETCH_TILES tiles on
                ahead = q0 + PREFETCH_TILES * mr
                pf = ahead * (ahead + 1) // 2 - q0 * (q0 + 1) // 2
            elif c0 == CHUNK:  # second pass, from cache: the same rows of the next aux function
                pf = nao * (nao + 1) // 2
            if ncols == CHUNK:  # a constant column count: the column masks fold away
                _S2(b, boff, q0, nrows, f, foff + c0, ldf, x, xoff + c0, ldx, CHUNK, pf)
            elif wide:
                _S2(b, boff, q0, nrows, f, foff + c0, ldf, x, xoff + c0, ldx, ncols, pf)
            else:
                _S1(b, boff, q0, nrows, f, foff + c0, ldf, x, xoff + c0, ldx, ncols, pf)
            q0 += nrows
            nrows = mr


@njit(cache=True)
def narrow_start(r):
    """First column of the chunk of a rank-``r`` factor that :func:`_narrow_columns` takes, when its
    width ``r - narrow_start(r)`` is at most ``FEW_COLUMNS`` (the chunks of :func:`_half_transform_one`)."""
    return ((r - 1) // CHUNK) * CHUNK


@njit(cache=True)
def _narrow_columns(b, boff, nao, fc, nc, x, xoff, ldx, xc):
    """The product of :func:`_half_transform_one` for ``nc <= FEW_COLUMNS`` columns, on narrow tiles:
    ``fc`` (FEW_COLUMNS, nao) holds the factor columns transposed, the product accumulates in ``xc``
    (same shape, zeroed here) and is copied to ``x``."""
    xc[:nc] = 0.0
    fcf = fc.reshape(-1)
    xcf = xc.reshape(-1)
    mr = _M1 if nc == 1 else (_M2 if nc == 2 else _M3)
    nrows = nao % mr
    if nrows == 0:
        nrows = mr
    q0 = 0
    while q0 < nao:
        if nc == 1:
            _N1(b, boff, q0, nrows, fcf, nao, xcf)
        elif nc == 2:
            _N2(b, boff, q0, nrows, fcf, nao, xcf)
        else:
            _N3(b, boff, q0, nrows, fcf, nao, xcf)
        q0 += nrows
        nrows = mr
    for q in range(nao):
        for c in range(nc):
            x[xoff + q * ldx + c] = xc[c, q]


@njit(cache=True)
def fused_block(b, nblk, nao, f, ldf, ranks, xoffs, ldxs, gdm, gsign, x, rho, vj, do_j):
    """Half-transform every factor group of one packed aux block; fitted densities; packed J.

    Parameters
    ----------
    b : (nblk*npair,) float64, npair = nao*(nao+1)//2
        The aux block, each ``B_L`` as its packed lower triangle (PySCF ``pack_tril`` order), flattened.
    nblk, nao : int
    f : (ngroups*nao*ldf,) float64
        Group ``g``'s factors ``F_g[p, i]`` at ``f[g*nao*ldf + p*ldf + i]``, columns ``r_g .. ldf``
        zero; ``ldf`` a multiple of 8.
    ranks, xoffs, ldxs, gdm : (ngroups,) int64
        Rank ``r_g``, offset of ``X_g`` in ``x``, its row stride (``>= nblk*r_g``) and density index
        of each group.
    gsign : (ngroups,) float64
        +1 or -1.
    x : float64, length >= sum_g nao*ldxs[g]
        Output: ``X_g[q, L, i] = sum_p B_L[q, p] F_g[p, i]`` at ``x[xoffs[g] + q*ldxs[g] + L*r_g + i]``.
    rho : (ngroups, nblk) float64
        Output: ``sum_qi X_g[q,L,i] F_g[q,i]``.
    vj : (n_dm, npair) float64
        With ``do_j``: ``J_n += sum_L rho_n[L] B_L`` (packed) with
        ``rho_n[L] = sum_{g of n} sign_g rho[g, L]``.
    do_j : bool
    """
    ngroups = ranks.shape[0]
    n_dm = vj.shape[0]
    npair = nao * (nao + 1) // 2
    rho_dm = np.zeros(max(n_dm, 1))
    fc = np.zeros((ngroups, FEW_COLUMNS, nao))  # each group's narrow columns, transposed, once per call
    for g in range(ngroups):
        c0 = narrow_start(ranks[g])
        if ranks[g] - c0 <= FEW_COLUMNS:
            for c in range(ranks[g] - c0):
                for p in range(nao):
                    fc[g, c, p] = f[g * nao * ldf + p * ldf + c0 + c]
    xc = np.empty((FEW_COLUMNS, nao))
    for L in range(nblk):
        for g in range(ngroups):
            r = ranks[g]
            _half_transform_one(b, L * npair, nao, f, g * nao * ldf, ldf, r, x, xoffs[g] + L * r, ldxs[g], fc[g], xc)
            rho[g, L] = _fitted_density(x, xoffs[g] + L * r, ldxs[g], f, g * nao * ldf, ldf, nao, r)
        if do_j:  # while B_L is still in cache
            rho_dm[:] = 0.0
            for g in range(ngroups):
                rho_dm[gdm[g]] += gsign[g] * rho[g, L]
            bl = b[L * npair:(L + 1) * npair]
            for d in range(n_dm):
                vd = vj[d]
                a = rho_dm[d]
                for k in range(npair):
                    vd[k] += a * bl[k]


@njit(cache=True, fastmath=True)
def _fitted_density(x, xoff, ldx, f, foff, ldf, nao, r):
    """``sum_{q < nao, i < r} x[xoff + q*ldx + i] * f[foff + q*ldf + i]`` (reassociated: vectorised)."""
    s = 0.0
    for q in range(nao):
        xq = x[xoff + q * ldx:xoff + q * ldx + r]
        fq = f[foff + q * ldf:foff + q * ldf + r]
        for i in range(r):
            s += xq[i] * fq[i]
    return s
