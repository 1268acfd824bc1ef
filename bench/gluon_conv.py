"""Experiment (round 3, eighth session): the unpadded tf32x3-ws path written in Gluon, where
the layouts and the tensor-core waits are the kernel's own choice rather than the compiler's.

Not on any default path: the kernel under test is ``kernels/implicit_gemm.py``; this file
times an alternative beside it (``python3 -m bench.gluon_conv``, a CUDA GPU) and compiles
it without one (``--static``, for sm_90 with the installed Triton).

What ncu found on the H200 (notes/kernel.md, eighth session): on the KernelBench layers
the busiest unit is L1's data pipe (62-70% of its peak; the tensor pipe 22-51%), and on
#60 a sixth of the warps' stalls are the waits between the three chained tensor-core
products of each K step, which Triton 3.6 places after each product that feeds another.
Here, the input's gather goes from global memory straight into the registers of the
tensor cores' left operand (no shared-memory copy and read-back: about two fifths of
L1's traffic a K step on #60), and the three products of a step are issued back to back
with one wait a step, after the next step's loads are in flight.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys
import tempfile
from pathlib import Path

import torch
import triton

from kernels import implicit_gemm as ig

try:
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.hopper import (
        async_copy,
        fence_async_shared,
        warpgroup_mma,
        warpgroup_mma_wait,
    )
except ImportError:  # a Triton without Gluon's Hopper ops
    gluon = None

if gluon is not None:
    # Triton 3.6 names the CTA barrier thread_barrier; 3.9 barrier.
    _cta_barrier = getattr(gl, "thread_barrier", None) or gl.barrier
    # 3.9 renamed the copy of a global tile into shared memory (the old name raises).
    _async_load = getattr(async_copy, "async_load", None) or async_copy.async_copy_global_to_shared

    @gluon.jit
    def _copy_weight_step(b_big, b_small, w_ptr, ws_ptr, b_offs, k_cols, step, WK, BLOCK_K, STAGES):
        """Step ``step``'s tiles of the weight's two halves into its slot of the ring, one
        group of async copies. The halves hold WK columns a row (zeros and +-2^-126 past
        K): columns past WK, those of steps past the last, are masked off."""
        k = step * BLOCK_K
        mask = (k + k_cols) < WK
        _async_load(b_big.index(step % STAGES), w_ptr + b_offs + k, mask=mask)
        _async_load(b_small.index(step % STAGES), ws_ptr + b_offs + k, mask=mask)
        async_copy.commit_group()

    # The kernels' layouts: the tensor cores' accumulator (one warpgroup, 16 rows a warp)
    # and their left operand's registers; the weight's shared tiles (K contiguous,
    # swizzled to their row of 64 or 128 bytes) and its copies (16 bytes along K); the
    # output's store (4 positions a thread along M, 16-byte stores, lanes down the rows).
    @gluon.constexpr_function
    def _mma_layout(BLOCK_N):
        return gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BLOCK_N, 8]
        )

    @gluon.constexpr_function
    def _a_layout(BLOCK_N):
        return gl.DotOperandLayout(operand_index=0, parent=_mma_layout(BLOCK_N), k_width=1)

    @gluon.constexpr_function
    def _b_smem_layout(BLOCK_K):
        return gl.NVMMASharedLayout(
            swizzle_byte_width=64 if BLOCK_K == 16 else 128,
            element_bitwidth=32,
            rank=2,
            transposed=True,
        )

    @gluon.constexpr_function
    def _b_load_layout(BLOCK_K):
        return gl.BlockedLayout([4, 1], [BLOCK_K // 4, 128 // BLOCK_K], [1, 4], [0, 1])

    @gluon.constexpr_function
    def _out_layout(BLOCK_M):
        return gl.BlockedLayout([4, 1], [BLOCK_M // 4, 128 // BLOCK_M], [1, 4], [0, 1])

    @gluon.jit
    def _split_tf32(a):
        """The input's TF32 halves: the big one exact in TF32, the small one the rest, zero
        where the input is infinite (as the kernel file's split)."""
        a_big = (a.to(gl.uint32, bitcast=True) & 0xFFFFE000).to(gl.float32, bitcast=True)
        return a_big, gl.where(a_big == a, 0.0, a - a_big)

    @gluon.jit
    def _three_products(a_small, a_big, b_big, b_small, acc, use_acc: gl.constexpr):
        """A K step's three TF32 products, issued back to back into one accumulator (the
        hardware orders them): small x big, big x small, big x big. ``use_acc`` False
        starts from zero (the promoted loop's step sum)."""
        acc = warpgroup_mma(a_small, b_big, acc, use_acc=use_acc, is_async=True)
        acc = warpgroup_mma(a_big, b_small, acc, is_async=True)
        return warpgroup_mma(a_big, b_big, acc, is_async=True)

    @gluon.jit
    def _tile_of(OC, out_spatial, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr):
        """This program's image, first output position and block of output channels: the
        channel blocks of one row block side by side, a row block inside one image."""
        pid = gl.program_id(0)
        num_pid_n = gl.cdiv(OC, BLOCK_N)
        pid_m = pid // num_pid_n
        blocks_per_image = gl.cdiv(out_spatial, BLOCK_M)
        return (
            pid_m // blocks_per_image,
            (pid_m % blocks_per_image) * BLOCK_M,
            pid % num_pid_n,
        )

    @gluon.jit
    def _store_tile(
        acc,
        b_ptr,
        y_ptr,
        OC,
        out_spatial,
        batch,
        m0,
        pid_n,
        HAS_BIAS: gl.constexpr,
        BLOCK_M: gl.constexpr,
        BLOCK_N: gl.constexpr,
        mma: gl.constexpr,
        out_layout: gl.constexpr,
    ):
        """The bias added, the tile converted to the store's layout and written to the
        NCDHW output, rows past the image and channels past OC masked off."""
        rn = pid_n * BLOCK_N + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, mma))
        if HAS_BIAS:
            acc = acc + gl.load(b_ptr + rn, mask=rn < OC, other=0.0)[None, :]
        out = gl.convert_layout(acc, out_layout)
        orow = m0 + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, out_layout))
        ocol = pid_n * BLOCK_N + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, out_layout))
        y_offs = (
            batch.to(gl.int64) * OC * out_spatial
            + orow[:, None]
            + ocol.to(gl.int64)[None, :] * out_spatial
        )
        gl.store(y_ptr + y_offs, out, mask=(orow < out_spatial)[:, None] & (ocol < OC)[None, :])

    @gluon.jit
    def _conv3d_gl_kernel(
        x_ptr,
        w_ptr,
        ws_ptr,
        b_ptr,
        y_ptr,
        tap_ptr,
        OC,
        K,
        H,
        W,
        OH,
        OW,
        SD,
        SH,
        SW,
        X_BATCH_STRIDE,
        WK,
        OUT_SPATIAL,
        HAS_BIAS: gl.constexpr,
        BLOCK_M: gl.constexpr,
        BLOCK_N: gl.constexpr,
        BLOCK_K: gl.constexpr,
        STAGES: gl.constexpr,
        OUT_VEC: gl.constexpr,
        FENCE: gl.constexpr,
        REFILL_FIRST: gl.constexpr,
    ):
        mma: gl.constexpr = _mma_layout(BLOCK_N)
        a_layout: gl.constexpr = _a_layout(BLOCK_N)
        b_smem: gl.constexpr = _b_smem_layout(BLOCK_K)
        b_load: gl.constexpr = _b_load_layout(BLOCK_K)
        out_layout: gl.constexpr = _out_layout(BLOCK_M)

        if OUT_VEC > 1:
            # Exact (the host checked it), and tells the compiler the divisibility that
            # makes the output's stores 16 bytes wide (the kernel file's v24a).
            OUT_SPATIAL = OUT_SPATIAL // OUT_VEC * OUT_VEC
        batch, m0, pid_n = _tile_of(OC, OUT_SPATIAL, BLOCK_M, BLOCK_N)

        # Rows and columns of the left operand, in its registers' own layout.
        rows = m0 + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, a_layout))
        cols = gl.arange(0, BLOCK_K, layout=gl.SliceLayout(0, a_layout))
        # Unpadded: rows past the image read its last position (the store masks them).
        pos = gl.minimum(rows, OUT_SPATIAL - 1)
        od = pos // (OH * OW)
        oh = (pos // OW) % OH
        ow = pos % OW
        x_rows = (
            x_ptr + batch.to(gl.int64) * X_BATCH_STRIDE + ((od * SD) * H + oh * SH) * W + ow * SW
        )

        rk_b = gl.arange(0, BLOCK_K, layout=gl.SliceLayout(1, b_load))
        rn_b = pid_n * BLOCK_N + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, b_load))
        b_offs = rn_b[None, :] * WK + rk_b[:, None]
        b_big = gl.allocate_shared_memory(gl.float32, [STAGES, BLOCK_K, BLOCK_N], b_smem)
        b_small = gl.allocate_shared_memory(gl.float32, [STAGES, BLOCK_K, BLOCK_N], b_smem)

        k_cols = rk_b[:, None] + 0 * rn_b[None, :]
        steps = gl.cdiv(K, BLOCK_K)
        for s in gl.static_range(STAGES - 1):
            _copy_weight_step(b_big, b_small, w_ptr, ws_ptr, b_offs, k_cols, s, WK, BLOCK_K, STAGES)

        # The tap table holds zeros past K and two steps more (ig._tap_table): every load
        # of a step ahead lies inside it.
        taps = gl.load(tap_ptr + cols)
        a_next = gl.load(x_rows[:, None] + taps[None, :])
        taps = gl.load(tap_ptr + BLOCK_K + cols)
        acc = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, layout=mma)
        for i in range(steps):
            a = a_next
            a_big, a_small = _split_tf32(a)
            # The next step's gather is in flight while this one multiplies.
            a_next = gl.load(x_rows[:, None] + taps[None, :])
            taps = gl.load(tap_ptr + (i + 2) * BLOCK_K + cols)

            async_copy.wait_group(STAGES - 2)
            # One barrier a step: every thread's copies of step i have landed, and every
            # warp is past the last step's wait, so step i - 1's slot is free to refill.
            _cta_barrier()
            if REFILL_FIRST:
                _copy_weight_step(
                    b_big,
                    b_small,
                    w_ptr,
                    ws_ptr,
                    b_offs,
                    k_cols,
                    i + STAGES - 1,
                    WK,
                    BLOCK_K,
                    STAGES,
                )
            if FENCE:
                # The copies wrote through the generic proxy; the tensor cores read
                # through the async one.
                fence_async_shared()
            slot = i % STAGES
            acc = _three_products(a_small, a_big, b_big.index(slot), b_small.index(slot), acc, True)
            if not REFILL_FIRST:
                # The slot refilled is step i - 1's, whose products the wait at the end of
                # the last step saw done.
                _copy_weight_step(
                    b_big,
                    b_small,
                    w_ptr,
                    ws_ptr,
                    b_offs,
                    k_cols,
                    i + STAGES - 1,
                    WK,
                    BLOCK_K,
                    STAGES,
                )
            acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc, a_small, a_big))[0]
        async_copy.wait_group(0)

        _store_tile(
            acc,
            b_ptr,
            y_ptr,
            OC,
            OUT_SPATIAL,
            batch,
            m0,
            pid_n,
            HAS_BIAS,
            BLOCK_M,
            BLOCK_N,
            mma,
            out_layout,
        )

    @gluon.jit
    def _conv3d_gl_tm_kernel(
        x_ptr,
        w_ptr,
        ws_ptr,
        b_ptr,
        y_ptr,
        tap_ptr,
        OC,
        K,
        D,
        H,
        W,
        OD,
        OH,
        OW,
        SD,
        SH,
        SW,
        PD,
        PH,
        PW,
        IC,
        WK,
        HAS_BIAS: gl.constexpr,
        PROMOTE: gl.constexpr,
        BLOCK_M: gl.constexpr,
        BLOCK_N: gl.constexpr,
        BLOCK_K: gl.constexpr,
        STAGES: gl.constexpr,
    ):
        """A padded layer whose K is ordered tap-major (the kernel file's v27: IC a
        multiple of BLOCK_K, so a K step is BLOCK_K channels of one tap and its bounds
        check is one per row), in Gluon. PROMOTE: each step's three products summed apart
        and added to the sum on the CUDA cores (the kernel file's loop above K = 1024);
        here one tensor-core wait a step where Triton 3.6 puts three."""
        mma: gl.constexpr = _mma_layout(BLOCK_N)
        a_layout: gl.constexpr = _a_layout(BLOCK_N)
        b_smem: gl.constexpr = _b_smem_layout(BLOCK_K)
        b_load: gl.constexpr = _b_load_layout(BLOCK_K)
        out_layout: gl.constexpr = _out_layout(BLOCK_M)

        out_spatial = OD * OH * OW
        dhw = D * H * W
        batch, m0, pid_n = _tile_of(OC, out_spatial, BLOCK_M, BLOCK_N)

        rows = m0 + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, a_layout))
        cols = gl.arange(0, BLOCK_K, layout=gl.SliceLayout(0, a_layout))
        od = rows // (OH * OW)
        oh = (rows // OW) % OH
        ow = rows % OW
        id0 = od * SD - PD
        # Rows past the image get a height no input has: their bounds check fails.
        ih0 = gl.where(rows < out_spatial, oh * SH - PH, -(1 << 30))
        iw0 = ow * SW - PW
        x_rows = x_ptr + batch.to(gl.int64) * IC * dhw + (id0 * H + ih0) * W + iw0

        rk_b = gl.arange(0, BLOCK_K, layout=gl.SliceLayout(1, b_load))
        rn_b = pid_n * BLOCK_N + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, b_load))
        b_offs = rn_b[None, :] * WK + rk_b[:, None]
        k_cols = rk_b[:, None] + 0 * rn_b[None, :]
        b_big = gl.allocate_shared_memory(gl.float32, [STAGES, BLOCK_K, BLOCK_N], b_smem)
        b_small = gl.allocate_shared_memory(gl.float32, [STAGES, BLOCK_K, BLOCK_N], b_smem)
        for s in gl.static_range(STAGES - 1):
            _copy_weight_step(b_big, b_small, w_ptr, ws_ptr, b_offs, k_cols, s, WK, BLOCK_K, STAGES)

        # A step's tap: the (offset, kd, kh, kw) row of its first column, loaded a step
        # ahead (four scalar loads, the same address in every thread).
        t_off = gl.load(tap_ptr)
        t_kh = gl.load(tap_ptr + 2)
        t_kd = gl.load(tap_ptr + 1)
        t_kw = gl.load(tap_ptr + 3)
        acc = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, layout=mma)
        for i in range(gl.cdiv(K, BLOCK_K)):
            k0 = i * BLOCK_K
            ic0 = k0 % IC
            row_ok = (
                ((id0 + t_kd).to(gl.uint32, bitcast=True) < D.to(gl.uint32, bitcast=True))
                & ((ih0 + t_kh).to(gl.uint32, bitcast=True) < H.to(gl.uint32, bitcast=True))
                & ((iw0 + t_kw).to(gl.uint32, bitcast=True) < W.to(gl.uint32, bitcast=True))
            )
            a = gl.load(
                (x_rows + t_off)[:, None] + ((ic0 + cols) * dhw)[None, :],
                mask=row_ok[:, None],
                other=0.0,
            )
            # The next step's tap (past the last: the table's row 0, unused).
            k_next = k0 + BLOCK_K
            row_next = (k_next - k_next % IC) * (k_next < K).to(gl.int32) * 4
            t_off = gl.load(tap_ptr + row_next)
            t_kd = gl.load(tap_ptr + row_next + 1)
            t_kh = gl.load(tap_ptr + row_next + 2)
            t_kw = gl.load(tap_ptr + row_next + 3)
            a_big, a_small = _split_tf32(a)

            async_copy.wait_group(STAGES - 2)
            _cta_barrier()
            fence_async_shared()
            slot = i % STAGES
            if PROMOTE:
                step = _three_products(
                    a_small, a_big, b_big.index(slot), b_small.index(slot), acc, False
                )
            else:
                acc = _three_products(
                    a_small, a_big, b_big.index(slot), b_small.index(slot), acc, True
                )
            _copy_weight_step(
                b_big, b_small, w_ptr, ws_ptr, b_offs, k_cols, i + STAGES - 1, WK, BLOCK_K, STAGES
            )
            if PROMOTE:
                step = warpgroup_mma_wait(num_outstanding=0, deps=(step, a_small, a_big))[0]
                acc = acc + step
            else:
                acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc, a_small, a_big))[0]
        async_copy.wait_group(0)

        _store_tile(
            acc,
            b_ptr,
            y_ptr,
            OC,
            out_spatial,
            batch,
            m0,
            pid_n,
            HAS_BIAS,
            BLOCK_M,
            BLOCK_N,
            mma,
            out_layout,
        )


