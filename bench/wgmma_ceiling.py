"""How fast the tensor cores run the kernel's TF32 product shapes alone: warpgroup products
(wgmma) in a loop, three a K step of 16 as the split's, with no gather or copy (the
compiler still puts a CTA barrier and a wait in each step, as in the kernels).

The Gluon ring kernel (#60, #66) multiplies a 128x16 left operand held in registers by a
16x64 weight tile in shared memory; the persistent kernel (#54, #59) a 64x16 one. With 64
output channels the products are 64 wide at most. This measures the rate those shapes
reach on their own, against the 490 TFLOP/s the floors assume, and against the shape a
kernel with the roles swapped would use (the weight on the left, from shared memory, 256
positions on the right): if the 64-wide products top out near where the kernels already
are, no reordering of the loop gets #60 and #66 to 1.6x their floors, and the roles must
swap.

    python -m bench.wgmma_ceiling [--json PATH]      on a GPU of capability 9.0
    python -m bench.wgmma_ceiling --offline          registers and SASS, no GPU

Each row: a shape, where its left operand lives (registers: rs, shared memory: ss), the
CTAs launched an SM, whether the loop waits for a step's products before the next (as the
kernels do) or leaves one step's in flight, and the rate reached.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch
import triton

from kernels import implicit_gemm as ig
from pytest_conv3d_perf.report import text_table

TF32_PEAK = 490e12  # the floors' rate (notes/kernel.md, the eighth session)
BLOCK_K = 16

if ig.gluon is not None:
    gluon, gl = ig.gluon, ig.gl

    @gluon.jit
    def _ceiling_kernel(
        a_ptr,
        b_ptr,
        out_ptr,
        iters,
        BLOCK_M: gl.constexpr,
        BLOCK_N: gl.constexpr,
        A_SHARED: gl.constexpr,
        WAIT_EACH_STEP: gl.constexpr,
    ):
        K: gl.constexpr = 16
        mma: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BLOCK_N, 8]
        )
        a_reg: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma, k_width=1)
        # Both operands K-major, as TF32 products require (the kernels' weight tiles).
        b_smem: gl.constexpr = gl.NVMMASharedLayout(
            swizzle_byte_width=64, element_bitwidth=32, rank=2, transposed=True
        )
        a_smem: gl.constexpr = gl.NVMMASharedLayout(
            swizzle_byte_width=64, element_bitwidth=32, rank=2
        )
        rows: gl.constexpr = gl.BlockedLayout([1, 4], [8, 4], [4, 1], [1, 0])
        cols: gl.constexpr = gl.BlockedLayout([4, 1], [4, 8], [1, 4], [0, 1])

        rk = gl.arange(0, K, layout=gl.SliceLayout(1, cols))
        rn = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, cols))
        b_tile = gl.load(b_ptr + rn[None, :] * K + rk[:, None])
        # Two weight halves and two left halves, as the split's three products read them.
        b_big = gl.allocate_shared_memory(gl.float32, [K, BLOCK_N], b_smem, b_tile)
        b_small = gl.allocate_shared_memory(gl.float32, [K, BLOCK_N], b_smem, b_tile * 0.5)
        if A_SHARED:
            rm = gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, rows))
            ka = gl.arange(0, K, layout=gl.SliceLayout(0, rows))
            a_tile = gl.load(a_ptr + rm[:, None] * K + ka[None, :])
            a_big = gl.allocate_shared_memory(gl.float32, [BLOCK_M, K], a_smem, a_tile)
            a_small = gl.allocate_shared_memory(gl.float32, [BLOCK_M, K], a_smem, a_tile * 0.5)
        else:
            rm = gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, a_reg))
            ka = gl.arange(0, K, layout=gl.SliceLayout(0, a_reg))
            a_big = gl.load(a_ptr + rm[:, None] * K + ka[None, :])
            a_small = a_big * 0.5
        ig.fence_async_shared()

        acc = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, layout=mma)
        for _ in range(iters):
            acc = ig.warpgroup_mma(a_small, b_big, acc, is_async=True)
            acc = ig.warpgroup_mma(a_big, b_small, acc, is_async=True)
            acc = ig.warpgroup_mma(a_big, b_big, acc, is_async=True)
            # The kernels wait for a step's products before the next; the other way
            # leaves them in flight across the next step's issue.
            acc = ig.warpgroup_mma_wait(num_outstanding=0 if WAIT_EACH_STEP else 3, deps=[acc])
        acc = ig.warpgroup_mma_wait(num_outstanding=0, deps=[acc])

        om = gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, mma))
        on = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, mma))
        tile = gl.program_id(0).to(gl.int64) * BLOCK_M * BLOCK_N
        gl.store(out_ptr + tile + om[:, None] * BLOCK_N + on[None, :], acc)

else:
    _ceiling_kernel = None


# (name, BLOCK_M, BLOCK_N, left operand in shared memory, CTAs an SM, wait each step)
SHAPES = [
    ("ring 128x64 rs", 128, 64, False, 1, True),
    ("ring 128x64 rs", 128, 64, False, 2, True),
    ("ring 128x64 rs", 128, 64, False, 3, True),
    ("ring 128x64 rs", 128, 64, False, 4, True),
    ("ring 128x64 rs, in flight", 128, 64, False, 3, False),
    ("persist 64x64 rs", 64, 64, False, 3, True),
    ("persist 64x64 rs", 64, 64, False, 6, True),
    ("64x128 rs", 64, 128, False, 3, True),
    ("swapped 64x256 ss", 64, 256, True, 1, True),
    ("swapped 64x256 ss", 64, 256, True, 2, True),
    ("swapped 64x256 ss, in flight", 64, 256, True, 2, False),
    ("128x64 ss", 128, 64, True, 3, True),
]


def _flop(block_m: int, block_n: int) -> int:
    return 3 * 2 * block_m * block_n * BLOCK_K


def offline(json_path: str | None) -> int:
    """Each shape compiled for sm_90 without a GPU: registers, spills, products and waits
    (bench.kernel_static's reading of the SASS)."""
    from triton.backends.compiler import GPUTarget

    from bench.kernel_static import dump_cubin, facts_from_dump, loop_facts

    rows, out = [], []
    seen = set()
    for name, bm, bn, shared, _, wait in SHAPES:
        if (bm, bn, shared, wait) in seen:
            continue
        seen.add((bm, bn, shared, wait))
        source = gluon._runtime.GluonASTSource(
            fn=_ceiling_kernel,
            signature={
                "a_ptr": "*fp32",
                "b_ptr": "*fp32",
                "out_ptr": "*fp32",
                "iters": "i32",
                "BLOCK_M": "constexpr",
                "BLOCK_N": "constexpr",
                "A_SHARED": "constexpr",
                "WAIT_EACH_STEP": "constexpr",
            },
            constexprs={"BLOCK_M": bm, "BLOCK_N": bn, "A_SHARED": shared, "WAIT_EACH_STEP": wait},
        )
        compiled = triton.compile(
            source, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4}
        )
        with tempfile.NamedTemporaryFile(suffix=".cubin") as scratch:
            usage, sass = dump_cubin(compiled.asm["cubin"], scratch.name)
        facts, loop = facts_from_dump(usage, sass), loop_facts(sass)
        out.append({"shape": name, **facts, "loop": loop.get("loop", -1)})
        rows.append(
            [name, facts["registers"], facts["spill_stack_bytes"], facts["mma"],
             facts["mma_waits"], loop.get("loop", -1)]
        )  # fmt: skip
    print(f"Triton {triton.__version__}, sm_90, offline")
    print(text_table(["shape", "regs", "spill B", "mma", "waits", "loop SASS"], rows))
    if json_path:
        Path(json_path).write_text(json.dumps(out, indent=1))
    return 0


