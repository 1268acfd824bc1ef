"""The gate's decisions on a simulated GPU: false alarms, power and interval coverage per
case size and change, on the CPU in a few minutes.

    python3 -m bench.gate_sim                      # the default grid, 20 trials a cell
    python3 -m bench.gate_sim --trials 50 --history none

Each trial records a baseline as ``conv3d-perf update-baselines --processes 3`` does (three
simulated processes of one day, the median process stored with their spread), then runs
the real gate (``gate.run_gate``: measurement, verdict, A/B against the recorded kernel,
repeat) in a fresh process of another day, with the kernel slowed by the row's change.
The noise is ``pytest_conv3d_perf.simulated.Noise`` (measured on the H100) plus a machine
offset per day. With ``--history none`` the recorded kernel cannot be had (a shallow
clone) and the stored number decides. A change of 0 is "the code changed, its speed did
not", so the A/B runs; "host" adds host work before every call (the device time does not
move). Statistics changes are judged here first; GPU time confirms them
(bench/gate_quality.py). Prints a table, then one summary line.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass

from pytest_conv3d_perf.baseline import BaselineEntry, median_process
from pytest_conv3d_perf.gate import Other, run_gate
from pytest_conv3d_perf.measure import Measurement, Plan, measure
from pytest_conv3d_perf.simulated import Noise, SimulatedGpu, process_seed
from pytest_conv3d_perf.verdict import Thresholds, Verdict

# The suite's sizes on the H100: n1_oc17_bias, mixed_stride, video_c128_s2_bias, kb66.
SIZES = (0.013, 0.04, 0.22, 2.4)
CHANGES = ("0", "0.01", "0.02", "0.05", "host")
HOST_MS = 0.2
# A machine's offset from one day to the next (on top of a process's): video_c64 and
# unet3d_n1 sat 0.0-0.8% off the A/B truth against a number stored the day before.
DAY_SD = 0.003


def _entry(m: Measurement) -> BaselineEntry:
    ref, call = m.reference, m.call
    return BaselineEntry(
        median_ms=m.kernel.median,
        ci_low_ms=m.kernel.low,
        ci_high_ms=m.kernel.high,
        samples=m.kernel.n,
        l2="flush",
        reference_ms=ref.median if ref else None,
        reference_ci_ms=[ref.low, ref.high] if ref else None,
        sm_mhz=m.sm_mhz,
        call_ms=call.median if call else None,
        call_ci_ms=[call.low, call.high] if call else None,
        kernel_hash="sha256:recorded",
        kernel_file="kernels/sim.py",
        environment={"commit": "0" * 40},
    )


@dataclass
class Trial:
    verdict: Verdict
    stored: Verdict | None
    settled_by: str
    covered: bool | None  # the deciding interval holds the truth
    stored_covered: bool | None  # the interval against the stored number does


def trial(
    kernel_ms: float, change: str, seed: int, args: argparse.Namespace, noise: Noise
) -> Trial | None:
    rng = random.Random(seed)
    ref_ms = kernel_ms * 0.95
    t = Thresholds(args.fail, args.warn)
    plan = Plan(budget_s=args.budget, target_halfwidth_pct=t.target_halfwidth_pct)
    record_day = rng.gauss(0, DAY_SD)
    entries = []
    for p in range(3):
        gpu = SimulatedGpu(
            kernel_ms,
            ref_ms,
            machine_offset=record_day,
            noise=noise,
            seed=process_seed(seed, p),
        )
        m = measure(gpu, gpu.runner("kernel"), gpu.runner("reference"), plan, now=gpu.now)
        entries.append(_entry(m))
    base = median_process(entries, t.max_halfwidth_pct)
    if base is None:
        return None
    slowdown = float(change) if change != "host" else 0.0
    gpu = SimulatedGpu(
        kernel_ms,
        ref_ms,
        slowdown=slowdown,
        extra_host_ms=HOST_MS if change == "host" else 0.0,
        machine_offset=rng.gauss(0, DAY_SD),
        noise=noise,
        seed=process_seed(seed, 99),
    )
    kernel = gpu.runner("kernel")
    recorded_run = gpu.runner("recorded")

    def other() -> Other:
        if args.history == "none":
            return Other(None, why="no history")
        return Other(recorded_run, "the recorded kernel")

    out = run_gate(
        gpu,
        kernel,
        gpu.runner("reference"),
        base,
        t,
        plan,
        "flush",
        other=other,
        now=gpu.now,
        ab_first=getattr(args, "mode", "stored") == "against",
    )
    truth = 100 * slowdown
    a, s = out.assessment, out.stored
    # The host change moves the call time only; its size is not known, so no coverage.
    covered = (
        a.change.low_pct <= truth <= a.change.high_pct if a.change and change != "host" else None
    )
    stored_covered = (
        s.change.low_pct <= truth <= s.change.high_pct
        if s is not None and s.change and change != "host"
        else None
    )
    return Trial(out.verdict, s.verdict if s else None, out.settled_by, covered, stored_covered)


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="trials per cell (default 20)")
    parser.add_argument(
        "--sizes", default=",".join(map(str, SIZES)), help="kernel ms, comma-separated"
    )
    parser.add_argument("--changes", default=",".join(CHANGES), help="slowdowns and/or 'host'")
    parser.add_argument(
        "--budget", type=float, default=2.0, help="seconds per measurement (simulated)"
    )
    parser.add_argument("--fail", type=float, default=2.0)
    parser.add_argument("--warn", type=float, default=1.0)
    parser.add_argument("--history", choices=("git", "none"), default="git")
    parser.add_argument(
        "--mode",
        choices=("stored", "against"),
        default="stored",
        help="stored: the stored number first, the A/B settles (pytest --conv3d-perf); "
        "against: the A/B decides every case (--conv3d-against, the pull-request gate)",
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    noise = Noise()
    started = time.perf_counter()
    rows = []
    totals: Counter[str] = Counter()
    for size in (float(x) for x in args.sizes.split(",")):
        for change in args.changes.split(","):
            trials = [
                trial(size, change, process_seed(args.seed, i) + int(size * 1e6), args, noise)
                for i in range(args.trials)
            ]
            done = [x for x in trials if x is not None]
            v = Counter(x.verdict for x in done)
            stored = Counter(x.stored for x in done)
            cov = [x.covered for x in done if x.covered is not None]
            scov = [x.stored_covered for x in done if x.stored_covered is not None]
            by = Counter(x.settled_by for x in done)
            n = len(done)
            rows.append(
                [
                    f"{size:g}",
                    change,
                    str(n),
                    str(v[Verdict.REGRESSION]),
                    str(v[Verdict.WARNING]),
                    str(v[Verdict.UNSTABLE]),
                    str(v[Verdict.UNCHANGED]),
                    str(v[Verdict.IMPROVEMENT]),
                    str(stored[Verdict.REGRESSION]),
                    _pct(sum(cov), len(cov)),
                    _pct(sum(scov), len(scov)),
                    " ".join(f"{k}:{c}" for k, c in sorted(by.items())),
                ]
            )
            key = "null" if change == "0" else change
            totals[f"{key}:n"] += n
            totals[f"{key}:regression"] += v[Verdict.REGRESSION]
            totals[f"{key}:flagged"] += v[Verdict.REGRESSION] + v[Verdict.WARNING]
            if size < 0.05 and change == "0":
                totals["small-null:unstable"] += v[Verdict.UNSTABLE]
                totals["small-null:n"] += n
            if size >= 0.05 and change == "0.02":
                totals["2%-big:n"] += n
                totals["2%-big:regression"] += v[Verdict.REGRESSION]
            if size >= 0.2 and change == "0.01":
                totals["1%-big:n"] += n
                totals["1%-big:flagged"] += v[Verdict.REGRESSION] + v[Verdict.WARNING]
            totals["cov:n"] += len(cov)
            totals["cov:hit"] += sum(cov)
            totals["scov:n"] += len(scov)
            totals["scov:hit"] += sum(scov)
            print(
                f"# {size:g} ms, change {change}: done ({time.perf_counter() - started:.0f} s)",
                file=sys.stderr,
            )
    head = [
        "kernel ms",
        "change",
        "trials",
        "regression",
        "warning",
        "unstable",
        "unchanged",
        "improvement",
        "stored-only regression",
        "deciding interval covers",
        "stored interval covers",
        "settled by",
    ]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(
        f"summary: mode={args.mode} history={args.history} trials/cell={args.trials} "
        f"false regressions {totals['null:regression']}/{totals['null:n']}; "
        f"unstable on unchanged <50us {totals['small-null:unstable']}/{totals['small-null:n']}; "
        f"1% flagged on >=0.2 ms {_pct(totals['1%-big:flagged'], totals['1%-big:n'])}; "
        f"2% regression on >=50us {_pct(totals['2%-big:regression'], totals['2%-big:n'])}; "
        f"5% regression {_pct(totals['0.05:regression'], totals['0.05:n'])}; "
        f"host regression {_pct(totals['host:regression'], totals['host:n'])}; "
        f"deciding interval covers the truth {_pct(totals['cov:hit'], totals['cov:n'])}, "
        f"stored-number interval {_pct(totals['scov:hit'], totals['scov:n'])}; "
        f"{time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
