"""One timed case's outcome: what was measured, what it was compared with, the verdict."""

from __future__ import annotations

from dataclasses import dataclass

from pytest_conv3d_perf.baseline import BaselineEntry
from pytest_conv3d_perf.measure import Measurement
from pytest_conv3d_perf.stats import Change
from pytest_conv3d_perf.verdict import Thresholds, Verdict


@dataclass
class CaseResult:
    name: str
    nodeid: str
    verdict: Verdict
    measurement: Measurement
    thresholds: Thresholds
    entry: BaselineEntry  # what the baseline would store for this run
    baseline: BaselineEntry | None = None
    change: Change | None = None
    drift: Change | None = None
    reasons: tuple[str, ...] = ()
    flop: int | None = None
    measurements: int = 1
    fails: bool = False

    @property
    def ms(self) -> float:
        return self.measurement.kernel.median

    @property
    def halfwidth_pct(self) -> float:
        return 100 * self.measurement.kernel.rel_halfwidth

    @property
    def tflops(self) -> float | None:
        return self.flop / self.ms / 1e9 if self.flop else None

    @property
    def speedup_vs_reference(self) -> float | None:
        ref = self.measurement.reference
        return ref.median / self.ms if ref else None
