"""How far the gate's A/B against another revision's kernel strays when nothing changed.
Needs a CUDA GPU and the revision in git.

    python3 -m bench.ab_null --cases pointwise_bias,mixed_stride --repeats 3 --against HEAD

Per case, in this one process: the kernel at ``--against`` is loaded from git with its
package (as the gate does, ``sides.Revisions``), and the gate's own
measurement (``measure.measure`` with the CUDA timer: L2 flush, stream hold) times
today's kernel against it, then today's kernel against itself, ``--repeats`` times each.
Same code, so the truth is 0: every interval should hold it. Prints each A/B with its
interval and the config each module's autotuner chose, then a table.

``--ways`` says how the copy is called: ``direct`` (its function as it is), ``paired``
(both sides through ``sides.pair``'s wrappers, as the gate calls them) and ``pytest-env``
(paired, with ``PYTEST_CURRENT_TEST`` set after the copy's load, as pytest sets it during
a test of the gate: the wrappers swapped it around every call until ``sides.RUNNER_VARIABLES``
left it out, notes/gate-quality.md, eighteenth session). Where the
gate's call-time A/B of identical code reads today faster than the copy and ``direct``
does not (notes/gate-quality.md), the way that does says where it comes from.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="pointwise_bias,mixed_stride,odd_sizes_oc24,video_c64")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget", type=float, default=2.0)
    ap.add_argument("--against", default="HEAD", help="the revision (default HEAD)")
    ap.add_argument(
        "--ways",
        default="direct",
        help="comma-separated: direct, paired, pytest-env (default direct)",
    )
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)

    import torch

    from kernels import implicit_gemm
    from pytest_conv3d_perf import check
    from pytest_conv3d_perf.cases import builtin_cases, select
    from pytest_conv3d_perf.environment import source_hash
    from pytest_conv3d_perf.gate import ab_changes
    from pytest_conv3d_perf.measure import Plan, measure
    from pytest_conv3d_perf.sides import Revisions, Unavailable, pair, today
    from pytest_conv3d_perf.timer import CudaTimer

    ways = args.ways.split(",")
    unknown = sorted(set(ways) - {"direct", "paired", "pytest-env"})
    if unknown:
        ap.error(f"--ways: unknown {', '.join(unknown)} (direct, paired, pytest-env)")
    revisions = Revisions(ROOT, os.environ)
    side = revisions.side(args.against, "kernels.implicit_gemm")
    if isinstance(side, Unavailable):
        print(f"no kernel at {args.against}: {side.why}")
        return 1
    theirs_fn = side.counterpart("kernels.implicit_gemm", "conv3d")
    recorded_module = side.modules["kernels.implicit_gemm"]
    timer = CudaTimer("flush")
    plan = Plan(budget_s=args.budget, target_halfwidth_pct=0.25)
    names = revisions.names(side.tree)
    today_fn = implicit_gemm.conv3d
    rows = []
    for case in select(builtin_cases(), args.cases.split(",")):
        inputs = check.random_inputs(case, torch.device("cuda"), 0)
        a = (inputs.x, inputs.weight, inputs.bias, case.stride, case.padding, case.dilation)

        def mine(a=a):
            return today_fn(*a)

        def theirs(a=a, f=theirs_fn):
            return f(*a)

        def again(a=a):
            return today_fn(*a)

        test_env = {"PYTEST_CURRENT_TEST": f"bench/ab_null.py::{case.name} (call)"}
        sides = []
        for way in ways:
            if way == "direct":
                sides.append((args.against, way, mine, theirs))
                continue
            with mock.patch.dict(os.environ, test_env if way == "pytest-env" else {}):
                both = pair(today(ROOT, names), side, names, mine, theirs)
                both.warm()
            sides.append((args.against, way, both.today, both.other))
        sides.append(("itself", "direct", mine, again))
        for label, way, first, other in sides:
            for r in range(args.repeats):
                with mock.patch.dict(os.environ, test_env if way == "pytest-env" else {}):
                    m = measure(timer, first, other, plan)
                assert m.reference is not None
                ab, call_ab = ab_changes(m)
                row = {
                    "case": case.name,
                    "against": label,
                    "way": way,
                    "repeat": r,
                    "ms": m.kernel.median,
                    "other_ms": m.reference.median,
                    "pct": ab.pct,
                    "interval": [ab.low_pct, ab.high_pct],
                    "covers_0": ab.low_pct <= 0 <= ab.high_pct,
                    # The call time's A/B (a caller's loop: host work included), which
                    # the gate decides beside the device time's.
                    "call_pct": call_ab.pct if call_ab else None,
                    "call_interval": [call_ab.low_pct, call_ab.high_pct] if call_ab else None,
                    "call_covers_0": call_ab.low_pct <= 0 <= call_ab.high_pct if call_ab else None,
                    "config": implicit_gemm.last_config(),
                    "other_config": recorded_module.last_config()
                    if label == args.against
                    else implicit_gemm.last_config(),
                    "same_source": source_hash(theirs_fn) == source_hash(today_fn),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    print(
        "\n| case | against | way | A/B % [95% interval] | holds 0 | call A/B % [95% interval] "
        "| holds 0 | configs equal |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['case']} | {r['against']} | {r['way']} | {r['pct']:+.2f} "
            f"[{r['interval'][0]:+.2f}, "
            f"{r['interval'][1]:+.2f}] | {'yes' if r['covers_0'] else 'NO'} | "
            f"{_call_cells(r)} | {'yes' if r['config'] == r['other_config'] else 'NO'} |"
        )
    held = sum(r["covers_0"] for r in rows)
    calls = [r for r in rows if r["call_pct"] is not None]
    call_held = sum(r["call_covers_0"] for r in calls)
    print(f"summary: {held}/{len(rows)} A/B intervals hold 0; call time: {call_held}/{len(calls)}")
    return 0


def _call_cells(row: dict) -> str:
    """The call time's A/B and whether its interval holds 0, as two table cells."""
    if row["call_pct"] is None:
        return "- | -"
    low, high = row["call_interval"]
    held = "yes" if row["call_covers_0"] else "NO"
    return f"{row['call_pct']:+.2f} [{low:+.2f}, {high:+.2f}] | {held}"


if __name__ == "__main__":
    sys.exit(main())
