"""One case through the gate: measure, assess against the baseline, confirm a change by
measuring again, and say whether the result fails the run."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from pytest_conv3d_perf import spread
from pytest_conv3d_perf.baseline import BaselineEntry
from pytest_conv3d_perf.measure import Measurement, Plan, measure
from pytest_conv3d_perf.recorded import Recorded
from pytest_conv3d_perf.stats import Change, Summary, relative_change
from pytest_conv3d_perf.timer import Timer
from pytest_conv3d_perf.verdict import (
    Assessment,
    Thresholds,
    Timing,
    Verdict,
    assess_with_call,
    combine_call,
    confirm,
    decide,
    fails_run,
    needs_third,
)


@dataclass
class CaseResult:
    """One timed case: what was measured, what it was compared with, the verdict."""

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
    call_change: Change | None = None
    # The verdict against the stored number alone, and what settled the final one:
    # "stored" (that verdict stands), "recorded" (an A/B against the recorded kernel),
    # "same-code" (the kernel's source is the recorded one) or "repeat" (measured again).
    stored_verdict: Verdict | None = None
    stored_change: Change | None = None
    settled_by: str = "stored"

    @property
    def ms(self) -> float:
        return self.measurement.kernel.median

    @property
    def halfwidth_pct(self) -> float:
        return 100 * self.measurement.kernel.rel_halfwidth

    @property
    def call_ms(self) -> float | None:
        return self.measurement.call.median if self.measurement.call else None

    @property
    def tflops(self) -> float | None:
        return self.flop / self.ms / 1e9 if self.flop else None

    @property
    def speedup_vs_reference(self) -> float | None:
        ref = self.measurement.reference
        return ref.median / self.ms if ref else None


@dataclass(frozen=True)
class FailPolicy:
    """What fails the run besides a regression (the --conv3d-unstable/-new options); an
    update measures to store, so nothing it measures fails it."""

    unstable: str = "pass"
    new: str = "pass"
    updating: bool = False

    def fails(self, verdict: Verdict) -> bool:
        return not self.updating and fails_run(
            verdict, unstable_policy=self.unstable, new_policy=self.new
        )


def timing_of(m: Measurement) -> Timing:
    ref = m.reference
    return Timing(
        median_ms=m.kernel.median,
        halfwidth=m.kernel.rel_halfwidth,
        ref_median_ms=ref.median if ref else None,
        ref_halfwidth=ref.rel_halfwidth if ref else 0.0,
        sm_mhz=m.sm_mhz,
        call_ms=m.call.median if m.call else None,
        call_halfwidth=m.call.rel_halfwidth if m.call else 0.0,
        process_sd=spread.device_sd(m.kernel.median),
        call_process_sd=spread.call_sd(m.call.median, m.kernel.median) if m.call else 0.0,
    )


@dataclass
class GateOutcome:
    verdict: Verdict
    measurement: Measurement
    assessment: Assessment
    measurements: int
    stored: Assessment | None = None  # against the stored number alone
    settled_by: str = "stored"


def run_gate(
    timer: Timer,
    call: Callable[[], object],
    reference: Callable[[], object] | None,
    base: BaselineEntry | None,
    thresholds: Thresholds,
    plan: Plan,
    l2: str,
    progress: Callable[[str], None] | None = None,
    recorded: Callable[[], tuple[Recorded, Callable[[], object] | None]] | None = None,
    now: Callable[[], float] = time.perf_counter,
) -> GateOutcome:
    """Measure against the stored number; anything but `unchanged` is settled by an A/B
    against the recorded code where it can be had, else measured again (confirmation).
    ``now`` is the clock budgets are spent on (a simulation passes its own)."""
    base_timing = base.timing() if base else None
    m1 = measure(timer, call, reference, plan, l2=l2, progress=progress, now=now)
    a1 = assess_with_call(timing_of(m1), base_timing, thresholds, throttle=m1.throttle)
    if base is None or a1.settled:
        return GateOutcome(a1.verdict, m1, a1, 1, a1)
    # Loaded only now: most cases are unchanged and never need the recorded kernel.
    found, recorded_call = recorded() if recorded is not None else (None, None)
    if found is not None and found.same_code and not a1.machine:
        note = (
            f"the kernel's source is the one the baseline recorded, so the move of "
            f"{_said(a1)} is the machine's or the software's around it, not the kernel's"
        )
        a = Assessment(Verdict.UNCHANGED, a1.change, a1.drift, (*a1.reasons, note), a1.call_change)
        return GateOutcome(Verdict.UNCHANGED, m1, a, 1, a1, "same-code")
    if recorded_call is not None and base is not None:
        return _against_recorded(
            timer, call, recorded_call, base, thresholds, plan, l2, m1, a1, now
        )
    why = (found.why,) if found is not None and found.why else ()
    # Interleaved with the reference again, in the same process: asv and nvbench's
    # robust comparison also re-measure before calling a change.
    m2 = measure(timer, call, reference, plan, l2=l2, progress=progress, now=now)
    a2 = assess_with_call(timing_of(m2), base_timing, thresholds, throttle=m2.throttle)
    steps = [a1, a2]
    if needs_third(a1.verdict, a2.verdict):
        m2 = measure(timer, call, reference, plan, l2=l2, progress=progress, now=now)
        steps.append(assess_with_call(timing_of(m2), base_timing, thresholds, throttle=m2.throttle))
    final = confirm(steps[-2].verdict, steps[-1].verdict)
    said = [_said(s) for s in steps]
    note = f"measurements said {', then '.join(said)}"
    last = steps[-1]
    a = Assessment(final, last.change, last.drift, (*last.reasons, *why, note), last.call_change)
    return GateOutcome(final, m2, a, len(steps), a1, "repeat")


def ab_changes(m: Measurement) -> tuple[Change, Change | None]:
    """The first callable's device and call time against the second's (its reference
    slot), timed interleaved in one process: an A/B, with the A/B's spread allowance."""
    assert m.reference is not None
    call = _ab(m.call, m.ref_call) if m.call is not None and m.ref_call is not None else None
    return _ab(m.kernel, m.reference), call


