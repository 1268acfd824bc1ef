"""What the compiler made of the kernel, per case, without a GPU.

Compiles each case's config (the one its baseline recorded, else the first autotune
config), specialised to the case's sizes as a launch would be, for a GPU architecture with
the installed Triton and its bundled ptxas, and reads the result: registers and spill
stack per thread, shared memory per block, the global stores per thread by width, the
tensor-core and async-copy instructions and the waits on the tensor cores, and the layout
of the output store (which lanes of a warp write neighbouring addresses). On the H100 the
registers it gives for #54 and the 64-channel layers match what `conv3d-perf tune` read
from the GPU's own compile.

    python3 -m bench.kernel_static [--capability 90] [--cases kb54,kb59] [--baseline FILE]
        [--kernel FILE] [--as-launched] [--loop] [--sass-dir DIR]

``--kernel`` reads another copy of the kernel file (a variant in bench/variants) instead of
kernels/implicit_gemm.py; ``--as-launched`` compiles the bias flag as a launch passes it
(``compile_like_launch``; without it the bias is always compiled in); ``--loop`` adds the
K loop's SASS (instructions of one step, its global loads by width) and the epilogue's
(instructions after the loop, its shared-memory traffic and barriers).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import triton

from bench.variants import VariantError, load, materialize
from kernels import implicit_gemm as ig
from pytest_conv3d_perf.cases import CaseError, builtin_cases, select
from pytest_conv3d_perf.report import text_table
from pytest_conv3d_perf.tune import LaunchConfig

TOOLS = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")


def _tool(name: str, *args: str) -> str:
    return subprocess.run(
        [os.path.join(TOOLS, name), *args], check=True, capture_output=True, text=True
    ).stdout


def dump_cubin(cubin: bytes, scratch: str) -> tuple[str, str]:
    """cuobjdump's resource usage and SASS of a cubin (written to the file ``scratch``)."""
    with open(scratch, "wb") as fh:
        fh.write(cubin)
    return (
        _tool("cuobjdump", "--dump-resource-usage", scratch),
        _tool("cuobjdump", "-sass", scratch),
    )


# A SASS instruction line: its address, an optional predicate, the opcode, its operands.
SASS_LINE = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z][\w.]*)([^;]*);")


def sass_facts(cubin: bytes, scratch: str) -> dict:
    return facts_from_dump(*dump_cubin(cubin, scratch))


def facts_from_dump(usage: str, sass: str) -> dict:
    """``sass_facts`` from ``dump_cubin``'s two texts."""
    regs = re.search(r"REG:(\d+)", usage)
    stack = re.search(r"STACK:(\d+)", usage)
    opcodes = collections.Counter(m.group(2) for m in SASS_LINE.finditer(sass))

    def count(prefix: str) -> int:
        return sum(n for op, n in opcodes.items() if op.startswith(prefix))

    return {
        "registers": int(regs.group(1)) if regs else -1,
        "spill_stack_bytes": int(stack.group(1)) if stack else -1,
        "stores": {op: n for op, n in opcodes.items() if op.startswith("STG")},
        "mma": count("HGMMA") + count("HMMA"),
        # Waits on the Hopper tensor cores' async products: one per HGMMA where ptxas
        # serialised them (its C7515), a few per K step where it pipelined them.
        "mma_waits": count("WARPGROUP.DEPBAR"),
        "async_copies": count("LDGSTS"),
    }


def store_layout(ttgir: str) -> str:
    """The blocked layout of the output store, as its threadsPerWarp and order."""
    stored = re.findall(
        r"tt\.store %\S+, %\S+(?:, %\S+)? : tensor<\d+x\d+x!tt\.ptr<f32>, #(\w+)>", ttgir
    )
    if not stored:
        return "?"
    layout = re.search(rf"#{stored[-1]} = #ttg\.blocked<\{{([^}}]*)\}}>", ttgir)
    if not layout:
        return stored[-1]
    fields = dict(re.findall(r"(\w+) = (\[[^\]]*\])", layout.group(1)))
    return (
        f"spt {fields.get('sizePerThread')} tpw {fields.get('threadsPerWarp')} "
        f"order {fields.get('order')}"
    )


def load_kernel(path: str):
    """The kernel file (or variant diff, bench/variants/) at ``path`` as a module of its own."""
    try:
        source = materialize(Path(path))
        return load(source, "kernel_static_" + source.stem)
    except VariantError as err:
        raise SystemExit(f"kernel_static: {err}") from None