class NotApplicable(ValueError):
    pass


UNPADDED_BLOCK = (128, 64, 16, 4)


def tap_major_block(oc: int) -> tuple[int, int, int, int]:
    """The tap-major kernel's tile: the kernel file's picks for these layers on the H200
    (64x128x32 for 128 output channels or more, 64x64x32 below), 3 stages."""
    return (64, 128, 32, 3) if oc >= 128 else (64, 64, 32, 3)


def applies(x, weight, padding, dilation, groups) -> str | None:
    """Why the Gluon path does not take this call, or None where it does: an unpadded layer
    of the unpromoted loop (``_conv3d_gl_kernel``), or a padded layer of a multiple of 16
    input channels, tap-major (``_conv3d_gl_tm_kernel``, either loop)."""
    if gluon is None:
        return "this Triton has no Gluon Hopper ops"
    if groups != 1:
        return "only layers of one group"
    ic, k = weight.shape[1], weight[0].numel()
    if any(p != 0 for p in ig._triple(padding, "padding")):
        if ig.tap_ic("tf32x3-ws", True, ic) == 0:
            return (
                f"a padded layer of {ic} input channels: padded layers only tap-major (a "
                "multiple of 16 channels), unpadded ones any"
            )
        return None
    if ig.promotes("tf32x3-ws", k):
        return f"an unpadded layer of K {k}, above {ig.PROMOTE_ABOVE_K} (the promoted loop)"
    return None


