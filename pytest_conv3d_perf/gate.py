"""One case through the gate: measure, assess against the baseline, confirm a change by
measuring again, and say whether it fails the run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pytest_conv3d_perf.baseline import BaselineEntry
from pytest_conv3d_perf.measure import Measurement, Plan, measure
from pytest_conv3d_perf.timer import Timer
from pytest_conv3d_perf.verdict import (
    Assessment,
    Thresholds,
    Timing,
    Verdict,
    assess,
    confirm,
    needs_confirmation,
    needs_third,
)


def timing_of(m: Measurement) -> Timing:
    ref = m.reference
    return Timing(
        median_ms=m.kernel.median,
        halfwidth=m.kernel.rel_halfwidth,
        ref_median_ms=ref.median if ref else None,
        ref_halfwidth=ref.rel_halfwidth if ref else 0.0,
        sm_mhz=m.sm_mhz,
    )


@dataclass
class GateOutcome:
    verdict: Verdict
    measurement: Measurement
    assessment: Assessment
    measurements: int


def run_gate(
    timer: Timer,
    call: Callable[[], object],
    reference: Callable[[], object] | None,
    base: BaselineEntry | None,
    thresholds: Thresholds,
    plan: Plan,
    l2: str,
) -> GateOutcome:
    base_timing = base.timing() if base else None
    m1 = measure(timer, call, reference, plan, l2=l2)
    a1 = assess(timing_of(m1), base_timing, thresholds, throttle=m1.throttle)
    if base is None or not needs_confirmation(a1.verdict):
        return GateOutcome(a1.verdict, m1, a1, 1)
    # Interleaved with the reference again, in the same process: asv and nvbench's
    # robust comparison also re-measure before calling a change.
    m2 = measure(timer, call, reference, plan, l2=l2)
    a2 = assess(timing_of(m2), base_timing, thresholds, throttle=m2.throttle)
    steps = [a1, a2]
    if needs_third(a1.verdict, a2.verdict):
        m2 = measure(timer, call, reference, plan, l2=l2)
        steps.append(assess(timing_of(m2), base_timing, thresholds, throttle=m2.throttle))
    final = confirm(steps[-2].verdict, steps[-1].verdict)
    said = [
        f"{s.verdict.value} ({s.change.pct:+.2f}%)" if s.change else s.verdict.value for s in steps
    ]
    note = f"measurements said {', then '.join(said)}"
    last = steps[-1]
    a = Assessment(final, last.change, last.drift, (*last.reasons, note))
    return GateOutcome(final, m2, a, len(steps))
