"""One case through the gate: measure, assess, confirm a change by measuring again, and say
whether the result fails the run.

Two ways to a verdict. Against a revision (``--conv3d-against REV``, the pull-request
gate): today's kernel and REV's, each with its own import closure, are timed interleaved
in this process on every case, and that A/B decides; the stored baseline is reported (the
machine's move: REV's kernel today against its stored time). Without one: the stored
number first, and a case that is anything but `unchanged` against it is settled by the
same A/B against the code the entry recorded, or measured again where that code cannot
be had. No verdict is excused by a hash of the kernel's source: the same file can import
other helpers, read another configuration, or run under another Triton.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from pytest_conv3d_perf import spread
from pytest_conv3d_perf.baseline import BaselineEntry
from pytest_conv3d_perf.measure import Measurement, Plan, measure
from pytest_conv3d_perf.stats import Change, Summary, relative_change
from pytest_conv3d_perf.timer import Timer
from pytest_conv3d_perf.verdict import (
    Assessment,
    Thresholds,
    Timing,
    Verdict,
    assess_with_call,
    combine_call,
    decide,
    disagree,
    fails_run,
    settle,
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
    # "stored" (that verdict stands), "ab" (an A/B against another revision's kernel,
    # interleaved in this process) or "repeat" (the stored number, measured again).
    stored_verdict: Verdict | None = None
    stored_change: Change | None = None
    settled_by: str = "stored"
    # The revision the A/B ran against, and its kernel's time in that A/B.
    against: str = ""
    other: Summary | None = None
    # Why the output of a timed call on fresh inputs was wrong ('' where it was right or
    # not checked): the case fails whatever its verdict, since its times are those of a
    # path no caller with new values takes.
    wrong_output: str = ""

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


@dataclass(frozen=True)
class Other:
    """The other side of an A/B: a callable that makes today's call with that revision's
    code, or why there is none. ``missing``: that revision has no such code (the case is
    `new` to it), as opposed to code that cannot run it (the stored number decides)."""

    call: Callable[[], object] | None
    label: str = ""
    why: str = ""
    missing: bool = False
    # Today's call as the A/B makes it (wrapped alike when the sides' environments
    # differ); None: the plain one.
    today: Callable[[], object] | None = None
    # The environment's variables that a call changed while the sides ran (sides.Pair),
    # and the files of the other side's tree on disk.
    changed: Callable[[], tuple[str, ...]] = lambda: ()
    # The code that ran in this process changed the other side's tree before its import.
    tampered: bool = False


def timing_of(m: Measurement, *, reference: bool = True) -> Timing:
    """``reference``: whether ``m``'s reference slot holds the reference (PyTorch), not
    the other side of an A/B."""
    ref = m.reference if reference else None
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
    against: str = ""
    other: Summary | None = None


def run_gate(
    timer: Timer,
    call: Callable[[], object],
    reference: Callable[[], object] | None,
    base: BaselineEntry | None,
    thresholds: Thresholds,
    plan: Plan,
    l2: str,
    progress: Callable[[str], None] | None = None,
    other: Callable[[], Other] | None = None,
    now: Callable[[], float] = time.perf_counter,
    ab_first: bool = False,
) -> GateOutcome:
    """``other()`` loads the other side of an A/B (called at most once, when needed).
    ``ab_first``: the A/B decides every case (``--conv3d-against``); else the stored
    number first. ``now`` is the clock budgets are spent on (a simulation passes its
    own)."""

    def measured(a: Callable[[], object], b: Callable[[], object] | None) -> Measurement:
        return measure(timer, a, b, plan, l2=l2, progress=progress, now=now)

    found: Other | None = None
    if ab_first and other is not None:
        found = other()
        if found.call is not None:
            return _ab_outcome(measured, call, found, base, thresholds, None)
    m1 = measured(call, reference)
    if found is not None and found.tampered:
        return _tampered(found, m1)
    base_timing = base.timing() if base else None
    a1 = assess_with_call(timing_of(m1), base_timing, thresholds, throttle=m1.throttle)
    why = (found.why,) if found is not None and found.why else ()
    a1 = replace(a1, reasons=(*a1.reasons, *throttle_note([m1])))
    if base is None:
        if found is not None and not found.missing:
            # The base has this case, and neither an A/B nor a stored number can judge
            # it: "can't tell", which fails in CI (--conv3d-unstable=fail).
            note = "neither an A/B nor a stored baseline for this GPU can judge it"
            a = Assessment(Verdict.UNSTABLE, None, reasons=(*why, note))
            return GateOutcome(Verdict.UNSTABLE, m1, a, 1, a1, against=found.label)
        a = replace(a1, reasons=(*why, *a1.reasons))
        return GateOutcome(a1.verdict, m1, a, 1, a1)
    if a1.settled:
        a = replace(a1, reasons=(*why, *a1.reasons))
        return GateOutcome(a1.verdict, m1, a, 1, a1)
    if found is None and other is not None:
        # Loaded only now: most cases are unchanged and never need the other code.
        found = other()
        if found.call is not None:
            return _ab_outcome(measured, call, found, base, thresholds, a1, m1)
        if found.tampered:
            return _tampered(found, m1, a1)
        why = (found.why,) if found.why else ()
    ms = [m1]
    steps = [a1]

    def again() -> Verdict:
        # Interleaved with the reference again, in the same process: asv and nvbench's
        # robust comparison also re-measure before calling a change.
        ms.append(measured(call, reference))
        steps.append(
            assess_with_call(timing_of(ms[-1]), base_timing, thresholds, throttle=ms[-1].throttle)
        )
        return steps[-1].verdict

    final, _ = settle(a1.verdict, again)
    note = f"measurements said {', then '.join(_said(s) for s in steps)}"
    last = steps[-1]
    split: tuple[str, ...] = ()
    if disagree([s.change for s in steps]) or disagree([s.call_change for s in steps]):
        final = Verdict.UNSTABLE
        split = ("the measurements exclude each other: the code ran at two speeds",)
    reasons = (*last.reasons, *why, note, *split, *throttle_note(ms))
    a = Assessment(final, last.change, last.drift, reasons, last.call_change)
    return GateOutcome(final, ms[-1], a, len(steps), a1, "repeat")


def _tampered(found: Other, m: Measurement, stored: Assessment | None = None) -> GateOutcome:
    """The other side's tree changed on disk before it loaded: neither the A/B nor the
    stored number may settle what that code set up, so "can't tell", which fails in CI."""
    a = Assessment(Verdict.UNSTABLE, None, reasons=(found.why,))
    return GateOutcome(Verdict.UNSTABLE, m, a, 1, stored)


def throttle_note(ms: list[Measurement]) -> tuple[str, ...]:
    """A line for the batches dropped while the GPU throttled, where some were kept."""
    dropped = sum(int(m.diagnostics.get("throttled_batches", 0)) for m in ms if not m.throttle)
    if not dropped:
        return ()
    return (f"{dropped} batch(es) dropped while the GPU throttled, each followed by a pause",)


def ab_changes(m: Measurement) -> tuple[Change, Change | None]:
    """The first callable's device and call time against the second's (its reference
    slot), timed interleaved in one process: an A/B, with the A/B's spread allowance."""
    assert m.reference is not None
    call = _ab(m.call, m.ref_call) if m.call is not None and m.ref_call is not None else None
    return _ab(m.kernel, m.reference), call


