"""Register-blocked GEMM micro-kernels for numba, written as LLVM vector IR (``@intrinsic``).

Why this exists
---------------
The occupied-orbital exchange needs the half-transform ``X[q, L, i] = sum_p B[L, q, p] F[p, i]`` of
every aux function ``L``: a product with a short dimension (``i``: tens of occupied orbitals) against a
large streamed operand (the tensor). OpenBLAS packs the large operand into a buffer before its
micro-kernel runs, and with only ``nocc`` rows to reuse each packed element the copy costs about as
much as the arithmetic (measured: ~41 GFLOP/s against 73 for a square DGEMM on one AVX-512 core).
The micro-kernel here reads the tensor rows where they lie (each element once, in row order) and keeps
a ``MR x (8 NV)`` tile of ``X`` in vector registers: per ``p`` it loads ``NV`` 8-wide vectors of the
(small, cache-resident) factor row ``F[p, :]``, broadcasts ``MR`` tensor elements ``B[L, q+m, p]`` and
issues ``MR * NV`` fused multiply-adds — the classic outer-product micro-kernel (Goto and van de Geijn,
ACM TOMS 34, 12 (2008)), minus the packing.

It is written with explicit ``<8 x double>`` LLVM values because numba's auto-vectoriser keeps to
256-bit vectors on these CPUs (LLVM's ``prefer-256-bit`` tuning) and does not register-block loops;
explicit 512-bit values compile to AVX-512 instructions where the CPU has them and are split into
narrower ones by LLVM elsewhere (same results, just slower: see :data:`HAVE_AVX512`).
"""

from __future__ import annotations

import llvmlite.binding as llvm_binding
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

#: Lanes of one vector (float64 in 512 bits).
LANES = 8
#: Rows per tile for a tile of ``NV`` vectors (``MR * NV`` accumulators + ``NV`` factor vectors + one
#: broadcast must fit the 32 vector registers of AVX-512).
ROWS = {1: 12, 2: 12, 3: 8, 4: 6, 5: 5}
MAX_NV = 5
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