def conv3d_gl(
    x,
    weight,
    bias=None,
    stride=1,
    padding=0,
    dilation=1,
    *,
    block=None,
    fence=True,
    refill_first=False,
):
    """``kernels.implicit_gemm.conv3d`` in tf32x3-ws by a Gluon kernel (``applies``): the
    same weight halves and tap tables, the same fp32 rule. ``block``: (BLOCK_M, BLOCK_N,
    BLOCK_K, stages), by default ``UNPADDED_BLOCK`` or ``tap_major_block``."""
    why = applies(x, weight, padding, dilation, 1)
    if why:
        raise NotApplicable(why)
    n, ic, d, h, w = x.shape
    oc = weight.shape[0]
    kernel = tuple(weight.shape[2:])
    stride, padding, dilation = (
        ig._triple(stride, "stride"),
        ig._triple(padding, "padding"),
        ig._triple(dilation, "dilation"),
    )
    out_dims = tuple(
        (size + 2 * p - dil * (k - 1) - 1) // s + 1
        for size, k, s, p, dil in zip((d, h, w), kernel, stride, padding, dilation, strict=True)
    )
    spatial = math.prod(out_dims)
    y = torch.empty((n, oc, *out_dims), device=x.device, dtype=torch.float32)
    k = weight[0].numel()
    if any(padding):
        bm, bn, bk, stages = block or tap_major_block(oc)
        if ic % bk:
            raise NotApplicable(f"BLOCK_K {bk} does not divide the {ic} input channels")
        w_big, w_small = ig.weight_halves(weight, tap_major=True)
        taps = ig._tap_table(ic, kernel, dilation, (d, h, w), x.device, True, True)
        grid = (n * triton.cdiv(spatial, bm) * triton.cdiv(oc, bn),)
        _conv3d_gl_tm_kernel[grid](
            x,
            w_big,
            w_small,
            bias if bias is not None else w_big,
            y,
            taps,
            oc,
            k,
            d,
            h,
            w,
            *out_dims,
            *stride,
            *padding,
            ic,
            w_big.shape[1],
            HAS_BIAS=bias is not None,
            PROMOTE=ig.promotes("tf32x3-ws", k),
            BLOCK_M=bm,
            BLOCK_N=bn,
            BLOCK_K=bk,
            STAGES=stages,
            num_warps=4,
        )
        return y
    bm, bn, bk, stages = block or UNPADDED_BLOCK
    w_big, w_small = ig.weight_halves(weight)
    taps = ig._tap_table(ic, kernel, dilation, (d, h, w), x.device, False)
    grid = (n * triton.cdiv(spatial, bm) * triton.cdiv(oc, bn),)
    _conv3d_gl_kernel[grid](
        x,
        w_big,
        w_small,
        bias if bias is not None else w_big,
        y,
        taps,
        oc,
        k,
        h,
        w,
        out_dims[1],
        out_dims[2],
        *stride,
        ic * d * h * w,
        w_big.shape[1],
        spatial,
        HAS_BIAS=bias is not None,
        BLOCK_M=bm,
        BLOCK_N=bn,
        BLOCK_K=bk,
        STAGES=stages,
        OUT_VEC=ig.out_vec(spatial),
        FENCE=fence,
        REFILL_FIRST=refill_first,
        num_warps=4,
    )
    return y