def _ab(a: Summary, b: Summary) -> Change:
    return relative_change(a.median, a.rel_halfwidth, b.median, b.rel_halfwidth, spread.AB_SD)


def ab_verdict(m: Measurement, thresholds: Thresholds) -> tuple[Verdict, Change, Change | None]:
    """The A/B's verdict: device time and call time, each decided, then combined. Both
    sides ran at the same clocks (interleaved), so neither throttling nor a clock change
    makes it `unstable`: an interval too wide to decide does."""
    ab, call_ab = ab_changes(m)
    verdict = decide(ab, thresholds)
    if call_ab is not None:
        verdict = combine_call(verdict, decide(call_ab, thresholds))
    return verdict, ab, call_ab


def _ab_outcome(
    measured: Callable[[Callable[[], object], Callable[[], object] | None], Measurement],
    call: Callable[[], object],
    found: Other,
    base: BaselineEntry | None,
    thresholds: Thresholds,
    stored_first: Assessment | None,
    m_stored: Measurement | None = None,
) -> GateOutcome:
    """Today's kernel and the other side's, interleaved in this process, measured again
    while the verdict does not stand (``settle``): the A/B decides."""
    assert found.call is not None
    runs: list[tuple[Measurement, Verdict, Change, Change | None]] = []

    def once() -> Verdict:
        m = measured(found.today or call, found.call)
        runs.append((m, *ab_verdict(m, thresholds)))
        return runs[-1][1]

    verdict, said = settle(once(), once)
    m, _, ab, call_ab = runs[-1]
    split = disagree([r[2] for r in runs]) or disagree([r[3] for r in runs])
    leaked = found.changed()
    if leaked or split:
        verdict = Verdict.UNSTABLE
    lines = [
        f"A/B against {found.label}, interleaved in this process: "
        + ", then ".join(
            f"{c.pct:+.2f}% [{c.low_pct:+.2f}, {c.high_pct:+.2f}]"
            + (f", call {cc.pct:+.2f}%" if cc is not None else "")
            + f" ({v.value})"
            for _, v, c, cc in runs
        )
        + f" -> {verdict.value} (this decides)"
    ]
    if split:
        lines.append(
            "the A/Bs exclude each other: the code under test ran at two speeds, so no one "
            "measurement stands for it"
        )
    if leaked:
        lines.append(
            "a call changed the environment, the other side's files or its modules' globals "
            f"while the two sides ran ({', '.join(leaked[:5])}): what one side's call sets "
            "reaches the other's calls, so this A/B cannot tell them apart"
        )
    lines += throttle_note([run[0] for run in runs])
    throttled = sorted({name for run in runs for name in run[0].throttle})
    if throttled:
        lines.append(
            "the GPU throttled through the budget (" + ", ".join(throttled) + "); both "
            "sides ran interleaved at the same clocks, so the A/B still compares them"
        )
    assert m.reference is not None
    stored = stored_first
    drift = None
    if base is not None:
        stored_timing = base.timing()
        drift = relative_change(
            m.reference.median,
            m.reference.rel_halfwidth,
            stored_timing.median_ms,
            stored_timing.halfwidth,
            spread=math.hypot(spread.device_sd(m.reference.median), stored_timing.process_sd),
        )
        lines.append(
            f"the machine: {found.label}'s kernel runs {drift.pct:+.2f}% "
            f"[{drift.low_pct:+.2f}, {drift.high_pct:+.2f}] against its stored time"
        )
        if stored is None:
            stored = assess_with_call(
                timing_of(m, reference=False), stored_timing, thresholds, throttle=m.throttle
            )
        else:
            lines.insert(0, f"against the stored number: {_said(stored)}")
    else:
        lines.append("no stored baseline for this GPU model: the A/B alone decides")
    a = Assessment(verdict, ab, drift, tuple(lines), call_ab)
    head = replace(m, reference=None, ref_call=None)
    return GateOutcome(
        verdict,
        m_stored if m_stored is not None else head,
        a,
        len(said) + (1 if m_stored is not None else 0),
        stored,
        "ab",
        found.label,
        m.reference,
    )


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
    wrong_output: str = "",
) -> CaseResult:
    """``wrong_output``: why the output of a timed call on fresh inputs was wrong, or ''."""
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
        # First: it fails the case, whatever the lines after it say of the times.
        reasons=(*((wrong_output,) if wrong_output else ()), *out.assessment.reasons),
        flop=flop,
        measurements=out.measurements,
        fails=bool(wrong_output) or policy.fails(out.verdict),
        call_change=out.assessment.call_change,
        stored_verdict=out.stored.verdict if out.stored else None,
        stored_change=out.stored.change if out.stored else None,
        settled_by=out.settled_by,
        against=out.against,
        other=out.other,
        wrong_output=wrong_output,
    )
