"""Experiment (round 3, ninth session): the write-bound KernelBench layers (#54, #59) by a
persistent Gluon kernel that holds the whole weight in shared memory and writes each
output tile with an asynchronous TMA store.

Adopted as the kernel file's v30 (``_conv3d_gl_persist_kernel``, the GLUON=2 configs, at
3 and 2 programs a multiprocessor). This file keeps what the kernel file does not: any
number of programs a multiprocessor and the other kernels' epilogue in place of the TMA
store, to tell the store's share of the gain from the persistence's. It times them
beside the kernel file (``python3 -m bench.gluon_persist``, a CUDA GPU) and
compiles it without one (``--static``, for sm_90 with the installed Triton).

Why (notes/kernel.md, eighth and ninth sessions): #59 writes 2.64 GB, 0.64 ms alone at the
output's own pattern (bench/store_stream.py), and the conv takes 1.19 ms; #54 writes 0.98 GB
in 0.71 ms. Both have K 27 and 81 and one block of 64 output channels: the kernel file
launches 80,645 and 29,791 programs of two and six K steps, each computing its addresses,
filling a ring of weight copies (the same weight in every program) and ending in a store
it cannot overlap with anything of its own. Here a program per resident slot walks the
row blocks: the weight's two halves are copied into shared memory once (16 KB for #59,
48 KB for #54), the next block's first gather is in flight while this block's epilogue
runs, and the tile goes out through shared memory by TMA, which the program does not
wait for until it needs the buffer again, one tile later.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import math
import sys

import torch
import triton

from bench import gluon_conv as gc
from kernels import implicit_gemm as ig

gluon = gc.gluon
try:
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.hopper import (
        async_copy,
        fence_async_shared,
        tma,
        warpgroup_mma_wait,
    )
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor
except ImportError:  # a Triton without Gluon's Hopper TMA
    gluon = None

# The whole weight's two halves in shared memory: K up to 128 (64 KB at 64 channels).
MAX_STEPS = 8
BLOCK = (128, 64, 16)

if gluon is not None:
    # 3.9 renamed the TMA store async_store (the old name raises there).
    _tma_store = getattr(tma, "async_store", None) or tma.async_copy_shared_to_global

    @gluon.jit
    def _rows_of(
        x_ptr,
        tile,
        rows0,
        blocks_per_image,
        H,
        W,
        OH,
        OW,
        SD,
        SH,
        SW,
        XBS,
        OUT_SPATIAL,
        BLOCK_M: gl.constexpr,
    ):
        """The input addresses of a row block's patches' first taps (rows past the image
        read its last position: the TMA store clips them)."""
        batch = tile // blocks_per_image
        pos = gl.minimum((tile % blocks_per_image) * BLOCK_M + rows0, OUT_SPATIAL - 1)
        od = pos // (OH * OW)
        oh = (pos // OW) % OH
        ow = pos % OW
        return x_ptr + batch.to(gl.int64) * XBS + ((od * SD) * H + oh * SH) * W + ow * SW

    @gluon.jit
    def _conv3d_gl_persist_kernel(
        x_ptr,
        w_ptr,
        ws_ptr,
        b_ptr,
        y_ptr,
        y_desc,
        tap_ptr,
        OC,
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
        TILES,
        HAS_BIAS: gl.constexpr,
        BLOCK_M: gl.constexpr,
        BLOCK_N: gl.constexpr,
        BLOCK_K: gl.constexpr,
        STEPS: gl.constexpr,
        NB: gl.constexpr,
        TMA_STORE: gl.constexpr,
        OUT_VEC: gl.constexpr,
    ):
        mma: gl.constexpr = gc._mma_layout(BLOCK_N)
        a_layout: gl.constexpr = gc._a_layout(BLOCK_N)
        b_smem: gl.constexpr = gc._b_smem_layout(BLOCK_K)
        b_load: gl.constexpr = gc._b_load_layout(BLOCK_K)

        # Programs side by side share a row block across the NB channel blocks.
        pid = gl.program_id(0)
        pid_n = pid % NB
        first = pid // NB
        stride = gl.num_programs(0) // NB

        rk_b = gl.arange(0, BLOCK_K, layout=gl.SliceLayout(1, b_load))
        rn_b = pid_n * BLOCK_N + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, b_load))
        b_offs = rn_b[None, :] * WK + rk_b[:, None]
        k_cols = rk_b[:, None] + 0 * rn_b[None, :]
        b_big = gl.allocate_shared_memory(gl.float32, [STEPS, BLOCK_K, BLOCK_N], b_smem)
        b_small = gl.allocate_shared_memory(gl.float32, [STEPS, BLOCK_K, BLOCK_N], b_smem)
        for s in gl.static_range(STEPS):
            gc._copy_weight_step(
                b_big, b_small, w_ptr, ws_ptr, b_offs, k_cols, s, WK, BLOCK_K, STEPS
            )
        if TMA_STORE:
            out_smem = gl.allocate_shared_memory(gl.float32, [BLOCK_N, BLOCK_M], y_desc.layout)
        elif OUT_VEC > 1:
            # Exact (the host checked it): the divisibility 16-byte stores need (as the
            # kernel file's v24a).
            OUT_SPATIAL = OUT_SPATIAL // OUT_VEC * OUT_VEC

        rows0 = gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, a_layout))
        cols = gl.arange(0, BLOCK_K, layout=gl.SliceLayout(0, a_layout))
        blocks_per_image = gl.cdiv(OUT_SPATIAL, BLOCK_M)
        x_rows = _rows_of(
            x_ptr,
            first,
            rows0,
            blocks_per_image,
            H,
            W,
            OH,
            OW,
            SD,
            SH,
            SW,
            X_BATCH_STRIDE,
            OUT_SPATIAL,
            BLOCK_M,
        )
        taps = gl.load(tap_ptr + cols)
        a_next = gl.load(x_rows[:, None] + taps[None, :])
        rn = pid_n * BLOCK_N + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, mma))
        if HAS_BIAS:
            bias = gl.load(b_ptr + rn, mask=rn < OC, other=0.0)

        async_copy.wait_group(0)
        gc._cta_barrier()
        # Written by the copies (generic proxy), read by the tensor cores (async proxy).
        fence_async_shared()
        for t in range(first, TILES, stride):
            # The last program's block past the end reads the last one (nothing stored).
            next_rows = _rows_of(
                x_ptr,
                gl.minimum(t + stride, TILES - 1),
                rows0,
                blocks_per_image,
                H,
                W,
                OH,
                OW,
                SD,
                SH,
                SW,
                X_BATCH_STRIDE,
                OUT_SPATIAL,
                BLOCK_M,
            )
            acc = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, layout=mma)
            for s in gl.static_range(STEPS):
                a = a_next
                a_big, a_small = gc._split_tf32(a)
                # The next gather in flight while this step multiplies: the next step's,
                # or after the last, the next block's first.
                if s + 1 < STEPS:
                    taps = gl.load(tap_ptr + (s + 1) * BLOCK_K + cols)
                    a_next = gl.load(x_rows[:, None] + taps[None, :])
                else:
                    taps = gl.load(tap_ptr + cols)
                    a_next = gl.load(next_rows[:, None] + taps[None, :])
                acc = gc._three_products(
                    a_small, a_big, b_big.index(s), b_small.index(s), acc, True
                )
                acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc, a_small, a_big))[0]
            x_rows = next_rows
            batch = t // blocks_per_image
            m0 = (t % blocks_per_image) * BLOCK_M
            if TMA_STORE:
                if HAS_BIAS:
                    acc = acc + bias[None, :]
                # The last tile's store has read the buffer; every thread knows it
                # before writing it again.
                tma.store_wait(0)
                gc._cta_barrier()
                out_smem.store(gl.permute(acc, [1, 0]))
                fence_async_shared()
                gc._cta_barrier()
                _tma_store(y_desc, [batch * OC + pid_n * BLOCK_N, m0], out_smem)
            else:
                # The kernel file's epilogue: through shared memory to 16-byte stores.
                gc._store_tile(
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
                    gc._out_layout(BLOCK_M),
                )
        if TMA_STORE:
            tma.store_wait(0)


def out_layout(block_n: int, block_m: int):
    """The output tile's shared layout, as the TMA descriptor and the kernel see it:
    positions contiguous, swizzled by 128 bytes (the compiler then writes the tile in
    messages of 32 positions)."""
    return gl.NVMMASharedLayout.get_default_for([block_n, block_m], gl.float32)


def applies(x, weight, padding, dilation, groups, block=BLOCK) -> str | None:
    """Why this kernel does not take the call, or None: an unpadded layer of one group
    whose weight fits (K up to MAX_STEPS steps), whose channels are whole blocks and
    whose output rows are 16-byte aligned (TMA)."""
    if gluon is None:
        return "this Triton has no Gluon Hopper TMA"
    if groups != 1 or any(p != 0 for p in ig._triple(padding, "padding")):
        return "only unpadded layers of one group"
    oc, k = weight.shape[0], weight[0].numel()
    if math.ceil(k / block[2]) > MAX_STEPS:
        return f"K {k}: more than {MAX_STEPS} steps of {block[2]} (the weight stays resident)"
    if oc % block[1]:
        return f"{oc} output channels: not whole blocks of {block[1]}"
    return None


def conv3d_persist(
    x, weight, bias=None, stride=1, padding=0, dilation=1, *, block=BLOCK, per_sm=2, tma_store=True
):
    """``kernels.implicit_gemm.conv3d`` in tf32x3-ws by the persistent kernel (``applies``):
    the same weight halves and tap table. ``per_sm`` programs a multiprocessor;
    ``tma_store`` False: the kernel file's epilogue (16-byte stores from registers)."""
    why = applies(x, weight, padding, dilation, 1, block)
    if why:
        raise gc.NotApplicable(why)
    n, ic, d, h, w = x.shape
    oc = weight.shape[0]
    kernel = tuple(weight.shape[2:])
    stride, dilation = ig._triple(stride, "stride"), ig._triple(dilation, "dilation")
    out_dims = tuple(
        (size - dil * (k - 1) - 1) // s + 1
        for size, k, s, dil in zip((d, h, w), kernel, stride, dilation, strict=True)
    )
    spatial = math.prod(out_dims)
    if tma_store and spatial % 4:
        raise gc.NotApplicable(f"{spatial} output positions: rows not 16-byte aligned (TMA)")
    bm, bn, bk = block
    y = torch.empty((n, oc, *out_dims), device=x.device, dtype=torch.float32)
    w_big, w_small = ig.weight_halves(weight)
    taps = ig._tap_table(ic, kernel, dilation, (d, h, w), x.device, False)
    y_desc = TensorDescriptor.from_tensor(y.view(n * oc, spatial), [bn, bm], out_layout(bn, bm))
    nb = oc // bn
    tiles = n * triton.cdiv(spatial, bm)
    sms = torch.cuda.get_device_properties(x.device).multi_processor_count
    grid = (nb * min(tiles, sms * per_sm // nb),)
    _conv3d_gl_persist_kernel[grid](
        x,
        w_big,
        w_small,
        bias if bias is not None else w_big,
        y,
        y_desc,
        taps,
        oc,
        h,
        w,
        out_dims[1],
        out_dims[2],
        *stride,
        ic * d * h * w,
        w_big.shape[1],
        spatial,
        tiles,
        HAS_BIAS=bias is not None,
        BLOCK_M=bm,
        BLOCK_N=bn,
        BLOCK_K=bk,
        STEPS=triton.cdiv(weight[0].numel(), bk),
        NB=nb,
        TMA_STORE=tma_store,
        OUT_VEC=ig.out_vec(spatial),
        num_warps=4,
    )
    return y


def static(case_names: list[str], block_ms: list[int]) -> int:
    """Compile for sm_90 without a GPU and print what bench.kernel_static prints of it, at
    each of ``block_ms`` rows a tile."""
    from bench.kernel_static import loop_facts
    from pytest_conv3d_perf.cases import builtin_cases, select

    _, bn, bk = BLOCK
    for case, bm in itertools.product(select(builtin_cases(), case_names), block_ms):
        k = case.ic * math.prod(case.kernel)
        constexprs = dict(
            HAS_BIAS=case.bias,
            BLOCK_M=bm,
            BLOCK_N=bn,
            BLOCK_K=bk,
            STEPS=triton.cdiv(k, bk),
            NB=case.oc // bn,
            TMA_STORE=True,
            OUT_VEC=ig.out_vec(math.prod(case.output_shape[2:])),
        )
        desc = f"tensordesc<fp32[{bn}, {bm}],{out_layout(bn, bm)!r}>"
        compiled, facts, sass = gc.compile_sm90(
            _conv3d_gl_persist_kernel, constexprs, aligned=("WK",), types={"y_desc": desc}
        )
        print(
            f"{case.name} BLOCK_M {bm}: shared {compiled.metadata.shared}, {facts}, "
            f"loop {loop_facts(sass)}"
        )
    return 0


def timed(
    names: list[str],
    per_sm: list[int],
    rounds: int,
    rep_ms: int,
    block_ms: tuple[int, ...] = (BLOCK[0],),
    stg: bool = False,
) -> int:
    """Each case: the persistent kernel at each ``per_sm`` and each of ``block_ms`` rows a
    tile (``stg``: with the kernel file's epilogue too) against the kernel file's at its
    recorded config, in one process, interleaved round by round; both against float64."""

    from bench.profile_case import recorded_config
    from pytest_conv3d_perf import check
    from pytest_conv3d_perf.cases import builtin_cases, select

    rows = []
    for case in select(builtin_cases(), names):
        inputs = check.random_inputs(case, torch.device("cuda"), seed=1)
        args = (inputs.x, inputs.weight, inputs.bias, case.stride, case.padding, case.dilation)
        why = applies(inputs.x, inputs.weight, case.padding, case.dilation, case.groups)
        if why:
            print(f"{case.name:8s} not timed: {why}", flush=True)
            continue
        cfg = recorded_config(case.name)
        sides = {"base": functools.partial(ig.conv3d, *args, precision="tf32x3-ws", config=cfg)}
        for bm, p in itertools.product(block_ms, per_sm):
            block = (bm, *BLOCK[1:])
            sides[f"persist {bm} {p}/SM"] = functools.partial(
                conv3d_persist, *args, block=block, per_sm=p
            )
            if stg:
                sides[f"persist {bm} {p}/SM stg"] = functools.partial(
                    conv3d_persist, *args, block=block, per_sm=p, tma_store=False
                )
        rows += gc.time_sides(case, inputs, sides, rounds, rep_ms, width=18)
    print("\n".join(rows))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="kb54,kb59", help="suite cases")
    ap.add_argument("--static", action="store_true", help="compile for sm_90 only, no GPU")
    ap.add_argument("--per-sm", default="2,3", help="programs a multiprocessor to time")
    ap.add_argument(
        "--block-m",
        default="128",
        help="rows a tile, 64 or 128 (a list: each; default %(default)s)",
    )
    ap.add_argument(
        "--stg", action="store_true", help="also time the kernel file's epilogue in place of TMA"
    )
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rep-ms", type=int, default=60)
    args = ap.parse_args(argv)
    names = [c for c in args.cases.split(",") if c]
    try:
        block_ms = [int(b) for b in args.block_m.split(",") if b]
    except ValueError:
        block_ms = []
    if not block_ms or set(block_ms) - {64, 128}:
        print(f"gluon_persist: --block-m {args.block_m!r}: 64, 128 or both", file=sys.stderr)
        return 2
    if gluon is None:
        print("gluon_persist: this Triton has no Gluon Hopper TMA", file=sys.stderr)
        return 2
    if args.static:
        if ig.interpreting():
            print(
                "gluon_persist: unset TRITON_INTERPRET; --static needs Triton's compiler",
                file=sys.stderr,
            )
            return 2
        return static(names, block_ms)
    try:
        per_sm = [int(p) for p in args.per_sm.split(",") if p]
    except ValueError:
        print(f"gluon_persist: --per-sm {args.per_sm!r}: integers, e.g. 2,3", file=sys.stderr)
        return 2
    if not per_sm or min(per_sm) < 1:
        print("gluon_persist: --per-sm: one or more programs a multiprocessor", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("gluon_persist: needs a CUDA GPU (or --static)", file=sys.stderr)
        return 2
    return timed(names, per_sm, args.rounds, args.rep_ms, tuple(block_ms), args.stg)


if __name__ == "__main__":
    sys.exit(main())