def loop_facts(sass: str) -> dict:
    """The K loop (the body of the widest backward branch) and the epilogue (what follows
    it) of ``cuobjdump -sass`` text, by opcode."""
    code = [(int(a, 16), op, rest) for a, op, rest in SASS_LINE.findall(sass)]
    spans = []
    for address, op, operands in code:
        target = re.search(r"0x([0-9a-f]+)", operands) if op.startswith("BRA") else None
        if target and int(target.group(1), 16) < address:
            spans.append((int(target.group(1), 16), address))
    if not spans:
        return {"loop": -1}
    lo, hi = max(spans, key=lambda span: span[1] - span[0])
    body = collections.Counter(op for address, op, _ in code if lo <= address <= hi)
    # The innermost loops that multiply, each counted (a warp-specialised kernel has one
    # a partition, where the widest branch above spans a partition's tile loop).
    inner = [
        (a, b)
        for a, b in spans
        if not any((c, d) != (a, b) and a <= c and d <= b for c, d in spans)
    ]
    inner_ops = [
        collections.Counter(op for address, op, _ in code if a <= address <= b) for a, b in inner
    ]
    tail = collections.Counter(op for address, op, _ in code if address > hi)
    head = sum(1 for address, _, _ in code if address < lo)

    def count(ops: collections.Counter, *prefixes: str) -> int:
        return sum(n for op, n in ops.items() if op.startswith(prefixes))

    return {
        "prologue": head,
        "loop": sum(body.values()),
        "loop_ldg": {op: n for op, n in body.items() if op.startswith("LDG.")},
        "loop_stg_bars": (count(body, "STG"), count(body, "BAR")),
        "epilogue": sum(tail.values()),
        "epilogue_shared": count(tail, "STS", "LDS"),
        "epilogue_bars": count(tail, "BAR"),
        "inner_loops": [
            {
                "instructions": sum(ops.values()),
                "mma": count(ops, "HGMMA"),
                "mma_waits": count(ops, "WARPGROUP.DEPBAR"),
                "bars": count(ops, "BAR"),
                "async_copies": count(ops, "LDGSTS"),
                "ldg": count(ops, "LDG."),
            }
            for ops in inner_ops
            if count(ops, "HGMMA")
        ],
    }


def compile_like_launch(
    config: triton.Config,
    capability: int,
    case,
    precision: str,
    *,
    generic: bool = False,
    kernel=None,
):
    """``ig.compile_offline`` of ``case`` (a suite case) with its bias flag as a launch
    passes it. ``compile_offline`` always compiles the bias in; a bias-free launch compiles
    without it, and that changes the registers (kb54 at 128x64x32 w8, sm_89, ieee: 128 with
    the bias, 160 without). The source it builds is taken as it reaches ``triton.compile``,
    so every other specialisation stays ``compile_offline``'s own. ``kernel``: the kernel
    module (``load_kernel``; default kernels/implicit_gemm.py)."""
    kernel = kernel or ig
    captured: dict = {}

    def capture(src, target=None, options=None):
        captured.update(src=src, target=target, options=options)

    real = triton.compile
    triton.compile = capture
    try:
        kernel.compile_offline(
            config,
            capability,
            padded=any(case.padding),
            precision=precision,
            scalars=None if generic else kernel.case_scalar_args(case, precision),
        )
    finally:
        triton.compile = real
    src = captured["src"]
    src.constants[(kernel._ARG_NAMES.index("HAS_BIAS"),)] = bool(case.bias)
    return triton.compile(src, target=captured["target"], options=captured["options"])


def recorded_configs(path: str) -> dict[str, triton.Config]:
    if not path or not os.path.exists(path):
        return {}
    with open(path) as fh:
        cases = json.load(fh).get("cases", {})
    return {
        name: _launch_config(LaunchConfig.from_dict(entry["autotune"]))
        for name, entry in cases.items()
        if entry.get("autotune")
    }