def compile_sm90(fn, constexprs: dict, aligned=(), types=None):
    """A Gluon kernel compiled for sm_90 with 4 warps, its parameters typed as a launch
    types them (``*_ptr`` float32 but the tap table, the rest int32, ``types`` over
    both) and specialised as a launch would: torch's allocations and the integers named in
    ``aligned`` divisible by 16. Returns it, bench.kernel_static's facts and its SASS."""
    from triton.backends.compiler import GPUTarget

    from bench.kernel_static import dump_cubin, facts_from_dump

    names = fn.arg_names
    signature = {
        n: ("*i32" if n == "tap_ptr" else "*fp32")
        if n.endswith("_ptr")
        else ("constexpr" if n in constexprs else "i32")
        for n in names
    }
    signature.update(types or {})
    divisible = [n for n in names if signature[n].startswith("*") or n in aligned]
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in divisible}
    src = gluon._runtime.GluonASTSource(
        fn=fn, signature=signature, constexprs=constexprs, attrs=attrs
    )
    compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
    with tempfile.TemporaryDirectory() as scratch:
        usage, sass = dump_cubin(compiled.asm["cubin"], os.path.join(scratch, "k.cubin"))
    return compiled, facts_from_dump(usage, sass), sass


def static(case_names: list[str], block=None, sass_dir: str = "") -> int:
    """Compile for sm_90 without a GPU and print what bench.kernel_static prints of it
    (``block`` None: each path's default tile)."""
    from bench.kernel_static import loop_facts
    from pytest_conv3d_perf.cases import builtin_cases, select

    for case in select(builtin_cases(), case_names):
        k = case.ic * math.prod(case.kernel)
        if any(case.padding):
            fn = _conv3d_gl_tm_kernel
            bm, bn, bk, stages = block or tap_major_block(case.oc)
            constexprs = {"PROMOTE": ig.promotes("tf32x3-ws", k)}
        else:
            fn = _conv3d_gl_kernel
            bm, bn, bk, stages = block or UNPADDED_BLOCK
            constexprs = {
                "OUT_VEC": ig.out_vec(math.prod(case.output_shape[2:])),
                "FENCE": True,
                "REFILL_FIRST": False,
            }
        constexprs.update(HAS_BIAS=case.bias, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, STAGES=stages)
        compiled, facts, sass = compile_sm90(fn, constexprs, aligned=("WK", "IC"))
        if sass_dir:
            Path(sass_dir).mkdir(parents=True, exist_ok=True)
            Path(sass_dir, f"{case.name}.sass").write_text(sass)
            Path(sass_dir, f"{case.name}.ttgir").write_text(compiled.asm["ttgir"])
        loop = loop_facts(sass)
        tile = (bm, bn, bk, stages)
        print(f"{case.name} {tile}: shared {compiled.metadata.shared}, {facts}, loop {loop}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="kb54,kb59,kb60,kb66", help="suite cases")
    ap.add_argument("--static", action="store_true", help="compile for sm_90 only, no GPU")
    ap.add_argument("--sass-dir", default="", help="with --static: write SASS and TTGIR here")
    ap.add_argument(
        "--blocks",
        default="",
        help="Gluon tiles to time or compile, MxNxK and stages (default: each path's own, "
        "128x64x16s4 unpadded, 64x128x32s3 tap-major, 64x64x32s3 below 128 channels)",
    )
    ap.add_argument(
        "--no-fence-too",
        action="store_true",
        help="also time each tile without the proxy fence (unsafe; to price the fence)",
    )
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rep-ms", type=int, default=60)
    args = ap.parse_args(argv)
    names = [c for c in args.cases.split(",") if c]
    if gluon is None:
        print("gluon_conv: this Triton has no Gluon Hopper ops", file=sys.stderr)
        return 2
    try:
        blocks = [parse_block(b) for b in args.blocks.split(",") if b] or [None]
    except ValueError as err:
        print(f"gluon_conv: {err}", file=sys.stderr)
        return 2
    if args.static:
        if ig.interpreting():
            print(
                "gluon_conv: unset TRITON_INTERPRET; --static needs Triton's compiler",
                file=sys.stderr,
            )
            return 2
        return max(static(names, block, sass_dir=args.sass_dir) for block in blocks)
    if not torch.cuda.is_available():
        print("gluon_conv: needs a CUDA GPU (or --static)", file=sys.stderr)
        return 2
    return timed(names, blocks, args.rounds, args.rep_ms, args.no_fence_too)


def parse_block(text: str) -> tuple[int, int, int, int]:
    """``128x64x16s3`` as (BLOCK_M, BLOCK_N, BLOCK_K, STAGES)."""
    try:
        tile, stages = text.lower().split("s")
        m, n, k = (int(v) for v in tile.split("x"))
        block = (m, n, k, int(stages))
    except ValueError:
        raise ValueError(f"--blocks: {text!r} is not MxNxKsS (e.g. 128x64x16s3)") from None
    if block[0] not in (64, 128) or block[2] not in (16, 32) or block[3] < 2:
        raise ValueError(f"--blocks: {text!r}: M 64 or 128, K 16 or 32, 2 stages or more")
    return block


def timed(names: list[str], blocks: list, rounds: int, rep_ms: int, fence_too: bool) -> int:
    """Each case: the Gluon kernel against the kernel file's at its recorded config, in one
    process, interleaved round by round; correctness of both against float64."""

    from bench.profile_case import recorded_config
    from pytest_conv3d_perf import check
    from pytest_conv3d_perf.cases import builtin_cases, select

    rows = []
    for case in select(builtin_cases(), names):
        inputs = check.random_inputs(case, torch.device("cuda"), seed=1)
        args = (inputs.x, inputs.weight, inputs.bias, case.stride, case.padding, case.dilation)
        cfg = recorded_config(case.name)

        def base(args=args, cfg=cfg):
            return ig.conv3d(*args, precision="tf32x3-ws", config=cfg)

        sides = {"base": base}
        unpadded = not any(case.padding)
        why = applies(inputs.x, inputs.weight, case.padding, case.dilation, case.groups)
        if why:
            print(f"{case.name:8s} not timed: {why}", flush=True)
            continue
        for block in blocks:
            label = "gluon" if block is None else "{}x{}x{}s{}".format(*block)
            sides[label] = functools.partial(conv3d_gl, *args, block=block)
            if unpadded:
                sides[f"{label} refill first"] = functools.partial(
                    conv3d_gl, *args, block=block, refill_first=True
                )
            if fence_too and unpadded:
                sides[f"{label} no fence"] = functools.partial(
                    conv3d_gl, *args, block=block, fence=False
                )
        rows += time_sides(case, inputs, sides, rounds, rep_ms, width=22)
    print("\n".join(rows))
    return 0


def time_sides(case, inputs, sides: dict, rounds: int, rep_ms: int, width: int) -> list[str]:
    """``sides`` (name: call; one named "base") checked against float64 by the suite's fp32
    rule, then timed round by round, interleaved, in this process: a row each of its median
    time, the rule, its largest error and its change against the base (median and range
    over the rounds), printed as it comes. A side that raises NotApplicable is left out."""
    import statistics

    import triton.testing

    truth = torch.nn.functional.conv3d(
        inputs.x.double(),
        inputs.weight.double(),
        None if inputs.bias is None else inputs.bias.double(),
        case.stride,
        case.padding,
        case.dilation,
    )
    errs = {}
    for name, fn in list(sides.items()):
        try:
            out = fn().double()
        except NotApplicable as err:
            print(f"{case.name:8s} {name}: not timed: {err}", flush=True)
            del sides[name]
            continue
        ok = torch.allclose(out, truth, atol=1e-4, rtol=1e-4)
        errs[name] = (ok, (out - truth).abs().max().item())
    times = {name: [] for name in sides}
    for _ in range(rounds):
        for name, fn in sides.items():
            times[name].append(triton.testing.do_bench(fn, rep=rep_ms, return_mode="median"))
    rows = []
    for name in sides:
        changes = [t / b - 1 for t, b in zip(times[name], times["base"], strict=True)]
        rows.append(
            f"{case.name:8s} {name:{width}s} {statistics.median(times[name]):.4f} ms"
            f"  fp32 rule {errs[name][0]}, max abs err {errs[name][1]:.1e}"
            f"  change {100 * statistics.median(changes):+.2f}%"
            f" [{100 * min(changes):+.2f}, {100 * max(changes):+.2f}]"
        )
        print(rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    sys.exit(main())
