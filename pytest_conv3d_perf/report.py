"""Presenting results: the terminal table, JSON (ours, pytest-benchmark's layout,
github-action-benchmark's), and Markdown for a job summary or a pull-request comment."""

from __future__ import annotations

import html
import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_conv3d_perf.baseline import Action
from pytest_conv3d_perf.gate import CaseResult
from pytest_conv3d_perf.verdict import Verdict

REPORT_SCHEMA = 1
_MARKS = {
    Verdict.REGRESSION: "❌",
    Verdict.UNSTABLE: "❔",
    Verdict.WARNING: "⚠️",
    Verdict.NEW: "🆕",
    Verdict.IMPROVEMENT: "🚀",
    Verdict.UNCHANGED: "✅",
}


def ordered(results: Sequence[CaseResult]) -> list[CaseResult]:
    """Verdicts first, worst on top, then by name."""
    return sorted(results, key=lambda r: (r.verdict.severity, r.name))


def _change(r: CaseResult) -> str:
    if r.change is None:
        return "-"
    return f"{r.change.pct:+.2f}% [{r.change.low_pct:+.2f}, {r.change.high_pct:+.2f}]"


def _opt(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _call_change(r: CaseResult) -> str:
    c = r.call_change
    return "-" if c is None else f"{c.pct:+.2f}% [{c.low_pct:+.2f}, {c.high_pct:+.2f}]"


def compared_ms(r: CaseResult) -> float | None:
    """What the change is against: the other side's time in an A/B, else the stored one."""
    if r.other is not None:
        return r.other.median
    return r.baseline.median_ms if r.baseline else None


_BY = {"ab": "A/B", "stored": "stored", "repeat": "stored x2+"}


def rows(results: Sequence[CaseResult]) -> list[list[str]]:
    out = []
    for r in ordered(results):
        out.append(
            [
                r.name,
                f"{r.ms:.4f}",
                f"±{r.halfwidth_pct:.2f}%",
                _opt(compared_ms(r), ".4f"),
                _change(r),
                _opt(r.call_ms, ".4f"),
                _call_change(r),
                r.verdict.value,
                _BY.get(r.settled_by, r.settled_by) if r.change is not None else "-",
                _opt(r.tflops, ".1f"),
                _opt(r.speedup_vs_reference, ".2f") + ("x" if r.speedup_vs_reference else ""),
            ]
        )
    return out


HEADER = [
    "case",
    "ms",
    "interval",
    "base ms",
    "change [95% interval]",
    "call ms",
    "call change",
    "verdict",
    "by",
    "TFLOP/s",
    "vs PyTorch",
]


def context_lines(meta: dict[str, Any], results: Sequence[CaseResult] = ()) -> list[str]:
    """What every verdict of the run was measured against, in words."""
    lines = []
    own: dict[tuple[float, float], list[str]] = {}
    for r in ordered(results):
        pair = (r.thresholds.fail_pct, r.thresholds.warn_pct)
        if pair != (meta.get("fail_pct"), meta.get("warn_pct")):
            own.setdefault(pair, []).append(r.name)
    for (fail, warn), names in own.items():
        lines.append(
            f"{', '.join(names)}: fail above {fail:g}%, warn above {warn:g}% (the case's "
            "own thresholds)."
        )
    if meta.get("against"):
        lines.append(
            f"Each case is an A/B of this code against {meta['against']}, interleaved in one "
            "process (`by`: A/B); `base ms` is that kernel's time in the A/B."
        )
    if meta.get("baseline_file") and not meta.get("baseline_exists", True):
        lines.append(
            f"No stored baseline for this GPU model ({meta['baseline_file']}): record one "
            "with `conv3d-perf update-baselines` on this GPU."
        )
    return lines


def text_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """A plain aligned table; written here since the six columns need nothing a table
    library would add, and the plugin keeps its dependencies short."""
    widths = [max(len(str(row[i])) for row in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in body]
    return "\n".join(lines)


def counts(results: Sequence[CaseResult]) -> dict[str, int]:
    tally = {v.value: 0 for v in Verdict}
    for r in results:
        tally[r.verdict.value] += 1
    return {k: v for k, v in tally.items() if v}


def headline(results: Sequence[CaseResult]) -> str:
    failing = [r.name for r in ordered(results) if r.fails]
    tally = ", ".join(f"{n} {k}" for k, n in counts(results).items())
    if failing:
        return f"conv3d-perf: FAILED ({tally}): {', '.join(failing)}"
    return f"conv3d-perf: passed ({tally})"


def progress_line(r: CaseResult) -> str:
    base = f" vs {r.baseline.median_ms:.4f}" if r.baseline else ""
    change = f" {r.change.pct:+.2f}%" if r.change else ""
    extra = f"; {'; '.join(r.reasons)}" if r.reasons else ""
    call = ""
    if r.call_ms is not None:
        moved = f" {r.call_change.pct:+.2f}%" if r.call_change else ""
        call = f", call {r.call_ms:.4f} ms{moved}"
    return (
        f"conv3d-perf {r.name}: {r.ms:.4f} ms ±{r.halfwidth_pct:.2f}%{base}{change}{call} -> "
        f"{r.verdict.value} [{r.measurement.kernel.n} samples, {r.measurements} "
        f"measurement(s), {r.measurement.elapsed_s:.1f} s]{extra}"
    )


def actions_table(actions: Sequence[Action]) -> str:
    body = [[a.case, a.action, _opt(a.old_ms, ".4f"), f"{a.new_ms:.4f}", a.reason] for a in actions]
    return text_table(["case", "action", "old ms", "new ms", "why"], body)


def result_dict(r: CaseResult) -> dict[str, Any]:
    m = r.measurement
    return {
        "case": r.name,
        "nodeid": r.nodeid,
        "verdict": r.verdict.value,
        "fails": r.fails,
        "median_ms": m.kernel.median,
        "ci_ms": [m.kernel.low, m.kernel.high],
        "samples": m.kernel.n,
        "measurements": r.measurements,
        "baseline_ms": r.baseline.median_ms if r.baseline else None,
        "change_pct": r.change.pct if r.change else None,
        "change_interval_pct": [r.change.low_pct, r.change.high_pct] if r.change else None,
        # change_* is what decided: the A/B against another revision's kernel where
        # settled_by is "ab" (``against`` names it, other_ms is its time in that A/B, and
        # reference_drift_pct its move against the stored time, the machine's);
        # stored_* is against the stored number alone.
        "settled_by": r.settled_by,
        "against": r.against or None,
        "other_ms": r.other.median if r.other else None,
        "stored_verdict": r.stored_verdict.value if r.stored_verdict else None,
        "stored_change_pct": r.stored_change.pct if r.stored_change else None,
        "stored_change_interval_pct": (
            [r.stored_change.low_pct, r.stored_change.high_pct] if r.stored_change else None
        ),
        "reference_ms": m.reference.median if m.reference else None,
        "reference_drift_pct": r.drift.pct if r.drift else None,
        "call_ms": r.call_ms,
        "call_ci_ms": [m.call.low, m.call.high] if m.call else None,
        "baseline_call_ms": r.baseline.call_ms if r.baseline else None,
        "call_change_pct": r.call_change.pct if r.call_change else None,
        "call_change_interval_pct": (
            [r.call_change.low_pct, r.call_change.high_pct] if r.call_change else None
        ),
        "reference_call_ms": m.ref_call.median if m.ref_call else None,
        "speedup_vs_reference": r.speedup_vs_reference,
        "tflops": r.tflops,
        "sm_mhz": m.sm_mhz,
        "throttle": list(m.throttle),
        "l2": m.l2,
        "elapsed_s": m.elapsed_s,
        "diagnostics": m.diagnostics,
        "thresholds_pct": {"fail": r.thresholds.fail_pct, "warn": r.thresholds.warn_pct},
        "reasons": list(r.reasons),
        "autotune": r.entry.autotune,
        "kernel_hash": r.entry.kernel_hash,
        "baseline_entry": r.entry.to_dict(),
    }


def to_json(results: Sequence[CaseResult], meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": REPORT_SCHEMA,
        **meta,
        "summary": counts(results),
        "failed": [r.name for r in ordered(results) if r.fails],
        "results": [result_dict(r) for r in ordered(results)],
    }


def _pb_stats(samples_ms: Sequence[float]) -> dict[str, Any]:
    """pytest-benchmark's own statistics of the samples (in seconds), raw data included."""
    from pytest_benchmark.stats import Stats

    stats = Stats()
    for ms in samples_ms:
        stats.update(ms / 1e3)
    return {**stats.as_dict(), "data": list(stats.data), "iterations": 1}


def to_pytest_benchmark(results: Sequence[CaseResult], meta: dict[str, Any]) -> dict[str, Any]:
    """pytest-benchmark's saved-run JSON, made with its own Stats, machine and commit info
    and version, so `pytest-benchmark compare` and github-action-benchmark read it."""
    import pytest_benchmark
    from pytest_benchmark.plugin import pytest_benchmark_generate_machine_info
    from pytest_benchmark.utils import get_commit_info

    env = meta.get("environment", {})
    machine = pytest_benchmark_generate_machine_info()
    machine["gpu"] = env
    return {
        "machine_info": machine,
        "commit_info": get_commit_info(),
        "benchmarks": [
            {
                "group": "conv3d",
                "name": r.name,
                "fullname": r.nodeid,
                "params": None,
                "param": None,
                "extra_info": {
                    "verdict": r.verdict.value,
                    "change_pct": r.change.pct if r.change else None,
                    "tflops": r.tflops,
                },
                "options": {
                    "timer": "cuda events",
                    "l2": r.measurement.l2,
                    "disable_gc": False,
                    "min_rounds": 0,
                    "max_time": 0,
                    "min_time": 0,
                    "warmup": True,
                },
                "stats": _pb_stats(r.measurement.samples),
            }
            for r in ordered(results)
            if r.measurement.samples
        ],
        "datetime": env.get("date", ""),
        "version": pytest_benchmark.__version__,
    }


def save_to_benchmark_storage(doc: dict[str, Any], storage: Path, name: str) -> Path:
    """Into pytest-benchmark's own storage (``<storage>/<machine id>/NNNN_<name>.json``),
    through its FileStorage, so `pytest-benchmark list` and `compare 0001 0002` find it."""
    import logging

    from pytest_benchmark.storage.file import FileStorage
    from pytest_benchmark.utils import get_machine_id

    store = FileStorage(storage, logging.getLogger("conv3d-perf"), get_machine_id())
    before = set(store.query())
    store.save(doc, name)
    return next(iter(set(store.query()) - before))


def to_gab(results: Sequence[CaseResult]) -> list[dict[str, Any]]:
    """github-action-benchmark's customSmallerIsBetter input: each case's device time,
    and its call time as a series of its own."""
    out = []
    for r in ordered(results):
        out.append(
            {
                "name": r.name,
                "unit": "ms",
                "value": round(r.ms, 6),
                "range": f"±{r.halfwidth_pct:.2f}%",
                "extra": f"verdict: {r.verdict.value}; samples: {r.measurement.kernel.n}",
            }
        )
        if r.measurement.call is not None:
            call = r.measurement.call
            out.append(
                {
                    "name": f"{r.name} (call)",
                    "unit": "ms",
                    "value": round(call.median, 6),
                    "range": f"±{100 * call.rel_halfwidth:.2f}%",
                    "extra": "per call in a caller's loop, host work included",
                }
            )
    return out


def _md(text: str) -> str:
    return html.escape(text).replace("|", "\\|")


def mermaid_chart(results: Sequence[CaseResult]) -> str:
    """Each case's change with its interval against the warn and fail thresholds."""
    shown = [r for r in ordered(results) if r.change is not None]
    if not shown:
        return ""
    # The lines of the thresholds most cases run on (the rest are named in the summary).
    pairs = Counter((r.thresholds.fail_pct, r.thresholds.warn_pct) for r in shown)
    fail, warn = pairs.most_common(1)[0][0]
    top = max(
        [fail * 1.5]
        + [abs(r.change.high_pct) for r in shown]
        + [abs(r.change.low_pct) for r in shown]
    )
    names = ", ".join(f'"{r.name}"' for r in shown)
    lines = [
        "```mermaid",
        "xychart-beta",
        f'    title "Change vs baseline, % (fail {fail:g}, warn {warn:g})"',
        f"    x-axis [{names}]",
        f'    y-axis "change %" {-top:.1f} --> {top:.1f}',
        "    bar [" + ", ".join(f"{r.change.high_pct:.2f}" for r in shown) + "]",
        "    bar [" + ", ".join(f"{r.change.low_pct:.2f}" for r in shown) + "]",
        "    line [" + ", ".join(f"{r.change.pct:.2f}" for r in shown) + "]",
        "    line [" + ", ".join(f"{fail:g}" for _ in shown) + "]",
        "    line [" + ", ".join(f"{warn:g}" for _ in shown) + "]",
        "```",
        "Bars: the 95% interval's upper and lower ends; lines: the change, the fail and the "
        "warn thresholds.",
    ]
    return "\n".join(lines)


def markdown(
    results: Sequence[CaseResult], meta: dict[str, Any], actions: Sequence[Action] = ()
) -> str:
    env = meta.get("environment", {})
    head = headline(results)
    lines = [f"## {'❌' if any(r.fails for r in results) else '✅'} {_md(head)}", ""]
    lines.append(
        f"GPU **{_md(str(env.get('gpu', '?')))}**, torch {_md(str(env.get('torch', '?')))}, "
        f"Triton {_md(str(env.get('triton', '?')))}; L2 {_md(str(meta.get('l2', '?')))}; "
        f"fail above {meta.get('fail_pct', '?')}%, warn above {meta.get('warn_pct', '?')}%."
    )
    lines += ["", *(_md(line) for line in context_lines(meta, results))]
    lines += [
        "",
        "| | case | ms | base ms | change [95% interval] | call ms | call change | verdict "
        "| by | TFLOP/s | vs PyTorch |",
        "|---|---|---:|---:|---|---:|---|---|---|---:|---:|",
    ]
    for r, row in zip(ordered(results), rows(results)):
        lines.append(
            f"| {_MARKS[r.verdict]} | {_md(row[0])} | {row[1]} {row[2]} | {row[3]} | "
            f"{_md(row[4])} | {row[5]} | {_md(row[6])} | **{row[7]}** | {row[8]} | {row[9]} "
            f"| {row[10]} |"
        )
    notes = [(r.name, reason) for r in ordered(results) for reason in r.reasons]
    if notes:
        lines += ["", "<details><summary>Why</summary>", ""]
        lines += [f"- **{_md(n)}**: {_md(t)}" for n, t in notes]
        lines += ["", "</details>"]
    chart = mermaid_chart(results)
    if chart:
        lines += ["", chart]
    if any(r.verdict is Verdict.IMPROVEMENT for r in results):
        lines += [
            "",
            "Faster beyond the threshold: consider updating the baseline "
            "(the baseline-update workflow, or `conv3d-perf update-baselines`).",
        ]
    if actions:
        lines += ["", "### Baseline update", "", "```", actions_table(actions), "```"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class ReportFiles:
    """Where a run's reports go; None: not asked for."""

    json_path: Path | None = None
    benchmark_json_path: Path | None = None
    gab_json_path: Path | None = None
    markdown_path: Path | None = None
    benchmark_storage: Path | None = None
    benchmark_save: str | None = None


def write_reports(
    results: Sequence[CaseResult],
    meta: dict[str, Any],
    actions: Sequence[Action],
    files: ReportFiles,
) -> list[Path]:
    """Write every report asked for, and the Markdown into $GITHUB_STEP_SUMMARY when set.
    The github-action-benchmark file is written even when nothing was timed, so the
    action's step that reads it finds a file."""
    written: list[Path] = []

    def write(path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)

    if files.gab_json_path is not None:
        write(files.gab_json_path, json.dumps(to_gab(results), indent=2) + "\n")
    if not results:
        return written
    if files.json_path is not None:
        write(files.json_path, json.dumps(to_json(results, meta), indent=2) + "\n")
    pb = None
    if files.benchmark_json_path is not None or files.benchmark_save:
        pb = to_pytest_benchmark(results, meta)
    if files.benchmark_json_path is not None and pb is not None:
        write(files.benchmark_json_path, json.dumps(pb, indent=2) + "\n")
    if files.benchmark_save and pb is not None and files.benchmark_storage is not None:
        written.append(save_to_benchmark_storage(pb, files.benchmark_storage, files.benchmark_save))
    md = markdown(results, meta, actions)
    if files.markdown_path is not None:
        write(files.markdown_path, md)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a") as fh:
            fh.write(md)
    return written