def measure(json_path: str | None) -> int:
    from triton.testing import do_bench

    props = torch.cuda.get_device_properties(0)
    sms = props.multi_processor_count
    gen = torch.Generator(device="cuda").manual_seed(0)
    rows, out = [], []
    for name, bm, bn, shared, per_sm, wait in SHAPES:
        grid = sms * per_sm
        # About 2 ms a launch at the peak rate: long beside the launch, short beside the clock's
        # throttling.
        iters = max(64, int(2e-3 * TF32_PEAK / (grid * _flop(bm, bn))))
        a = torch.randn(bm, BLOCK_K, device="cuda", generator=gen)
        b = torch.randn(bn, BLOCK_K, device="cuda", generator=gen)
        y = torch.empty(grid * bm * bn, device="cuda")

        def launch(a=a, b=b, y=y, grid=grid, iters=iters, bm=bm, bn=bn, shared=shared, wait=wait):
            _ceiling_kernel[(grid,)](
                a, b, y, iters, BLOCK_M=bm, BLOCK_N=bn, A_SHARED=shared,
                WAIT_EACH_STEP=wait, num_warps=4,
            )  # fmt: skip

        launch()
        ms = [do_bench(launch, warmup=25, rep=200, return_mode="median") for _ in range(5)]
        mid = statistics.median(ms)
        rate = grid * iters * _flop(bm, bn) / (mid * 1e-3)
        row = {
            "shape": name,
            "block_m": bm,
            "block_n": bn,
            "a_shared": shared,
            "ctas_per_sm": per_sm,
            "wait_each_step": wait,
            "iters": iters,
            "ms": ms,
            "tflops": rate / 1e12,
            "of_peak": rate / TF32_PEAK,
        }
        out.append(row)
        rows.append(
            [name, per_sm, "yes" if wait else "no", f"{mid:.4f}", f"{rate / 1e12:.1f}",
             f"{rate / TF32_PEAK:.2f}", f"{(max(ms) - min(ms)) / mid:+.2%}"]
        )  # fmt: skip
        print(f"# {name}, {per_sm} an SM: {rate / 1e12:.1f} TFLOP/s", flush=True)
        if json_path:
            Path(json_path).write_text(json.dumps(out, indent=1))
    print(f"\n{props.name}, triton {triton.__version__}; three TF32 products a K step of 16")
    headers = ["shape", "CTAs/SM", "wait/step", "ms", "TFLOP/s", "of 490", "spread"]
    print(text_table(headers, rows))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--offline", action="store_true", help="compile for sm_90 only")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    if _ceiling_kernel is None:
        print("wgmma_ceiling: this Triton has no Gluon Hopper ops", file=sys.stderr)
        return 2
    if args.offline:
        return offline(args.json)
    if not torch.cuda.is_available() or torch.cuda.get_device_capability() != (9, 0):
        print("wgmma_ceiling: needs a GPU of capability 9.0 (or --offline)", file=sys.stderr)
        return 2
    return measure(args.json)


if __name__ == "__main__":
    sys.exit(main())
