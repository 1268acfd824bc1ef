"""The GPU side of timing: CUDA events around each call, an L2 flush and a stream hold
before it, and SM clocks and throttle reasons from NVML. Tests replace it with a fake
that has the same two methods."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ClockState:
    sm_mhz: float | None
    throttle: tuple[str, ...] = ()


class Timer(Protocol):
    def sample(self, fns: Sequence[Callable[[], object]], rounds: int) -> list[list[float]]:
        """``rounds`` device times in ms for each callable, interleaved."""

    def clock(self) -> ClockState: ...


# A timer may also offer ``warm_gpu(seconds)``, called before a case's first call,
# ``warm_up(fns, calls, seconds)``, which replaces the warm-up loop (each callable called
# at least ``calls`` times and for at least ``seconds``), ``calibrate(fns)``, called once
# after warm-up, ``call_sample(fns, rounds, calls)``: per round and callable, the mean time
# per call in ms of ``calls`` back-to-back calls as a caller's loop makes them (the call
# time), and ``now()``: the clock the case's budget is spent on, in seconds (a simulated
# GPU's own, so a simulated budget costs no wall time; the default is the host's clock).
#
# A timed callable may carry ``conv3d_prepare``, a callable of no arguments that a timer
# calls before each timed call, outside the timed window (``prepare``): ``conv3d_perf.case``
# refills the input with new values there, so a kernel that keeps results for repeated
# arguments is timed on the path a caller with new tensors takes. ``call_sample`` calls it
# once before each loop of back-to-back calls, not between them.


def prepare(fn: object) -> None:
    """``fn``'s ``conv3d_prepare``, where it has one."""
    hook = getattr(fn, "conv3d_prepare", None)
    if hook is not None:
        hook()


class CudaTimer:
    """Times callables on the current CUDA stream.

    Before each timed call: an L2 flush (writing twice the L2 size) unless warm, then a
    spin kernel that holds the stream while the host queues the call, so host launch
    overhead never lands between the two events."""

    def __init__(self, l2: str = "flush") -> None:
        import torch

        self._torch = torch
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        self.l2_bytes = int(getattr(props, "L2_cache_size", 0) or 64 << 20)
        self.flush = l2 == "flush"
        self._buffer = torch.empty(2 * self.l2_bytes // 4, dtype=torch.int32, device="cuda")
        from pytest_conv3d_perf.environment import open_nvml

        self._nvml = open_nvml()
        self._hold_cycles = self._cycles_per_us() * 100
        self._rng = random.Random()

    def _cycles_per_us(self) -> int:
        torch = self._torch
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda._sleep(1000)
        start.record()
        torch.cuda._sleep(1_000_000)
        end.record()
        end.synchronize()
        return max(1, int(1_000_000 / (start.elapsed_time(end) * 1000)))

    def warm_gpu(self, seconds: float) -> None:
        """Keep every SM busy for ``seconds`` (float32 matrix products), so the clocks
        have left idle when the case's first call autotunes. Ones, not random numbers:
        drawing them would move the caller's random stream."""
        torch = self._torch
        a = torch.ones(2048, 2048, device="cuda")
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            for _ in range(4):
                torch.mm(a, a)
            torch.cuda.synchronize()

    def calibrate(self, fns: Sequence[Callable[[], object]]) -> None:
        """Hold the stream for three times the slowest host launch (at least 100 us): the
        flush, the events and the call must all be queued before the start event runs."""
        self._torch.cuda.synchronize()
        slowest = max(host_call_us(f) for f in fns)
        self._torch.cuda.synchronize()
        self._hold_cycles = int(self._cycles_per_us() * max(100.0, 3 * slowest))

    def sample(self, fns: Sequence[Callable[[], object]], rounds: int) -> list[list[float]]:
        torch = self._torch
        pending = []
        for _ in range(rounds):
            # A random order each round. Alternating it (ABBA...) left a bias of up to
            # +-6% on 13-40 us kernels timed against themselves on an H100, the sign fixed
            # for a whole measurement (notes/gate-quality.md, "A/B of the same code").
            order = list(range(len(fns)))
            self._rng.shuffle(order)
            for i in order:
                # Before the flush: the flush then evicts what the refill wrote, and the
                # refill's kernel runs before the start event.
                prepare(fns[i])
                if self.flush:
                    self._buffer.zero_()
                torch.cuda._sleep(self._hold_cycles)
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                fns[i]()
                end.record()
                pending.append((i, start, end))
        torch.cuda.synchronize()
        out: list[list[float]] = [[] for _ in fns]
        for i, start, end in pending:
            out[i].append(start.elapsed_time(end))
        return out

    def call_sample(
        self, fns: Sequence[Callable[[], object]], rounds: int, calls: int
    ) -> list[list[float]]:
        """What a caller in a loop waits for: no stream hold and no flush, so launches,
        host work, synchronisations and allocations all count; the host clock around
        ``calls`` back-to-back calls, synchronised before and after."""
        torch = self._torch
        out: list[list[float]] = [[] for _ in fns]
        for _ in range(rounds):
            # A random order each round, as the device samples: a fixed alternation left
            # an order bias there (see ``sample``).
            order = list(range(len(fns)))
            self._rng.shuffle(order)
            for i in order:
                # Once a loop, before its clock starts: a prepare between the calls would
                # add its launch and its kernel to every call time stored, and the call
                # time is what a caller's loop of calls on ready inputs waits for.
                prepare(fns[i])
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                for _ in range(calls):
                    fns[i]()
                torch.cuda.synchronize()
                out[i].append((time.perf_counter() - t0) * 1e3 / calls)
        return out

    def clock(self) -> ClockState:
        if self._nvml is None:
            return ClockState(None)
        return ClockState(self._nvml.sm_mhz(), self._nvml.throttle())


def host_call_us(fn: Callable[[], object], calls: int = 20) -> float:
    """Median host time of launching ``fn`` (the device work runs asynchronously), each
    launch prepared as a timed one is: a kernel that keeps results launches faster on
    repeated inputs, and the stream hold sized on that would not cover a timed launch."""
    times = []
    for _ in range(calls):
        prepare(fn)
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e6)
    return sorted(times)[len(times) // 2]
