"""What one pytest run holds: settings, the device, the case suite and the perf results."""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_conv3d_perf import report
from pytest_conv3d_perf.baseline import (
    Action,
    BaselineEntry,
    BaselineStore,
    Measured,
    entries_in_report,
    halfwidth_pct,
    median_process,
)
from pytest_conv3d_perf.cases import Conv3dCase, case_from_mapping, load_suite, select
from pytest_conv3d_perf.environment import autotune_config, git_commit, now_utc, source_hash
from pytest_conv3d_perf.gate import run_gate
from pytest_conv3d_perf.measure import Plan
from pytest_conv3d_perf.result import CaseResult
from pytest_conv3d_perf.runtime import Runtime, select_runtime
from pytest_conv3d_perf.settings import Settings, parse_percent
from pytest_conv3d_perf.timer import Timer
from pytest_conv3d_perf.verdict import Thresholds, Verdict, fails_run


@dataclass
class Conv3dSession:
    settings: Settings
    runtime: Runtime
    scaled: bool
    cases: list[Conv3dCase]
    rootdir: Path
    suite: dict[str, Conv3dCase] = field(default_factory=dict)
    timer: Timer | None = None
    device_info: dict[str, Any] = field(default_factory=dict)
    store: BaselineStore | None = None
    baselines: dict[str, BaselineEntry] = field(default_factory=dict)
    results: list[CaseResult] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    # An xdist controller: its workers time (one per GPU) and it writes the merged report.
    merging: bool = False
    worker_baselines: set[Path] = field(default_factory=set)

    @classmethod
    def start(cls, settings: Settings, rootdir: Path) -> Conv3dSession:
        # A CI GPU runner passes --conv3d-require-gpu so a missing GPU fails, never skips.
        runtime = select_runtime("cuda" if settings.require_gpu else settings.device)
        scaled = settings.size == "small" or (settings.size == "auto" and runtime.interpreter)
        suite = load_suite(rootdir, settings.case_files)
        chosen = select(suite, settings.case_names)
        return cls(
            settings=settings,
            runtime=runtime,
            scaled=scaled,
            cases=[c.scaled() if scaled else c for c in chosen],
            rootdir=rootdir,
            suite={c.name: c for c in suite},
        )

    def enable_timing(self, timer: Timer | None, device_info: dict[str, Any] | None) -> None:
        """Load this GPU's baselines up front, so a bad file stops the run before any work."""
        if timer is None or not device_info:
            return
        self.timer = timer
        self.device_info = {**device_info, "commit": git_commit(self.rootdir)}
        self.store = BaselineStore(self.settings.baseline_dir, str(device_info["gpu"]))
        self.baselines = self.store.load()

    @property
    def timing(self) -> bool:
        return self.settings.perf and self.timer is not None

    @property
    def device(self) -> Any:
        import torch

        return torch.device(self.runtime.device)

    def header(self) -> list[str]:
        sizes = "scaled-down cases" if self.scaled else "full-size cases"
        lines = [f"conv3d-perf: {self.runtime.describe()}, {sizes}, {len(self.cases)} cases"]
        if self.timing and self.store:
            known = "" if self.store.exists() else " (no file yet: every case is new)"
            lines.append(
                f"conv3d-perf: timing on; baseline {self.store.path}{known}; fail above "
                f"{self.settings.fail_pct:g}%, warn above {self.settings.warn_pct:g}%, "
                f"L2 {self.settings.l2}"
            )
        elif self.merging:
            lines.append(
                "conv3d-perf: timing in the xdist workers, one per GPU; one report merges them"
            )
        elif self.settings.perf:
            lines.append("conv3d-perf: timing skipped: no CUDA GPU is visible")
        return lines

    def resolve_case(self, case: Conv3dCase | str | Mapping[str, Any]) -> Conv3dCase:
        """A suite case by name (scaled like the run), a user's own table, or a case."""
        if isinstance(case, Conv3dCase):
            return case
        if isinstance(case, str):
            found = select(list(self.suite.values()), [case])[0]
            return found.scaled() if self.scaled else found
        return case_from_mapping(case)

    def thresholds(self, case: Conv3dCase | None, marker: Mapping[str, Any]) -> Thresholds:
        """Marker over case fields over the run's settings."""
        fail = (case and case.fail_threshold) or self.settings.fail_pct
        warn = (case and case.warn_threshold) or self.settings.warn_pct
        if marker.get("fail") is not None:
            fail = parse_percent(marker["fail"], "conv3d_perf marker, fail")
        if marker.get("warn") is not None:
            warn = parse_percent(marker["warn"], "conv3d_perf marker, warn")
        return Thresholds(fail, min(warn, fail))

    def gate(
        self,
        name: str,
        nodeid: str,
        call: Callable[[], object],
        reference: Callable[[], object] | None,
        fn: object,
        thresholds: Thresholds,
        flop: int | None = None,
        case: Conv3dCase | None = None,
    ) -> CaseResult | None:
        """Time ``call`` and decide; without timing, run it once as a smoke test."""
        if not self.timing:
            call()
            return None
        assert self.timer is not None
        base = self.baselines.get(name)
        plan = Plan(
            budget_s=self.settings.budget_s, target_halfwidth_pct=thresholds.target_halfwidth_pct
        )
        out = run_gate(self.timer, call, reference, base, thresholds, plan, self.settings.l2)
        m = out.measurement
        entry = BaselineEntry(
            median_ms=m.kernel.median,
            ci_low_ms=m.kernel.low,
            ci_high_ms=m.kernel.high,
            samples=m.kernel.n,
            l2=m.l2,
            reference_ms=m.reference.median if m.reference else None,
            reference_ci_ms=[m.reference.low, m.reference.high] if m.reference else None,
            sm_mhz=m.sm_mhz,
            kernel_hash=source_hash(fn),
            autotune=autotune_config(fn),
            case=case.to_dict() if case else None,
            environment={**self.device_info, "date": now_utc()},
        )
        result = CaseResult(
            name=name,
            nodeid=nodeid,
            verdict=out.verdict,
            measurement=m,
            thresholds=thresholds,
            entry=entry,
            baseline=base,
            change=out.assessment.change,
            drift=out.assessment.drift,
            reasons=out.assessment.reasons,
            flop=flop,
            measurements=out.measurements,
        )
        result.fails = not self.settings.update and fails_run(
            out.verdict,
            unstable_policy=self.settings.unstable_policy,
            new_policy=self.settings.new_policy,
        )
        self.results.append(result)
        return result

    @property
    def refused(self) -> list[Action]:
        return [a for a in self.actions if a.action == "refuse"]

    def worker_output(self) -> bytes:
        """What an xdist worker hands the controller. Pickled: both ends are this package,
        in the processes of one pytest run."""
        path = self.store.path if self.store else None
        return pickle.dumps((self.results, self.actions, self.device_info, path))

    def merge_worker(self, data: bytes) -> None:
        results, actions, device_info, path = pickle.loads(data)
        self.results.extend(results)
        self.actions.extend(actions)
        self.device_info = self.device_info or device_info
        if path is not None and results:
            self.worker_baselines.add(path)

    def finish(self, *, reports: bool = True) -> None:
        """Write the baselines (on purpose only) and, unless an xdist worker hands its
        results to the controller instead, the report files."""
        if not self.results:
            return
        if self.settings.update and self.store is not None:
            measured = self._measured_for_update()
            self.actions = self.store.update(
                measured,
                churn_pct=self.settings.warn_pct / 3,
                force=self.settings.force,
                requested=frozenset(self.settings.case_names),
                dry_run=self.settings.dry_run,
            )
        if not reports:
            return
        meta = self.meta()
        outputs: list[tuple[Path | None, Any]] = [
            (self.settings.json_path, lambda: report.to_json(self.results, meta)),
            (
                self.settings.benchmark_json_path,
                lambda: report.to_pytest_benchmark(self.results, meta),
            ),
            (self.settings.gab_json_path, lambda: report.to_gab(self.results)),
        ]
        for path, build in outputs:
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(build(), indent=2) + "\n")
                self.written.append(path)
        md = report.markdown(self.results, meta, self.actions)
        if self.settings.markdown_path is not None:
            self.settings.markdown_path.parent.mkdir(parents=True, exist_ok=True)
            self.settings.markdown_path.write_text(md)
            self.written.append(self.settings.markdown_path)
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary:
            with open(summary, "a") as fh:
                fh.write(md)

    def _measured_for_update(self) -> dict[str, Measured]:
        priors: dict[str, list[BaselineEntry]] = {}
        for path in self.settings.prior_json:
            for name, entry in entries_in_report(path).items():
                priors.setdefault(name, []).append(entry)
        measured = {}
        for r in self.results:
            candidates = [r.entry, *priors.get(r.name, [])]
            chosen = median_process(candidates, r.thresholds.max_halfwidth_pct)
            if chosen is None:
                measured[r.name] = Measured(r.entry, Verdict.UNSTABLE, None)
                continue
            change = None
            if r.baseline is not None:
                change = 100 * (chosen.median_ms / r.baseline.median_ms - 1)
            verdict = Verdict.NEW if r.verdict is Verdict.UNSTABLE else r.verdict
            measured[r.name] = Measured(chosen, verdict, change)
            if r.name in priors:
                r.reasons = (
                    *r.reasons,
                    f"stored the median of {len(candidates)} processes: "
                    f"{chosen.median_ms:.4f} ms ±{halfwidth_pct(chosen):.2f}%",
                )
        return measured

    def meta(self) -> dict[str, Any]:
        return {
            "environment": {**self.device_info, "date": now_utc()},
            "l2": self.settings.l2,
            "fail_pct": self.settings.fail_pct,
            "warn_pct": self.settings.warn_pct,
            "baseline_file": str(self.store.path) if self.store else None,
            "update": self.settings.update,
            "dry_run": self.settings.dry_run,
        }

    def annotations(self) -> list[str]:
        """GitHub Actions workflow commands for the cases that fail the run."""
        return [
            f"::error title=conv3d-perf {r.verdict.value}::{report.progress_line(r)}"
            for r in report.ordered(self.results)
            if r.fails
        ]

    def summary_lines(self) -> list[str]:
        if not self.results:
            if self.merging:
                return ["the xdist workers timed no case (is a CUDA GPU visible to them?)"]
            return []
        lines = [report.text_table(report.HEADER, report.rows(self.results)), ""]
        for r in report.ordered(self.results):
            for reason in r.reasons:
                lines.append(f"  {r.name}: {reason}")
        if any(r.verdict is Verdict.IMPROVEMENT for r in self.results):
            lines.append("Faster beyond the threshold: consider `conv3d-perf update-baselines`.")
        if self.actions:
            verb = "would change (dry run)" if self.settings.dry_run else "changed"
            n = sum(a.writes for a in self.actions)
            files = [self.store.path] if self.store else sorted(self.worker_baselines)
            lines += [
                "",
                f"baseline {', '.join(map(str, files))}: {n} entr{'y' if n == 1 else 'ies'} {verb}",
                report.actions_table(self.actions),
            ]
        lines += [
            f"{a.case}: not stored in the baseline: unstable measurement; rerun, or pass "
            "--conv3d-force"
            for a in self.refused
        ]
        lines += [f"wrote {p}" for p in self.written]
        lines.append(report.headline(self.results))
        return lines
