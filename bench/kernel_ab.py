"""Two versions of a kernel file timed interleaved in one process, per case: device time
(do_bench medians, L2 flushed) and call time in a loop. Needs a CUDA GPU.

    python3 -m bench.kernel_ab --base REV [--cases kb54,n1_oc17_bias] [--rounds 5]

``--base`` is a git revision: the kernel file as it was there is loaded into a module of
its own beside today's, so both run in the same process on the same inputs, interleaved
round by round; the change is today's over the base's, per round, and its median.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import triton.testing

from bench.kernel_vs_pytorch import call_us
from kernels.implicit_gemm import _config_dict
from pytest_conv3d_perf import check
from pytest_conv3d_perf.cases import builtin_cases, select
from pytest_conv3d_perf.tune import LaunchConfig

KERNEL = "kernels/implicit_gemm.py"


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # triton.jit reads the defining module's globals
    spec.loader.exec_module(module)
    return module


def _label(config) -> str:
    return "?" if config is None else LaunchConfig.from_dict(_config_dict(config)).label()


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="git revision of the base kernel file, or a file")
    ap.add_argument("--file", default=KERNEL, help=f"kernel file (default: {KERNEL})")
    ap.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rep-ms", type=int, default=100)
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("kernel_ab: needs a CUDA GPU", file=sys.stderr)
        return 2
    if Path(args.base).is_file():
        tmp = Path(args.base)
    else:
        text = subprocess.run(
            ["git", "show", f"{args.base}:{args.file}"], capture_output=True, text=True, check=True
        ).stdout
        tmp = Path(tempfile.mkdtemp()) / "kernel_base.py"
        tmp.write_text(text)
    versions = {"base": load(tmp, "kernel_base"), "today": load(Path(args.file), "kernel_today")}
    dev = torch.device("cuda")
    rows = []
    names = [n for n in args.cases.split(",") if n]
    for case in select(builtin_cases(), names):
        inputs = check.random_inputs(case, dev, seed=1)
        a = (inputs.x, inputs.weight, inputs.bias, case.stride, case.padding, case.dilation)
        fns = {k: (lambda m=m, a=a: m.conv3d(*a)) for k, m in versions.items()}
        for fn in fns.values():
            fn()
        # Each version's autotuner pick: a change of pick moves a case by a few percent
        # with no change to the code it runs (notes/kernel.md, v12).
        picks = {k: _label(getattr(m, "_LAST", [None])[0]) for k, m in versions.items()}
        ms: dict[str, list[float]] = {k: [] for k in fns}
        us: dict[str, list[float]] = {k: [] for k in fns}
        for r in range(args.rounds):
            order = list(fns) if r % 2 == 0 else list(reversed(fns))
            for k in order:
                ms[k].append(
                    float(triton.testing.do_bench(fns[k], rep=args.rep_ms, return_mode="median"))
                )
                us[k].append(call_us(fns[k], calls=50, repeats=3))
        change = [100 * (t / b - 1) for t, b in zip(ms["today"], ms["base"])]
        call_change = [100 * (t / b - 1) for t, b in zip(us["today"], us["base"])]
        row = {
            "case": case.name,
            "base_ms": median(ms["base"]),
            "today_ms": median(ms["today"]),
            "change_pct": median(change),
            "change_range_pct": [min(change), max(change)],
            "base_call_us": median(us["base"]),
            "today_call_us": median(us["today"]),
            "call_change_pct": median(call_change),
            "base_config": picks["base"],
            "today_config": picks["today"],
        }
        rows.append(row)
        print(
            f"# {case.name}: {row['change_pct']:+.2f}%, call {row['call_change_pct']:+.1f}%, "
            f"configs {picks['base']} -> {picks['today']}"
        )
    print(f"\n{torch.cuda.get_device_name()}, triton {triton.__version__}, base {args.base}")
    print(
        f"{'case':20s} {'base ms':>9s} {'today ms':>9s} {'change':>8s} {'range':>16s} "
        f"{'base us':>8s} {'today us':>8s} {'call':>7s}"
    )
    for r in rows:
        lo, hi = r["change_range_pct"]
        print(
            f"{r['case']:20s} {r['base_ms']:9.4f} {r['today_ms']:9.4f} {r['change_pct']:+7.2f}% "
            f"[{lo:+6.2f},{hi:+6.2f}] {r['base_call_us']:8.1f} {r['today_call_us']:8.1f} "
            f"{r['call_change_pct']:+6.1f}%"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