def _ab(a: Summary, b: Summary) -> Change:
    return relative_change(a.median, a.rel_halfwidth, b.median, b.rel_halfwidth, spread.AB_SD)


def _against_recorded(
    timer: Timer,
    call: Callable[[], object],
    recorded_call: Callable[[], object],
    base: BaselineEntry,
    thresholds: Thresholds,
    plan: Plan,
    l2: str,
    m1: Measurement,
    a1: Assessment,
    now: Callable[[], float],
) -> GateOutcome:
    """Today's kernel and the recorded one, interleaved in this process: the A/B decides;
    the recorded kernel's time today against its stored time is the machine's move."""
    m = measure(timer, call, recorded_call, plan, l2=l2, now=now)
    assert m.reference is not None
    ab, call_ab = ab_changes(m)
    verdict = decide(ab, thresholds)
    if call_ab is not None:
        verdict = combine_call(verdict, decide(call_ab, thresholds))
    if m.throttle:
        verdict = Verdict.UNSTABLE
    stored = base.timing()
    machine = relative_change(
        m.reference.median,
        m.reference.rel_halfwidth,
        stored.median_ms,
        stored.halfwidth,
        spread=math.hypot(spread.device_sd(m.reference.median), stored.process_sd),
    )
    commit = str(base.environment.get("commit", ""))[:10]
    reasons = (
        *a1.reasons,
        f"against the stored number: {_said(a1)}",
        f"A/B against the kernel as recorded at {commit}, interleaved in this process: "
        f"{ab.pct:+.2f}% [{ab.low_pct:+.2f}, {ab.high_pct:+.2f}]"
        + (f", call {call_ab.pct:+.2f}%" if call_ab else "")
        + f" -> {verdict.value} (this decides)",
        f"the machine: the recorded kernel runs {machine.pct:+.2f}% "
        f"[{machine.low_pct:+.2f}, {machine.high_pct:+.2f}] against its stored time",
    )
    a = Assessment(verdict, ab, machine, reasons, call_ab)
    return GateOutcome(verdict, m1, a, 2, a1, "recorded")


def _said(a: Assessment) -> str:
    moves = [f"{a.change.pct:+.2f}%"] if a.change else []
    if a.call_change is not None:
        moves.append(f"call {a.call_change.pct:+.2f}%")
    return f"{a.verdict.value} ({', '.join(moves)})" if moves else a.verdict.value


def case_result(
    out: GateOutcome,
    *,
    name: str,
    nodeid: str,
    thresholds: Thresholds,
    entry: BaselineEntry,
    baseline: BaselineEntry | None,
    flop: int | None,
    policy: FailPolicy,
) -> CaseResult:
    return CaseResult(
        name=name,
        nodeid=nodeid,
        verdict=out.verdict,
        measurement=out.measurement,
        thresholds=thresholds,
        entry=entry,
        baseline=baseline,
        change=out.assessment.change,
        drift=out.assessment.drift,
        reasons=out.assessment.reasons,
        flop=flop,
        measurements=out.measurements,
        fails=policy.fails(out.verdict),
        call_change=out.assessment.call_change,
        stored_verdict=out.stored.verdict if out.stored else None,
        stored_change=out.stored.change if out.stored else None,
        settled_by=out.settled_by,
    )
