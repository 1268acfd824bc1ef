"""The measurement engine: warm-up, then adaptive, interleaved sampling of a kernel and its
reference until the median's interval is narrow enough or the time budget is spent."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from pytest_conv3d_perf.stats import Summary, median, median_interval, summarize
from pytest_conv3d_perf.timer import ClockState, Timer


@dataclass(frozen=True)
class Plan:
    budget_s: float = 10.0
    target_halfwidth_pct: float = 0.25
    min_samples: int = 50
    min_batches: int = 8
    min_time_s: float = 0.5
    warmup_calls: int = 3
    # Long enough for the clocks to ramp up from idle and for caches and allocator to
    # settle; the first samples of a cold GPU ran several percent off on an H100.
    warmup_s: float = 0.3
    # The GPU kept busy this long before each measurement's first call, where the timer
    # can: a case's first call autotunes, and configs timed while the clocks still ramp up
    # from idle may lose. Suspected, not measured: Triton's autotuner picked 128x64x16 over
    # 128x64x32 for KernelBench #54 (1.9% slower there) when #54 was the first case tuned
    # (notes/gate-quality.md, fifth session; bench/autotune_pick.py is the check).
    gpu_warm_s: float = 0.2
    batch_s: float = 0.05
    # A batch during which the GPU throttled is dropped, and sampling waits this long
    # (doubling up to throttle_pause_max_s while the throttling lasts) before it goes on,
    # within the budget: nvbench's throttle recovery delay (0.05 s).
    throttle_pause_s: float = 0.05
    throttle_pause_max_s: float = 1.0
    # Call time: a sample is the mean of back-to-back calls over about this long (at least
    # min_calls of them, so a slow kernel's launch overlaps the previous call as in a real
    # loop), and the phase takes at most this share of the budget (at least
    # min_call_samples samples). On the H100 one call per sample measured a 2.4 ms case's
    # 0.2 ms of added host work as +5%, which a loop hides behind the device work.
    call_sample_s: float = 0.01
    min_calls: int = 5
    call_share: float = 0.25
    min_call_samples: int = 30


@dataclass
class Measurement:
    kernel: Summary
    reference: Summary | None
    elapsed_s: float
    sm_mhz: float | None
    # Throttle reasons in the samples kept: empty unless the GPU throttled through every
    # batch of the budget (then all of them are kept, and the reasons say why).
    throttle: tuple[str, ...] = ()
    l2: str = "flush"
    samples: list[float] = field(default_factory=list, repr=False)
    diagnostics: dict[str, float] = field(default_factory=dict)
    # Per call in a caller's loop (no stream hold, no flush, host work included); None
    # where the timer cannot measure it.
    call: Summary | None = None
    ref_call: Summary | None = None


def _mean_mhz(readings: list[ClockState]) -> float | None:
    mhz = [r.sm_mhz for r in readings if r.sm_mhz]
    return sum(mhz) / len(mhz) if mhz else None


def _batch_halfwidth(batch_medians: list[float]) -> float:
    """Relative half-width of the median's interval over batch medians.

    The order-statistic interval assumes independent samples; a GPU drifts between
    batches (clocks, temperature, neighbours), which makes samples correlated and that
    interval too narrow. The spread of batch medians sees the drift (batch means)."""
    ordered = sorted(batch_medians)
    if len(ordered) < 2:
        return 0.0
    lo, hi = median_interval(ordered)
    return (hi - lo) / 2 / median(ordered)


def _widened(summary: Summary, batch_medians: list[float]) -> Summary:
    half = max(_batch_halfwidth(batch_medians) * summary.median, (summary.high - summary.low) / 2)
    return replace(summary, low=summary.median - half, high=summary.median + half)


def measure(
    timer: Timer,
    fn: Callable[[], object],
    reference: Callable[[], object] | None,
    plan: Plan,
    *,
    l2: str = "flush",
    now: Callable[[], float] = time.perf_counter,
    progress: Callable[[str], None] | None = None,
) -> Measurement:
    """``progress``, when given, receives a short status line about once a second."""
    fns = [fn] if reference is None else [fn, reference]
    say = progress or (lambda text: None)
    say("warming up")
    warm_gpu = getattr(timer, "warm_gpu", None)
    if warm_gpu is not None:
        warm_gpu(plan.gpu_warm_s)
    warm_up = getattr(timer, "warm_up", None)
    if warm_up is not None:
        warm_up(fns, plan.warmup_calls, plan.warmup_s)
    else:
        started = now()
        calls = 0
        while calls < plan.warmup_calls or now() - started < plan.warmup_s:
            for f in fns:
                f()
            calls += 1
    calibrate = getattr(timer, "calibrate", None)
    if calibrate is not None:
        calibrate(fns)
    # Compilation and autotuning happened above; one timed round sizes the batches.
    probe = timer.sample(fns, 1)
    round_ms = max(sum(times[0] for times in probe), 1e-3)
    rounds = max(5, min(1000, int(plan.batch_s * 1e3 / round_ms)))

    kernel: list[float] = []
    ref: list[float] = []
    batches: list[float] = []
    ref_batches: list[float] = []
    clocks = [timer.clock()]
    throttled: list[tuple[list[list[float]], ClockState]] = []
    pause = getattr(timer, "pause", time.sleep)
    wait = plan.throttle_pause_s
    # Sorting all samples after every batch would cost O(n^2 log n); checking each time
    # the count has grown by a quarter keeps it O(n log n) and stops at most 25% late.
    next_check = plan.min_samples
    start = now()
    said = start
    while True:
        before = clocks[-1]
        times = timer.sample(fns, rounds)
        state = timer.clock()
        if before.throttle or state.throttle:
            # A slower clock is no code's doing: the batch is dropped and the clocks get
            # time to recover (nvbench drops throttled samples the same way).
            throttled.append((times, state))
            clocks.append(state)
            if now() - start >= plan.budget_s:
                break
            pause(wait)
            wait = min(2 * wait, plan.throttle_pause_max_s)
            clocks.append(timer.clock())
            continue
        wait = plan.throttle_pause_s
        clocks.append(state)
        kernel.extend(times[0])
        batches.append(median(times[0]))
        if reference is not None:
            ref.extend(times[1])
            ref_batches.append(median(times[1]))
        elapsed = now() - start
        if elapsed >= plan.budget_s:
            break
        if now() - said >= 1.0:
            said = now()
            width = 100 * _widened(summarize(kernel), batches).rel_halfwidth
            say(f"{elapsed:.0f}/{plan.budget_s:g} s, {len(kernel)} samples, ±{width:.2f}%")
        if (
            len(kernel) >= next_check
            and len(batches) >= plan.min_batches
            and elapsed >= plan.min_time_s
        ):
            summary = _widened(summarize(kernel), batches)
            if 100 * summary.rel_halfwidth <= plan.target_halfwidth_pct:
                break
            next_check = int(len(kernel) * 1.25)
    reasons: tuple[str, ...] = ()
    if not batches:
        # Throttled through the whole budget: keep what there is and say why.
        for times, _ in throttled:
            kernel.extend(times[0])
            batches.append(median(times[0]))
            if reference is not None:
                ref.extend(times[1])
                ref_batches.append(median(times[1]))
        reasons = tuple(sorted({name for _, state in throttled for name in state.throttle}))
    call = ref_call = None
    sampler = getattr(timer, "call_sample", None)
    if sampler is not None:
        say("call time")
        call, ref_call = _measure_calls(sampler, fns, plan, median(kernel), now)
    mhz = _mean_mhz([c for c in clocks if not c.throttle] or clocks)
    iid = summarize(kernel)
    diagnostics = {
        "batches": len(batches),
        "throttled_batches": len(throttled),
        "iid_halfwidth_pct": 100 * iid.rel_halfwidth,
        "batch_halfwidth_pct": 100 * _batch_halfwidth(batches),
    }
    if ref_batches:
        ratios = [k / r for k, r in zip(batches, ref_batches)]
        diagnostics["ratio_batch_halfwidth_pct"] = 100 * _batch_halfwidth(ratios)
    return Measurement(
        kernel=_widened(iid, batches),
        reference=_widened(summarize(ref), ref_batches) if ref else None,
        elapsed_s=now() - start,
        sm_mhz=mhz,
        throttle=reasons,
        l2=l2,
        samples=kernel,
        diagnostics=diagnostics,
        call=call,
        ref_call=ref_call,
    )


def _measure_calls(
    sampler: Callable[..., list[list[float]]],
    fns: list[Callable[[], object]],
    plan: Plan,
    kernel_ms: float,
    now: Callable[[], float],
) -> tuple[Summary, Summary | None]:
    """Call time, interleaved with the reference's, until its interval is narrow enough or
    its share of the budget is spent."""
    calls = max(plan.min_calls, min(200, int(plan.call_sample_s * 1e3 / max(kernel_ms, 1e-3))))
    budget = plan.call_share * plan.budget_s
    kernel: list[float] = []
    ref: list[float] = []
    batches: list[float] = []
    ref_batches: list[float] = []
    start = now()
    while True:
        times = sampler(fns, 10, calls)
        kernel.extend(times[0])
        batches.append(median(times[0]))
        if len(fns) > 1:
            ref.extend(times[1])
            ref_batches.append(median(times[1]))
        if len(kernel) >= plan.min_call_samples:
            if now() - start >= budget:
                break
            width = 100 * _widened(summarize(kernel), batches).rel_halfwidth
            if width <= plan.target_halfwidth_pct:
                break
    return (
        _widened(summarize(kernel), batches),
        _widened(summarize(ref), ref_batches) if ref else None,
    )
