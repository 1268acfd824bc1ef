"""Two versions of a kernel file timed interleaved in one process, per case: device time
(do_bench medians, L2 flushed) and call time in a loop. Needs a CUDA GPU.

    python3 -m bench.kernel_ab --base REV [--cases kb54,n1_oc17_bias] [--rounds 5]
    python3 -m bench.kernel_ab --variant bench/variants/v24a_vecstore.diff [--base REV|FILE]
        [--recorded baselines/nvidia-h200.json]

``--base`` is a git revision or a file: the kernel file as it was there (or that file) is
loaded into a module of its own beside today's, so both run in the same process on the same
inputs, interleaved round by round; the change is today's over the base's, per round, and
its median. ``--variant`` puts a variant of the kernel file (bench/variants/) in today's place;
its base is then today's kernel file unless ``--base`` names another. A copy loaded from a
file keeps its tuning picks under a digest of that file alone, so two variants in one
folder never read each other's. ``--recorded`` runs each case at the config a baseline file
recorded for it, on both sides, without tuning (a case it lacks is tuned): the code's change
at one config, and one compile a side.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import torch
import triton.testing

from bench.kernel_static import recorded_configs
from bench.kernel_vs_pytorch import call_us
from bench.variants import VariantError, load, materialize
from kernels.implicit_gemm import _config_dict
from pytest_conv3d_perf import check
from pytest_conv3d_perf.cases import CaseError, builtin_cases, select
from pytest_conv3d_perf.sides import git
from pytest_conv3d_perf.tune import LaunchConfig

KERNEL = "kernels/implicit_gemm.py"


class UsageError(Exception):
    pass


def base_source(base: str, kernel_file: str) -> Path:
    """The base's kernel file: ``base`` itself where it is a file, else ``kernel_file`` as it
    was at the git revision ``base``, written to a temporary file."""
    if Path(base).is_file():
        try:
            return materialize(Path(base))
        except VariantError as err:
            raise UsageError(str(err)) from None
    if base.endswith((".py", ".diff")):
        raise UsageError(f"no such base file: {base!r}")
    shown = git(Path.cwd(), "show", f"{base}:{kernel_file}")
    if shown.returncode != 0:
        raise UsageError(
            f"--base {base!r} is neither a file nor a git revision holding {kernel_file}: "
            f"{shown.stderr.strip()}"
        )
    tmp = Path(tempfile.mkdtemp()) / "kernel_base.py"
    tmp.write_text(shown.stdout)
    return tmp


def resolve_sides(args: argparse.Namespace) -> tuple[Path, Path, str, str]:
    """The base's and the head's kernel files and their labels; UsageError for bad paths
    or revisions, before anything needs a GPU."""
    if args.variant:
        try:
            head = materialize(Path(args.variant))
        except VariantError as err:
            raise UsageError(str(err)) from None
        head_label = args.variant
    else:
        if not args.base:
            raise UsageError("give --base REV|FILE, --variant FILE, or both")
        head = Path(args.file)
        if not head.is_file():
            raise UsageError(f"no such kernel file: {args.file!r}")
        head_label = f"{args.file} (today)"
    if args.base:
        base = base_source(args.base, args.file)
        base_label = args.base
    else:
        base = Path(args.file)
        if not base.is_file():
            raise UsageError(f"no such kernel file: {args.file!r}")
        base_label = f"{args.file} (today)"
    return base, head, base_label, head_label


def pin_config(module, cfg, tuner) -> dict:
    """Make ``module``'s next tuning return ``cfg`` (None: its own ``tuner`` again); the
    keyword arguments a call then needs. The config stands in for the tuning, so each call
    still takes the launch path a tuned one does (the plan's direct launch): conv3d(config=)
    binds every argument anew each call, more host time than the suite's smallest cases take
    on the GPU. A kernel older than its own tuner (v16) gets config= all the same."""
    if tuner is None:
        return {} if cfg is None else {"config": cfg}
    module._tune = tuner if cfg is None else (lambda *_, c=cfg: c)
    return {}


def _label(config) -> str:
    return "?" if config is None else LaunchConfig.from_dict(_config_dict(config)).label()


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--base",
        default="",
        help="git revision of the base kernel file, or a file (default with --variant: "
        "today's kernel file)",
    )
    ap.add_argument("--file", default=KERNEL, help=f"kernel file (default: {KERNEL})")
    ap.add_argument(
        "--variant",
        default="",
        help="a variant of the kernel file (a .diff of bench/variants, or a copy) to run in "
        "today's place",
    )
    ap.add_argument(
        "--recorded",
        default="",
        help="baseline file: run each case at the config it recorded, without tuning",
    )
    ap.add_argument("--cases", default="", help="comma-separated case names, or all (default: all)")
    ap.add_argument(
        "--input-scale",
        type=float,
        default=1.0,
        help="multiply each case's input by this (default 1: KernelBench's torch.rand): the "
        "fp32 rule's atol is absolute, so a kernel's share of it grows with the data's scale",
    )
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rep-ms", type=int, default=100)
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    try:
        base_path, head_path, base_label, head_label = resolve_sides(args)
        if not (0 < args.input_scale < math.inf):
            raise UsageError(f"--input-scale must be positive and finite, not {args.input_scale}")
        if args.recorded and not Path(args.recorded).is_file():
            raise UsageError(f"no such baseline file: {args.recorded!r}")
        names = [n for n in args.cases.split(",") if n and n != "all"]
        cases = select(builtin_cases(), names)
    except (UsageError, CaseError) as exc:
        print(f"kernel_ab: {exc}", file=sys.stderr)
        return 2
    configs = recorded_configs(args.recorded) if args.recorded else {}
    if not torch.cuda.is_available():
        print("kernel_ab: needs a CUDA GPU", file=sys.stderr)
        return 2
    today = Path(args.file).resolve()
    versions = {
        "base": load(base_path, "kernel_base", own_digest=base_path.resolve() != today),
        "today": load(head_path, "kernel_today", own_digest=head_path.resolve() != today),
    }
    tuners = {k: getattr(m, "_tune", None) for k, m in versions.items()}
    dev = torch.device("cuda")
    rows = []
    for case in cases:
        inputs = check.random_inputs(case, dev, seed=1)
        inputs.x.mul_(args.input_scale)
        a = (inputs.x, inputs.weight, inputs.bias, case.stride, case.padding, case.dilation)
        cfg = configs.get(case.name)
        kwargs = {k: pin_config(m, cfg, tuners[k]) for k, m in versions.items()}
        fns = {k: (lambda m=m, a=a, kw=kwargs[k]: m.conv3d(*a, **kw)) for k, m in versions.items()}
        # Each side's first call, against float64 by the suite's fp32 rule: a variant that
        # computes the wrong thing fast must not read as a gain.
        reports = {k: _fp32_report(fn(), inputs, case) for k, fn in fns.items()}
        exact = {k: r.ok for k, r in reports.items()}
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
            "base": base_label,
            "today": head_label,
            "base_fp32_rule": exact["base"],
            "today_fp32_rule": exact["today"],
            "input_scale": args.input_scale,
            "base_fp32_share": reports["base"].share,
            "today_fp32_share": reports["today"].share,
        }
        rows.append(row)
        wrong = [k for k, ok in exact.items() if not ok]
        print(
            f"# {case.name}: {row['change_pct']:+.2f}%, call {row['call_change_pct']:+.1f}%, "
            f"configs {picks['base']} -> {picks['today']}"
            + (f"; FAILS the fp32 rule: {', '.join(wrong)}" if wrong else "")
        )
    at = f"recorded configs of {args.recorded}" if args.recorded else "each side's tuned picks"
    print(
        f"\n{torch.cuda.get_device_name()}, triton {triton.__version__}, base {base_label}, "
        f"today {head_label}, {at}"
        + (f", inputs x {args.input_scale:g}" if args.input_scale != 1 else "")
    )
    print(
        f"{'case':20s} {'base ms':>9s} {'today ms':>9s} {'change':>8s} {'range':>16s} "
        f"{'base us':>8s} {'today us':>8s} {'call':>7s}  fp32 rule"
    )
    for r in rows:
        lo, hi = r["change_range_pct"]
        print(
            f"{r['case']:20s} {r['base_ms']:9.4f} {r['today_ms']:9.4f} {r['change_pct']:+7.2f}% "
            f"[{lo:+6.2f},{hi:+6.2f}] {r['base_call_us']:8.1f} {r['today_call_us']:8.1f} "
            f"{r['call_change_pct']:+6.1f}%  {_rule_cell(r)}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


def _fp32_report(got: torch.Tensor, inputs, case) -> check.CheckReport:
    return check.truth_report(got, inputs, case, check.rule_for("fp32"))


def _rule_cell(row: dict) -> str:
    """Both sides met the fp32 rule: "both"; else which did not. Then the share of the rule
    each side's worst element spends (a variant that trades accuracy shows it here)."""
    failed = [k for k in ("base", "today") if not row[f"{k}_fp32_rule"]]
    verdict = "both" if not failed else "FAILED: " + ", ".join(failed)
    shares = [row.get(f"{k}_fp32_share") for k in ("base", "today")]
    if None in shares:
        return verdict
    return f"{verdict} ({100 * shares[0]:.1f}%, {100 * shares[1]:.1f}%)"


if __name__ == "__main__":
    sys.exit(main())
