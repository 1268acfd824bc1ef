"""The GPU side of timing: CUDA events around each call, an L2 flush and a stream hold
before it, and SM clocks and throttle reasons from NVML. Tests replace it with a fake
that has the same two methods."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

# NVML clock-event reasons that mean the hardware slowed itself; a software power cap
# (0x4) is normal under load and is handled by comparing cycles as well as time.
_THROTTLE_BITS = {
    0x8: "hardware slowdown",
    0x20: "software thermal slowdown",
    0x40: "hardware thermal slowdown",
    0x80: "hardware power brake",
}
_POWER_CAP = 0x4


@dataclass(frozen=True)
class ClockState:
    sm_mhz: float | None
    throttle: tuple[str, ...] = ()
    power_capped: bool = False


class Timer(Protocol):
    def sample(self, fns: Sequence[Callable[[], object]], rounds: int) -> list[list[float]]:
        """``rounds`` device times in ms for each callable, interleaved."""

    def clock(self) -> ClockState: ...


# A timer may also offer ``calibrate(fns)``, called once after warm-up.


class _Nvml:
    def __init__(self) -> None:
        import pynvml
        import torch

        pynvml.nvmlInit()
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        bus = getattr(props, "pci_bus_id", None)
        if bus is not None:
            pci = f"{props.pci_domain_id:08x}:{bus:02x}:{props.pci_device_id:02x}.0"
            self.handle = pynvml.nvmlDeviceGetHandleByPciBusId(pci.encode())
        else:
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        self._nvml = pynvml
        self._reasons = getattr(
            pynvml,
            "nvmlDeviceGetCurrentClocksEventReasons",
            getattr(pynvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None),
        )

    def read(self) -> ClockState:
        sm = float(self._nvml.nvmlDeviceGetClockInfo(self.handle, self._nvml.NVML_CLOCK_SM))
        bits = int(self._reasons(self.handle)) if self._reasons else 0
        names = tuple(name for bit, name in _THROTTLE_BITS.items() if bits & bit)
        return ClockState(sm, names, bool(bits & _POWER_CAP))


def open_nvml() -> _Nvml | None:
    try:
        return _Nvml()
    except Exception:  # NVML is optional; clocks are then unknown
        return None


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
        self._nvml = open_nvml()
        self._hold_cycles = self._cycles_per_us() * 100

    def _cycles_per_us(self) -> int:
        torch = self._torch
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda._sleep(1000)
        start.record()
        torch.cuda._sleep(1_000_000)
        end.record()
        end.synchronize()
        return max(1, int(1_000_000 / (start.elapsed_time(end) * 1000)))

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
        for r in range(rounds):
            # Alternate the order so neither callable always follows the other.
            order = range(len(fns)) if r % 2 == 0 else reversed(range(len(fns)))
            for i in order:
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

    def clock(self) -> ClockState:
        return self._nvml.read() if self._nvml else ClockState(None)


def host_call_us(fn: Callable[[], object], calls: int = 20) -> float:
    """Median host time of launching ``fn`` (the device work runs asynchronously)."""
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e6)
    return sorted(times)[len(times) // 2]
