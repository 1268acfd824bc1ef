"""bench/inject_slowdown.py's calibration, on a fake timer: the delay it picks must make
the slowdown asked for even when the machine drifts between measurements."""

import pytest
import torch

from bench import inject_slowdown


class DriftingTimer:
    """Runs each callable to see what it launched (the kernel, a delay of some cycles) and
    times it from that: 1 ms the kernel, 3 us a delay launch and 1 ns a cycle; every
    ``sample`` call runs 2% slower than the one before, as a GPU warming up would."""

    def __init__(self, launched: list) -> None:
        self.launched = launched
        self.calls = 0

    def calibrate(self, fns) -> None:
        pass

    def _ms(self, fn) -> float:
        self.launched.clear()
        fn()
        ms = 0.0
        for what in self.launched:
            ms += 1.0 if what == "kernel" else 0.003 + what * 1e-6
        return ms

    def sample(self, fns, rounds):
        scale = 1.0 + 0.02 * self.calls
        self.calls += 1
        return [[self._ms(fn) * scale] * rounds for fn in fns]


@pytest.fixture
def drifting(monkeypatch):
    launched: list = []
    timer = DriftingTimer(launched)
    monkeypatch.setattr(inject_slowdown, "_timer", lambda: timer)
    monkeypatch.setattr(torch.cuda, "_sleep", lambda cycles: launched.append(cycles))
    return launched


def test_the_delay_is_calibrated_from_interleaved_times(drifting):
    def kernel(x, w):
        drifting.append("kernel")
        return x

    report: dict = {}
    slowed = inject_slowdown.make_slowed(kernel, 0.02, report)
    slowed(torch.zeros(2), torch.zeros(3))
    [entry] = report.values()
    # 2% of 1 ms less the delay launch's 3 us, at 1 ns a cycle; the drift between the
    # calibration's measurements (2% a call here) must not read as launch cost.
    assert entry["cycles"] == 17_000
    assert entry["achieved"] == pytest.approx(0.02, abs=1e-6)
    drifting.clear()
    slowed(torch.zeros(2), torch.zeros(3))
    assert drifting == ["kernel", 17_000]


class MisreadLaunchTimer(DriftingTimer):
    """No drift, but the first ``sample`` call (the calibration's probe) reads the delay
    launch as free where it costs 3 us: the first estimate overshoots by 3 us."""

    def sample(self, fns, rounds):
        self.calls += 1
        if self.calls > 1:
            return [[self._ms(fn)] * rounds for fn in fns]
        times = []
        for fn in fns:
            ms = self._ms(fn)
            delays = sum(1 for what in self.launched if what != "kernel")
            times.append([ms - 0.003 * delays] * rounds)
        return times


def test_a_misread_delay_launch_is_corrected_from_the_slowdown_measured(monkeypatch):
    launched: list = []
    timer = MisreadLaunchTimer(launched)
    monkeypatch.setattr(inject_slowdown, "_timer", lambda: timer)
    monkeypatch.setattr(torch.cuda, "_sleep", lambda cycles: launched.append(cycles))

    def kernel(x, w):
        launched.append("kernel")
        return x

    report: dict = {}
    inject_slowdown.make_slowed(kernel, 0.02, report)(torch.zeros(2), torch.zeros(3))
    [entry] = report.values()
    # The probe says 20 000 cycles (2.3%); the measured 0.3% too much takes 3 000 off.
    assert entry["cycles"] == 17_000
    assert entry["achieved"] == pytest.approx(0.02, abs=1e-6)