def _launch_config(cfg: LaunchConfig) -> triton.Config:
    return triton.Config(cfg.kwargs(), num_warps=cfg.num_warps, num_stages=cfg.num_stages)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--capability", type=int, default=90, help="sm_XX to compile for (90: H100)")
    ap.add_argument("--cases", default="", help="comma-separated case names, or all (default: all)")
    ap.add_argument(
        "--precision",
        default=ig.DEFAULT_PRECISION,
        help=f"one of the kernel file's modes ({', '.join(ig.PRECISIONS)} in today's; a "
        "variant may add its own)",
    )
    ap.add_argument(
        "--baseline",
        default="notes/data/retired/nvidia-h100-80gb-hbm3.json",
        help="baseline file whose recorded autotune configs to compile",
    )
    ap.add_argument(
        "--generic",
        action="store_true",
        help="compile with generic integer arguments instead of specialising them to the "
        "case as a launch would (1 -> constant, multiples of 16 -> aligned)",
    )
    ap.add_argument("--json", default="", help="also write the rows here")
    ap.add_argument("--kernel", default="", help="a copy of the kernel file to read instead")
    ap.add_argument(
        "--as-launched",
        action="store_true",
        help="compile the bias flag as the case's launch passes it (default: bias compiled in)",
    )
    ap.add_argument(
        "--loop", action="store_true", help="also the K loop's and the epilogue's SASS counts"
    )
    ap.add_argument(
        "--sass-dir", default="", help="also write each case's SASS, TTGIR and PTX here"
    )
    args = ap.parse_args(argv)
    if ig.interpreting():
        sys.exit("kernel_static: unset TRITON_INTERPRET; compiling needs Triton's compiler")
    kernel = load_kernel(args.kernel) if args.kernel else ig
    if args.precision not in kernel.PRECISIONS:
        sys.exit(
            f"kernel_static: unknown precision {args.precision!r}; the kernel file's: "
            f"{', '.join(kernel.PRECISIONS)}"
        )
    cases = builtin_cases()
    if args.cases and args.cases != "all":
        try:
            cases = select(cases, args.cases.split(","))
        except CaseError as err:
            sys.exit(f"kernel_static: {err}")
    configs = recorded_configs(args.baseline)
    rows = []
    scratch = os.path.join(tempfile.mkdtemp(prefix="kernel_static_"), "kernel.cubin")
    for case in cases:
        cfg = configs.get(case.name, ig.AUTOTUNE_CONFIGS[0])
        if args.as_launched:
            compiled = compile_like_launch(
                cfg, args.capability, case, args.precision, generic=args.generic, kernel=kernel
            )
        else:
            compiled = kernel.compile_offline(
                cfg,
                args.capability,
                padded=any(case.padding),
                precision=args.precision,
                scalars=None if args.generic else kernel.case_scalar_args(case, args.precision),
            )
        usage, sass = dump_cubin(compiled.asm["cubin"], scratch)
        k = kernel.case_scalar_args(case, args.precision)[2]
        rows.append(
            {
                "case": case.name,
                "config": ig._config_dict(cfg),
                "k_steps": -(-k // cfg.kwargs["BLOCK_K"]),
                # A kernel with persistent programs (v25, retired: in git history before v26)
                # unrolls the K steps of such a case: its widest loop is the tile loop.
                "persistent": bool(
                    not args.generic
                    and hasattr(kernel, "persistent_k_steps")
                    and kernel.persistent_k_steps(
                        cfg, case.oc, k, any(case.padding), args.precision
                    )
                ),
                "shared_bytes": int(compiled.metadata.shared),
                "store_layout": store_layout(compiled.asm["ttgir"]),
                **facts_from_dump(usage, sass),
                **(loop_facts(sass) if args.loop else {}),
            }
        )
        if args.sass_dir:
            os.makedirs(args.sass_dir, exist_ok=True)
            for ext, text in (
                ("sass", sass),
                ("ttgir", compiled.asm["ttgir"]),
                ("ptx", compiled.asm["ptx"]),
            ):
                with open(os.path.join(args.sass_dir, f"{case.name}.{ext}"), "w") as fh:
                    fh.write(text)
        print(f"# {case.name}: compiled", file=sys.stderr, flush=True)
    shutil.rmtree(os.path.dirname(scratch))
    source = args.kernel or "kernels/implicit_gemm.py"
    bias = "bias as launched" if args.as_launched else "bias compiled in"
    print(
        f"Triton {triton.__version__}, sm_{args.capability}, {args.precision}, {source}, "
        f"{bias}; per thread:"
    )
    header = [
        "case",
        "config",
        "regs",
        "spill B",
        "shared B",
        "mma",
        "mma waits",
        "cp.async",
        "stores",
    ]
    body = []
    for r in rows:
        cfg = LaunchConfig.from_dict(r["config"]).label()
        counts = (
            r["registers"],
            r["spill_stack_bytes"],
            r["shared_bytes"],
            r["mma"],
            r["mma_waits"],
        )
        stores = " ".join(f"{op} {n}" for op, n in sorted(r["stores"].items()))
        body.append(
            [r["case"], cfg, *map(str, counts), str(r["async_copies"]), stores, r["store_layout"]]
        )
    print(text_table([*header, "output store layout"], body))
    if args.loop:
        print(
            "\nSASS instructions: before the K loop, one K step (its global loads), the epilogue "
            "after the loop; a block: prologue + K steps x K step + epilogue. Where the loop "
            "is a persistent kernel's tile loop (its K steps unrolled), the K step column is "
            "one tile and a block is one tile:"
        )
        loop_rows = [
            [
                r["case"] + (" (tile loop)" if r["persistent"] else ""),
                str(r.get("prologue", -1)),
                str(r["loop"]),
                " ".join(f"{op} {n}" for op, n in sorted(r.get("loop_ldg", {}).items())) or "-",
                "{} {}".format(*r.get("loop_stg_bars", (-1, -1))),
                str(r.get("epilogue", -1)),
                str(r.get("epilogue_shared", -1)),
                str(r.get("epilogue_bars", -1)),
                str(
                    r["loop"]
                    if r["persistent"]
                    else r.get("prologue", 0) + r["k_steps"] * r["loop"] + r.get("epilogue", 0)
                ),
            ]
            for r in rows
        ]
        header = ["case", "prologue", "K step", "its LDG", "its STG BAR", "epilogue"]
        header += ["its LDS/STS", "its BAR"]
        print(text_table([*header, "a block"], loop_rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