def _splat(builder, value, vecty):
    undef = ir.Constant(vecty, ir.Undefined)
    one = builder.insert_element(undef, value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(one, undef, ir.Constant(ir.VectorType(_I32, vecty.count), [0] * vecty.count))


def make_tile(mr: int, nv: int):
    """A numba intrinsic computing one ``mr x (8 nv)`` tile of ``X = B F`` (rows of ``B`` times ``F``).

    The intrinsic has the signature
    ``tile(b, boff, ldb, nrows, f, foff, ldf, x, xoff, ldx, ncols, nk, pfoff)`` with ``b``, ``f``, ``x``
    one-dimensional C-contiguous float64 arrays and integer element offsets:

        x[xoff + m*ldx + c] = sum_{p < nk} b[boff + m*ldb + p] * f[foff + p*ldf + c]

    for rows ``m < nrows`` (``1 <= nrows <= mr``) and columns ``c < ncols`` (``ncols <= 8 nv``). Rows of
    the tile past ``nrows`` repeat the last valid row and are not stored; columns past ``ncols`` are
    computed from ``f`` (which must hold ``8 nv`` readable columns per row, zero-padded) and masked out
    of the store. Nothing outside ``x``'s tile is written; bounds are the caller's responsibility.
    With ``pfoff != 0`` the kernel also prefetches, once per cache line, ``b[boff + m*ldb + p + pfoff]``
    (the tensor rows a later tile will read: the row-by-row walk over a tensor larger than the caches
    is otherwise latency-bound, measured 27 against 47 GFLOP/s on aspirin). Prefetches never fault, so
    ``pfoff`` may point past the end of ``b``.
    """
    if mr < 1 or not 1 <= nv <= MAX_NV:
        raise ValueError(f"bad tile shape {mr} x {nv} vectors")
    vptr = _VEC.as_pointer()
    sfx = _ptr_suffix()

    @intrinsic
    def tile(typingctx, b, boff, ldb, nrows, f, foff, ldf, x, xoff, ldx, ncols, nk, pfoff):
        sig = types.void(b, boff, ldb, nrows, f, foff, ldf, x, xoff, ldx, ncols, nk, pfoff)

        def codegen(context, builder, signature, args):
            b_, boff_, ldb_, nrows_, f_, foff_, ldf_, x_, xoff_, ldx_, ncols_, nk_, pfoff_ = args
            bptr = context.make_array(signature.args[0])(context, builder, b_).data
            fptr = context.make_array(signature.args[4])(context, builder, f_).data
            xptr = context.make_array(signature.args[7])(context, builder, x_).data
            mod = builder.module
            fma = _declare(mod, "llvm.fma.v8f64", ir.FunctionType(_VEC, [_VEC, _VEC, _VEC]))
            mstore = _declare(mod, f"llvm.masked.store.v8f64.{sfx}",
                              ir.FunctionType(ir.VoidType(), [_VEC, vptr, _I32, _MASK]))
            i64 = lambda v: ir.Constant(_I64, v)  # noqa: E731
            ncols_v = _splat(builder, ncols_, _I64VEC)
            masks = [builder.icmp_signed("<", ir.Constant(_I64VEC, [v * LANES + k for k in range(LANES)]), ncols_v)
                     for v in range(nv)]
            zero = ir.Constant(_VEC, [0.0] * LANES)
            last = builder.sub(nrows_, i64(1))
            rows = []
            for m in range(mr):
                mm = builder.select(builder.icmp_signed("<", i64(m), nrows_), i64(m), last)
                rows.append(builder.add(boff_, builder.mul(mm, ldb_)))
            # accumulators as allocas: LLVM's mem2reg keeps them in registers
            acc = [[cgutils.alloca_once(builder, _VEC) for _ in range(nv)] for _ in range(mr)]
            for row in acc:
                for a in row:
                    builder.store(zero, a)
            i8p = ir.IntType(8).as_pointer()
            prefetch = _declare(mod, "llvm.prefetch.p0" if sfx == "p0" else "llvm.prefetch.p0i8",
                                ir.FunctionType(ir.VoidType(), [i8p, _I32, _I32, _I32]))
            with cgutils.for_range(builder, nk_) as loop:
                p = loop.index
                line_start = builder.icmp_signed("==", builder.and_(p, i64(7)), i64(0))
                want = builder.and_(line_start, builder.icmp_signed("!=", pfoff_, i64(0)))
                with builder.if_then(want):
                    for m in range(mr):
                        addr = builder.gep(bptr, [builder.add(builder.add(rows[m], p), pfoff_)])
                        builder.call(prefetch, [builder.bitcast(addr, i8p), ir.Constant(_I32, 0),
                                                ir.Constant(_I32, PF_LOCALITY), ir.Constant(_I32, 1)])
                frow = builder.add(foff_, builder.mul(p, ldf_))
                fv = [builder.load(builder.bitcast(builder.gep(fptr, [builder.add(frow, i64(v * LANES))]), vptr),
                                   align=8) for v in range(nv)]
                for m in range(mr):
                    bs = _splat(builder, builder.load(builder.gep(bptr, [builder.add(rows[m], p)])), _VEC)
                    for v in range(nv):
                        builder.store(builder.call(fma, [bs, fv[v], builder.load(acc[m][v])]), acc[m][v])
            for m in range(mr):
                with builder.if_then(builder.icmp_signed("<", i64(m), nrows_)):
                    xrow = builder.add(xoff_, builder.mul(i64(m), ldx_))
                    for v in range(nv):
                        ptr = builder.bitcast(builder.gep(xptr, [builder.add(xrow, i64(v * LANES))]), vptr)
                        builder.call(mstore, [builder.load(acc[m][v]), ptr, ir.Constant(_I32, 8), masks[v]])
            return context.get_dummy_value()

        return sig, codegen

    return tile


TILES = {nv: make_tile(ROWS[nv], nv) for nv in range(1, MAX_NV + 1)}
