"""The kernel file's persistent Gluon kernel (``_conv3d_gl_persist_kernel``, v30 and v31)
at tiles and programs a multiprocessor beyond its configs, against the kernel file at its
recorded configs. Needs a CUDA GPU of sm_90, or ``--static`` (none).

    python3 -m bench.gluon_persist [--cases kb54,kb59] [--block-m 64,128] [--per-sm 2,3]
        [--rounds 5] [--rep-ms 60]
    python3 -m bench.gluon_persist --static [--cases ...] [--block-m 64,128]

Why a persistent kernel (notes/kernel.md, round 3, eighth to tenth sessions): #59 writes
2.64 GB, 0.64 ms alone at the output's own pattern (bench/store_stream.py), and took 1.19 ms;
#54 writes 0.98 GB. Both have K 27 and 81 and one block of 64 output channels. PER_SM
programs a multiprocessor walk the row blocks with the weight's halves kept in shared
memory and each tile sent by an asynchronous TMA store. This file was where the kernel was
first written, with an epilogue of 16-byte stores from registers as an alternative to the
TMA store (in git at f34af66: #59 at 3 an SM +8% against v29 with it, -30% with the TMA
store); since v30 it times the kernel file's own kernel, so there is one copy of it.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import math
import os
import sys
import tempfile

import torch
import triton

from bench import gluon_conv as gc
from kernels import implicit_gemm as ig

# The tile's channels and K step: the kernel's (``_conv3d_gl_persist_kernel`` asserts
# BLOCK_K 16); BLOCK_M is 64 or 128 (a warpgroup's 64-row products, once or twice).
BLOCK_N, BLOCK_K = 64, 16
BLOCK_MS = (64, 128)


def persist_config(block_m: int, per_sm: int) -> triton.Config:
    """A config of the kernel file's persistent kernel, as ``PERSIST_CONFIGS`` holds them."""
    return triton.Config(
        {"BLOCK_M": block_m, "BLOCK_N": BLOCK_N, "BLOCK_K": BLOCK_K, "GLUON": 2, "PER_SM": per_sm},
        num_warps=4,
        num_stages=1,
    )


def why_not(case) -> str | None:
    """Why the persistent kernel does not take a suite case, or None."""
    if ig._conv3d_gl_persist_kernel is None:
        return "this Triton has no Gluon Hopper TMA"
    if any(case.padding):
        return "only unpadded layers"
    k = case.ic * math.prod(case.kernel)
    if not ig.persist_flags(k, case.oc, math.prod(case.output_shape[2:]))["KSTEPS"]:
        return (
            f"K {k}, {case.oc} output channels, {math.prod(case.output_shape[2:])} positions: "
            f"not K up to {ig.PERSIST_MAX_STEPS * BLOCK_K}, whole blocks of {BLOCK_N} "
            "channels and a multiple of 4 positions"
        )
    return None


def static(case_names: list[str], block_ms: list[int]) -> int:
    """Compile for sm_90 without a GPU, specialised as a launch would be, and print what
    bench.kernel_static reads of it, at each of ``block_ms`` rows a tile."""
    from bench.kernel_static import compile_like_launch, dump_cubin, facts_from_dump, loop_facts
    from pytest_conv3d_perf.cases import builtin_cases, select

    with tempfile.TemporaryDirectory() as scratch:
        for case, bm in itertools.product(select(builtin_cases(), case_names), block_ms):
            why = why_not(case)
            if why:
                print(f"{case.name}: not taken: {why}")
                continue
            compiled = compile_like_launch(persist_config(bm, 1), 90, case, "tf32x3-ws")
            usage, sass = dump_cubin(compiled.asm["cubin"], os.path.join(scratch, "k.cubin"))
            facts = facts_from_dump(usage, sass)
            print(
                f"{case.name} BLOCK_M {bm}: shared {compiled.metadata.shared}, {facts}, "
                f"loop {loop_facts(sass)}"
            )
    return 0


def timed(
    names: list[str], per_sm: list[int], rounds: int, rep_ms: int, block_ms: list[int]
) -> int:
    """Each case: the persistent kernel at each of ``block_ms`` and ``per_sm`` against the
    kernel file at its recorded config, in one process, interleaved round by round; each
    against float64 first."""
    from bench.profile_case import recorded_config
    from pytest_conv3d_perf import check
    from pytest_conv3d_perf.cases import builtin_cases, select

    rows = []
    for case in select(builtin_cases(), names):
        why = why_not(case)
        if why:
            print(f"{case.name:8s} not timed: {why}", flush=True)
            continue
        inputs = check.random_inputs(case, torch.device("cuda"), seed=1)
        args = (inputs.x, inputs.weight, inputs.bias, case.stride, case.padding, case.dilation)
        run = functools.partial(ig.conv3d, *args, precision="tf32x3-ws")
        sides = {"base": functools.partial(run, config=recorded_config(case.name))}
        for bm, p in itertools.product(block_ms, per_sm):
            sides[f"persist {bm} {p}/SM"] = functools.partial(run, config=persist_config(bm, p))
        rows += gc.time_sides(case, inputs, sides, rounds, rep_ms, width=18)
    print("\n".join(rows))
    return 0


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v]
    except ValueError:
        return []


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
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rep-ms", type=int, default=60)
    args = ap.parse_args(argv)
    names = [c for c in args.cases.split(",") if c]
    block_ms = _ints(args.block_m)
    if not block_ms or set(block_ms) - set(BLOCK_MS):
        print(f"gluon_persist: --block-m {args.block_m!r}: 64, 128 or both", file=sys.stderr)
        return 2
    per_sm = _ints(args.per_sm)
    if not per_sm or min(per_sm) < 1:
        print(
            f"gluon_persist: --per-sm {args.per_sm!r}: one or more programs a "
            "multiprocessor, integers, e.g. 2,3",
            file=sys.stderr,
        )
        return 2
    if ig._conv3d_gl_persist_kernel is None:
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
    if not torch.cuda.is_available():
        print("gluon_persist: needs a CUDA GPU (or --static)", file=sys.stderr)
        return 2
    return timed(names, per_sm, args.rounds, args.rep_ms, block_ms)


if __name__ == "__main__":
    sys.exit(main())
