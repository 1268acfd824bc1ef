"""How good are the gate's verdicts? False alarms, power and cost, against the naive method.

    python3 -m bench.gate_quality false-alarms --runs 10 --out DIR
    python3 -m bench.gate_quality power --slowdowns 0.02,0.05 --runs 3 --out DIR

false-alarms: records a baseline with the update command, then runs the gate N times, each
in a fresh process, against it, with the code unchanged; counts regression and warning
verdicts over all cases. power: the kernel slowed by a calibrated delay kernel
(bench/inject_slowdown.py); the fraction of case runs flagged. Each phase also runs the
naive method in fresh processes (one triton.testing.do_bench median per case, compared at
the thresholds) on the same test. Needs a CUDA GPU; prints a table last.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START = time.perf_counter()
SPEED_TEST = "tests/test_suite.py::test_conv3d_speed"


def _env(
    slowdown: float = 0.0, report: Path | None = None, host_us: float = 0.0, wrap: bool = False
) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env["CONV3D_INJECT_SLOWDOWN"] = str(slowdown)
    env["CONV3D_INJECT_HOST_US"] = str(host_us)
    env["CONV3D_INJECT_WRAP"] = "1" if wrap else ""
    env["PYTHONUNBUFFERED"] = "1"
    if report:
        env["CONV3D_INJECT_REPORT"] = str(report)
    return env


def gate_run(
    out: Path,
    tag: str,
    baseline_dir: Path,
    budget: float,
    slowdown: float = 0.0,
    update: bool = False,
    host_us: float = 0.0,
    wrap: bool = False,
) -> tuple[dict, float]:
    report = out / f"{tag}.json"
    args = [
        sys.executable,
        "-m",
        "pytest",
        SPEED_TEST,
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "bench.inject_slowdown",
        "--conv3d-perf",
        f"--conv3d-budget={budget}",
        f"--conv3d-baseline-dir={baseline_dir}",
        f"--conv3d-json={report}",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(
        args,
        cwd=ROOT,
        env=_env(slowdown, out / f"{tag}.inject.json", host_us, wrap),
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    (out / f"{tag}.log").write_text(proc.stdout + proc.stderr)
    print(f"# {tag}: rc={proc.returncode} {wall:.1f} s", flush=True)
    return json.loads(report.read_text()), wall


def record(out: Path, baseline_dir: Path, budget: float, processes: int) -> float:
    """The baseline, written by the update command as a user would."""
    args = [
        sys.executable,
        "-m",
        "pytest_conv3d_perf.cli",
        "update-baselines",
        f"--processes={processes}",
        "--",
        SPEED_TEST,
        "-q",
        "-p",
        "bench.inject_slowdown",
        f"--conv3d-budget={budget}",
        f"--conv3d-baseline-dir={baseline_dir}",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(args, cwd=ROOT, env=_env(), capture_output=True, text=True)
    (out / "record.log").write_text(proc.stdout + proc.stderr)
    wall = time.perf_counter() - t0
    print(f"# record ({processes} processes): rc={proc.returncode} {wall:.1f} s", flush=True)
    if proc.returncode != 0:
        print(proc.stdout[-3000:] + proc.stderr[-2000:])
    return wall


def naive_run(out: Path, tag: str, slowdown: float = 0.0) -> dict[str, float]:
    path = out / f"{tag}.naive.json"
    subprocess.run(
        [sys.executable, "-m", "bench.gate_quality", "naive-child", "--json", str(path)],
        cwd=ROOT,
        env=_env(slowdown),
        check=True,
    )
    return json.loads(path.read_text())


def naive_child(path: Path) -> None:
    """One fresh process: one do_bench median per case, as people time a kernel today."""
    import torch
    import triton.testing

    from kernels import implicit_gemm
    from pytest_conv3d_perf import check
    from pytest_conv3d_perf.cases import builtin_cases

    fraction = float(os.environ.get("CONV3D_INJECT_SLOWDOWN", "0") or 0)
    fn = implicit_gemm.conv3d
    if fraction:
        from bench.inject_slowdown import make_slowed

        fn = make_slowed(fn, fraction, {})
    times = {}
    for case in builtin_cases():
        inputs = check.random_inputs(case, torch.device("cuda"), 0)
        args = (inputs.x, inputs.weight, inputs.bias, case.stride, case.padding, case.dilation)
        fn(*args)
        times[case.name] = float(
            triton.testing.do_bench(lambda args=args: fn(*args), return_mode="median")
        )
    path.write_text(json.dumps(times))


def naive_verdict(now: float, base: float, fail: float = 2.0, warn: float = 1.0) -> str:
    change = 100 * (now / base - 1)
    return "regression" if change > fail else "warning" if change > warn else "unchanged"


def _tally(verdicts: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in verdicts:
        out[v] = out.get(v, 0) + 1
    return out


def baseline_dir(args: argparse.Namespace) -> Path:
    """--baseline-dir as given (recorded earlier by the same code), else record one now."""
    if args.baseline_dir:
        return args.baseline_dir
    base_dir = args.out / "baselines"
    record(args.out, base_dir, args.budget, args.processes)
    return base_dir


def case_runs(report: dict, truth: dict[str, float] | None = None) -> list[dict]:
    """Per case run: the verdict, what settled it, the verdict against the stored number
    alone, and whether each interval holds ``truth`` (percent; 0 for unchanged code)."""
    rows = []
    for r in report["results"]:
        t = 0.0 if truth is None else truth.get(r["case"])
        row = {
            "case": r["case"],
            "verdict": r["verdict"],
            "settled_by": r.get("settled_by"),
            "stored_verdict": r.get("stored_verdict"),
            "interval": r.get("change_interval_pct"),
            "stored_interval": r.get("stored_change_interval_pct"),
            "truth": t,
            "median_ms": r["median_ms"],
        }
        for key in ("interval", "stored_interval"):
            iv = row[key]
            row[key + "_covers"] = None if iv is None or t is None else iv[0] <= t <= iv[1]
        rows.append(row)
    return rows


def coverage(rows: list[dict], key: str) -> str:
    seen = [r[key] for r in rows if r[key] is not None]
    return f"{sum(seen)}/{len(seen)}" if seen else "-"


def false_alarms(args: argparse.Namespace) -> dict:
    out = args.out
    base_dir = baseline_dir(args)
    gate_verdicts, walls, gate_walls, halfwidths = [], [], [], {}
    rows: list[dict] = []
    naive_base = naive_run(out, "naive-base")
    naive_verdicts = []
    result: dict = {}
    for i in range(args.runs):
        if walls and time.perf_counter() - START + 1.15 * max(walls) > args.deadline_s:
            print(f"# stopping after {i} runs: the deadline is near", flush=True)
            break
        t0 = time.perf_counter()
        report, wall = gate_run(out, f"run{i}", base_dir, args.budget, wrap=args.wrap)
        gate_walls.append(wall)
        rows += case_runs(report)
        for r in report["results"]:
            gate_verdicts.append(r["verdict"])
            halfwidths.setdefault(r["case"], []).append(
                100 * (r["ci_ms"][1] - r["ci_ms"][0]) / 2 / r["median_ms"]
            )
        naive = naive_run(out, f"naive{i}")
        naive_verdicts += [naive_verdict(naive[c], naive_base[c]) for c in naive]
        walls.append(time.perf_counter() - t0)
        result = {
            "gate": _tally(gate_verdicts),
            "naive": _tally(naive_verdicts),
            "gate_walls": gate_walls,
            "halfwidths": halfwidths,
            "case_runs": len(gate_verdicts),
            "runs": len(walls),
            "rows": rows,
            "stored": _tally([r["stored_verdict"] for r in rows if r["stored_verdict"]]),
            "settled_by": _tally([r["settled_by"] for r in rows if r["settled_by"]]),
            "covers": coverage(rows, "interval_covers"),
            "stored_covers": coverage(rows, "stored_interval_covers"),
        }
        # Written after every run: a device call cut off at its limit keeps what it measured.
        (out / "false_alarms.json").write_text(json.dumps(result, indent=1))
    return result


def power(args: argparse.Namespace) -> dict:
    out = args.out
    base_dir = baseline_dir(args)
    naive_base = {} if args.no_naive else naive_run(out, "naive-base")
    slowdowns = [float(x) for x in args.slowdowns.split(",") if x]
    if args.host_us:
        slowdowns.append(-args.host_us)  # a negative entry stands for host work, in us
    result = {s: {"gate": {}, "naive": {}, "achieved": [], "rows": []} for s in slowdowns}
    gate_v: dict[float, list[str]] = {s: [] for s in slowdowns}
    naive_v: dict[float, list[str]] = {s: [] for s in slowdowns}
    # Slowdowns interleaved, so a deadline leaves each with as many runs as the others.
    for i in range(args.runs):
        for s in slowdowns:
            if time.perf_counter() - START > args.deadline_s:
                print("# stopping: the deadline is near", flush=True)
                return result
            host = -s if s < 0 else 0.0
            tag = f"host{host:g}-{i}" if host else f"slow{s:g}-{i}"
            report, _ = gate_run(
                out, tag, base_dir, args.budget, slowdown=max(s, 0.0), host_us=host
            )
            gate_v[s] += [r["verdict"] for r in report["results"]]
            inject = out / f"{tag}.inject.json"
            truth = None
            if inject.exists():
                achieved = json.loads(inject.read_text())
                result[s]["achieved"] += [v["achieved"] for v in achieved.values()]
                truth = achieved_by_case(achieved)
            rows = case_runs(report, truth if not host else {})
            slowed = injected_cases(inject) if not host else {r["case"] for r in rows}
            result[s]["rows"] += [dict(r, slowed=r["case"] in slowed) for r in rows]
            if not args.no_naive:
                naive = naive_run(out, f"naive-{tag}", slowdown=max(s, 0.0))
                naive_v[s] += [naive_verdict(naive[c], naive_base[c]) for c in naive]
            result[s]["gate"] = _tally(gate_v[s])
            result[s]["naive"] = _tally(naive_v[s])
            (out / "power.json").write_text(json.dumps(result, indent=1))
    return result


def _inject_key(c) -> str:
    """A case's key in an injection report: its input and weight shapes, as
    ``bench.inject_slowdown`` writes them."""
    return f"{(c.n, c.ic, *c.input)} {(c.oc, c.ic, *c.kernel)}"


def achieved_by_case(achieved: dict) -> dict[str, float]:
    """Case name -> the slowdown the delay achieved, in percent (do_bench medians)."""
    from pytest_conv3d_perf.cases import builtin_cases

    out = {}
    for c in builtin_cases():
        key = _inject_key(c)
        if key in achieved and achieved[key]["cycles"] > 0:
            out[c.name] = 100 * achieved[key]["achieved"]
    return out


def injected_cases(inject_report: Path) -> set[str]:
    """Cases the delay kernel really slowed: where even the shortest delay launch costs
    more than the target fraction (kernels of tens of microseconds), nothing was added."""
    from pytest_conv3d_perf.cases import builtin_cases

    data = json.loads(inject_report.read_text()) if inject_report.exists() else {}
    names: dict[str, list[str]] = {}
    for c in builtin_cases():
        x = str((c.n, c.ic, *c.input))
        # Reports before the weight shape was in the key named the input shape alone
        # (kb54 and kb60 share one); a shared key stands for every case it names.
        names.setdefault(_inject_key(c), []).append(c.name)
        names.setdefault(x, []).append(c.name)
    return {n for k, v in data.items() if v["cycles"] > 0 for n in names.get(k, [])}


def reassess(args: argparse.Namespace) -> dict:
    """Re-decide the saved runs in --out with the current rules, from each case run's
    last measurement against --baseline-dir (no confirmation measurement: a change counts
    on one measurement, which flags at least as often as the gate does). Power runs count
    only the case runs that were really slowed; false-alarm runs (run*.json) count all."""
    from pytest_conv3d_perf.baseline import entries_in_report, parse
    from pytest_conv3d_perf.verdict import Thresholds, assess

    base_file = next(args.baseline_dir.glob("*.json"))
    base = parse(base_file, base_file.read_text())
    result: dict = {}
    reports = sorted(args.out.glob("run*.json")) + sorted(args.out.glob("slow*-*.json"))
    for report in reports:
        if report.name.endswith(".inject.json"):
            continue
        if report.name.startswith("run"):
            slowdown, injected = "0", {r["case"] for r in json.loads(report.read_text())["results"]}
        else:
            slowdown = report.name.split("-")[0].removeprefix("slow")
            injected = injected_cases(report.with_suffix(".inject.json"))
        saved = {r["case"]: r for r in json.loads(report.read_text())["results"]}
        row = result.setdefault(
            slowdown, {"recorded": [], "now": [], "naive": [], "not_injected": []}
        )
        tag = report.stem
        naive_tag = f"naive{tag[3:]}" if tag.startswith("run") else f"naive-{tag}"
        naive = json.loads((args.out / f"{naive_tag}.naive.json").read_text())
        naive_base = json.loads((args.out / "naive-base.naive.json").read_text())
        for case, entry in entries_in_report(report).items():
            if case not in injected:
                row["not_injected"].append(case)
                continue
            pct = saved[case]["thresholds_pct"]
            thresholds = Thresholds(pct["fail"], pct["warn"])
            verdict = assess(entry.timing(), base[case].timing(), thresholds).verdict.value
            row["recorded"].append(saved[case]["verdict"])
            row["now"].append(verdict)
            row["naive"].append(naive_verdict(naive[case], naive_base[case]))
    return result


def _flagged(tally: dict[str, int]) -> int:
    return tally.get("regression", 0) + tally.get("warning", 0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("phase", choices=["false-alarms", "power", "reassess", "naive-child"])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--budget", type=float, default=3.0, help="--conv3d-budget per case")
    ap.add_argument("--slowdowns", default="0.02,0.05")
    ap.add_argument(
        "--host-us", type=float, default=0.0, help="power: also a run with this much host work"
    )
    ap.add_argument(
        "--wrap",
        action="store_true",
        help="false-alarms: wrap the kernel without slowing it (changed code, same speed), "
        "so every verdict not `unchanged` is settled by the A/B against the recorded kernel",
    )
    ap.add_argument(
        "--no-naive",
        action="store_true",
        help="power: skip the naive do_bench runs (saves about a third of the device time)",
    )
    ap.add_argument("--processes", type=int, default=3, help="update-baselines --processes")
    ap.add_argument(
        "--baseline-dir",
        type=Path,
        help="use this baseline directory (written by update-baselines with the same code) "
        "instead of recording one first",
    )
    ap.add_argument("--out", type=Path, default=Path("gate-quality"))
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--deadline-s",
        type=float,
        default=1e9,
        help="start no new run after this many seconds (device calls are capped)",
    )
    args = ap.parse_args(argv)
    if args.phase == "naive-child":
        naive_child(args.json)
        return 0
    if args.phase == "reassess":
        if not args.baseline_dir:
            ap.error("reassess needs --baseline-dir (the baseline the runs were judged against)")
        for slowdown, row in reassess(args).items():
            n = len(row["now"])
            what = "unchanged code" if slowdown == "0" else "really slowed"
            print(f"slowdown {100 * float(slowdown):g}%: {n} case runs, {what}")
            for label, key in (
                ("as recorded ", "recorded"),
                ("current rule", "now"),
                ("naive       ", "naive"),
            ):
                tally = _tally(row[key])
                print(f"  {label}: {tally}, flagged {_flagged(tally)}/{n}")
            print(f"  not slowed (no delay fits): {_tally(row['not_injected'])}")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    if args.phase == "false-alarms":
        r = false_alarms(args)
        print(
            f"\nfalse alarms: {r['runs']} fresh runs x {r['case_runs'] // max(r['runs'], 1)} cases "
            f"= {r['case_runs']} case runs, unchanged code"
        )
        print(f"  gate : {r['gate']}")
        print(f"  against the stored number alone: {r['stored']}; settled by {r['settled_by']}")
        print(
            f"  intervals holding the truth (0): deciding {r['covers']}, "
            f"against the stored number {r['stored_covers']}"
        )
        print(f"  naive: {r['naive']} (one do_bench median, fail 2%, warn 1%)")
        walls = sorted(r["gate_walls"])
        print(
            f"  wall time of a whole --conv3d-perf run: median {walls[len(walls) // 2]:.0f} s,"
            f" max {walls[-1]:.0f} s"
        )
        print("  interval half-width reached per case (median over runs, %):")
        for case, hw in sorted(r["halfwidths"].items()):
            print(f"    {case:20s} {sorted(hw)[len(hw) // 2]:.3f}")
    else:
        r = power(args)
        print(f"\npower: {args.runs} fresh runs per slowdown")
        print(
            f"{'slowdown':>9s} {'achieved (median)':>18s} {'gate flagged':>14s} "
            f"{'gate regression':>16s} {'naive flagged':>14s} {'naive regression':>17s}"
        )
        for s, v in r.items():
            n = sum(v["gate"].values())
            nn = sum(v["naive"].values())
            ach = sorted(v["achieved"])
            med = f"{100 * ach[len(ach) // 2]:.2f}%" if ach else "?"
            print(
                (f"{-s:7.0f}us" if s < 0 else f"{100 * s:8.0f}%")
                + f" {med:>18s} {_flagged(v['gate']):>8d}/{n:<5d} "
                f"{v['gate'].get('regression', 0):>10d}/{n:<5d} {_flagged(v['naive']):>8d}/{nn:<5d}"
                f" {v['naive'].get('regression', 0):>11d}/{nn:<5d}"
            )
            print(f"{'':9s} gate verdicts {v['gate']}; naive {v['naive']}")
            slowed = [row for row in v["rows"] if row["slowed"]]
            print(
                f"{'':9s} slowed case runs {len(slowed)}: "
                f"{_tally([row['verdict'] for row in slowed])}; settled by "
                f"{_tally([str(row['settled_by']) for row in slowed])}; deciding interval holds "
                f"the achieved slowdown {coverage(slowed, 'interval_covers')}"
            )
        for line in target_lines(r):
            print(line)
    return 0


# Issue 12's targets: (slowdown, smallest case in ms, what counts, share needed).
TARGETS = (
    (0.05, 0.0, "regression", 1.0),
    (0.02, 0.05, "regression", 0.95),
    (0.01, 0.2, "flagged", 0.8),
)


def target_lines(result: dict) -> list[str]:
    """One line per target of issue 12 that the power runs cover, over the case runs the
    injection really slowed and that had a baseline (a `new` run is not a decision), and
    one more per target judged by the gate's own A/B: over the case runs whose A/B interval
    is centred at or above the slowdown, so a harness that slowed a case by less (or more)
    than it meant to does not count against the gate."""
    lines = []
    for slowdown, min_ms, what, share in TARGETS:
        rows = [
            row
            for row in result.get(slowdown, {}).get("rows", [])
            if row["slowed"] and row["median_ms"] >= min_ms and row["verdict"] != "new"
        ]
        if not rows:
            continue
        wanted = ("regression",) if what == "regression" else ("regression", "warning")
        hit = sum(row["verdict"] in wanted for row in rows)
        achieved = sorted(row["truth"] for row in rows if row["truth"] is not None)
        span = f"{achieved[0]:.2f}..{achieved[-1]:.2f}%" if achieved else "?"
        head = f"target: {100 * slowdown:g}% on cases >= {1000 * min_ms:g} us {what} in "
        lines.append(
            f"{head}>= {100 * share:.0f}%: {hit}/{len(rows)} ({100 * hit / len(rows):.0f}%, "
            f"achieved {span}) {'met' if hit >= share * len(rows) else 'NOT met'}"
        )
        measured = [
            row
            for row in rows
            if row["interval"] is not None and sum(row["interval"]) / 2 >= 100 * slowdown
        ]
        if measured:
            hit = sum(row["verdict"] in wanted for row in measured)
            lines.append(
                f"  judged by the A/B (runs it measured at >= {100 * slowdown:g}%): "
                f"{hit}/{len(measured)} {'met' if hit >= share * len(measured) else 'NOT met'}"
            )
    return lines


if __name__ == "__main__":
    sys.exit(main())
