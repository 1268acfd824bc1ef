"""A simulated GPU with the noise measured on the H100: one model for the plugin's tests
(tests/fake_gpu.py) and for ``bench/gate_sim.py``, which runs the real decision code on it.

What a fresh process sees (notes/gate-quality.md, "Noise model", and notes/data): every
callable's time is offset for the whole process (the kernel by 0.2% on cases of 50 us and
more, 0.6% below; cuDNN's reference by 0.3% and 2% respectively, moving on its own), drifts
a little from batch to batch, and scatters sample to sample; a kernel under 20 us now and
then takes 3-4 times as long (a launch gap, a clock step); two different binaries timed
in one process (an A/B) keep a small offset of their own. A call in a caller's loop costs
the larger of its device time and its host work, whose share moves 20% from process to
process. Each process draws its own offsets; a seed makes a run repeatable, never equal to
another process's.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pytest_conv3d_perf.timer import ClockState, prepare


@dataclass(frozen=True)
class Noise:
    sample_sd: float = 0.003
    batch_sd: float = 0.0005
    process_sd: float = 0.002
    process_sd_small: float = 0.006
    small_ms: float = 0.05
    reference_sd: float = 0.003
    reference_sd_small: float = 0.02
    # A different binary in the same process: its own small offset.
    ab_sd: float = 0.0005
    # Tiny kernels: a fraction of samples take several times as long.
    tiny_ms: float = 0.02
    slow_fraction: float = 0.02
    slow_factor: float = 3.5
    host_ms: float = 0.035
    reference_host_ms: float = 0.012
    host_process_sd: float = 0.2
    host_sample_sd: float = 0.05
    # Simulated host time per batch of samples (synchronisation, bookkeeping), seconds.
    batch_overhead_s: float = 0.002

    @classmethod
    def quiet(cls) -> Noise:
        """Almost no noise: for tests that check mechanics rather than statistics."""
        return cls(
            sample_sd=0.001,
            batch_sd=0.0,
            process_sd=0.0,
            process_sd_small=0.0,
            reference_sd=0.0,
            reference_sd_small=0.0,
            ab_sd=0.0,
            slow_fraction=0.0,
            host_process_sd=0.0,
            host_sample_sd=0.001,
        )


PROFILES = {"h100": Noise(), "quiet": Noise.quiet()}


@dataclass
class Variant:
    """What one role (kernel, recorded kernel, reference) costs in this process."""

    device_ms: float
    host_ms: float
    offset: float  # relative, for the whole process
    tiny: bool
    factor: float = 1.0  # the role's slowdown, applied to a time the code declares too


class SimulatedGpu:
    """The Timer protocol (``sample``, ``call_sample``, ``clock``) over simulated times.

    Roles: the first callable is the kernel; one with ``conv3d_role == "recorded"`` is the
    kernel as recorded at the baseline's commit; any other is the reference. ``now()`` is
    the simulated clock (seconds of simulated GPU work), for ``measure(now=...)``."""

    def __init__(
        self,
        kernel_ms: float,
        reference_ms: float,
        *,
        slowdown: float = 0.0,
        recorded_slowdown: float = 0.0,
        reference_slowdown: float = 0.0,
        extra_host_ms: float = 0.0,
        sm_mhz: float = 1980.0,
        throttle: tuple[str, ...] = (),
        throttle_fraction: float = 1.0,
        machine_offset: float = 0.0,
        noise: Noise | None = None,
        seed: int | None = None,
    ) -> None:
        self.noise = noise = noise or Noise()
        self.rng = random.Random(seed)
        small = kernel_ms < noise.small_ms
        # ``machine_offset``: shared by every process of one day (bench/gate_sim.py).
        machine = machine_offset + self.rng.gauss(
            0, noise.process_sd_small if small else noise.process_sd
        )
        ref_sd = noise.reference_sd_small if small else noise.reference_sd
        host = noise.host_ms * (1 + self.rng.gauss(0, noise.host_process_sd))
        tiny = kernel_ms < noise.tiny_ms
        self.kernel = Variant(
            kernel_ms * (1 + slowdown), host + extra_host_ms, machine, tiny, 1 + slowdown
        )
        # The recorded kernel runs on the same machine; as another binary it keeps a
        # small offset of its own.
        self.recorded = Variant(
            kernel_ms * (1 + recorded_slowdown),
            host,
            machine + self.rng.gauss(0, noise.ab_sd),
            tiny,
            1 + recorded_slowdown,
        )
        self.reference = Variant(
            reference_ms * (1 + reference_slowdown),
            noise.reference_host_ms,
            self.rng.gauss(0, ref_sd),
            False,
        )
        self.sm_mhz = sm_mhz
        self.throttle = throttle
        self.throttle_fraction = throttle_fraction
        self.elapsed_s = 0.0

    def now(self) -> float:
        return self.elapsed_s

    def runner(self, role: str) -> Callable[[], None]:
        """A stand-in for the kernel ("kernel"), the recorded kernel ("recorded") or the
        reference ("reference"); its time is the role's (``sample``)."""

        def run() -> None:
            return None

        run.conv3d_role = role  # type: ignore[attr-defined]
        return run

    def warm_up(self, fns: Sequence[Callable[[], object]], calls: int, seconds: float) -> None:
        """Each callable called ``calls`` times for real (a kernel compiles and tunes at its
        first call), the warm-up's ``seconds`` spent on the simulated clock."""
        for _ in range(calls):
            for fn in fns:
                fn()
        self.elapsed_s += seconds

    def _variant(self, index: int, fn: object) -> Variant:
        if getattr(fn, "conv3d_role", "") == "recorded":
            return self.recorded
        return self.kernel if index == 0 else self.reference

    @staticmethod
    def _device_ms(v: Variant, fn: Callable[[], object]) -> float:
        """The role's device time, or the time the code itself declares: a callable whose
        result has ``simulated_ms`` costs that (times the role's slowdown), so a test can
        place a slowdown anywhere in a kernel's code and see whether the gate finds it."""
        declared = getattr(fn(), "simulated_ms", None)
        return v.device_ms if declared is None else float(declared) * v.factor

    def _spend(self, ms: float) -> None:
        self.elapsed_s += ms / 1e3 + self.noise.batch_overhead_s

    def sample(self, fns: Sequence[Callable[[], object]], rounds: int) -> list[list[float]]:
        n = self.noise
        drift = self.rng.gauss(0, n.batch_sd)
        out = []
        for i, fn in enumerate(fns):
            v = self._variant(i, fn)
            # One call stands for the batch's timed calls: prepared as each of them is.
            prepare(fn)
            base = self._device_ms(v, fn) * (1 + v.offset) * (1 + drift)
            times = []
            for _ in range(rounds):
                t = base * (1 + self.rng.gauss(0, n.sample_sd))
                if v.tiny and self.rng.random() < n.slow_fraction:
                    t *= n.slow_factor
                times.append(t)
            out.append(times)
        self._spend(sum(map(sum, out)))
        return out

    def call_sample(
        self, fns: Sequence[Callable[[], object]], rounds: int, calls: int
    ) -> list[list[float]]:
        """Per call in a loop: the larger of device and host time (they overlap), plus a
        little of the smaller (the launch that cannot overlap): on the H100, 200 us of
        host work moved a 2.4 ms case's call time by 0.4%."""
        n = self.noise
        out = []
        for i, fn in enumerate(fns):
            v = self._variant(i, fn)
            # One call stands for every loop, so one prepare before it, as CudaTimer's
            # before each loop (never between a loop's calls).
            prepare(fn)
            device = self._device_ms(v, fn) * (1 + v.offset)
            times = []
            for _ in range(rounds):
                host = v.host_ms * (1 + self.rng.gauss(0, n.host_sample_sd))
                d = device * (1 + self.rng.gauss(0, n.sample_sd))
                times.append(max(d, host) + 0.05 * min(d, host))
            out.append(times)
        self._spend(sum(map(sum, out)) * calls)
        return out

    def pause(self, seconds: float) -> None:
        self.elapsed_s += seconds

    def clock(self) -> ClockState:
        """``throttle`` in a ``throttle_fraction`` of the readings."""
        if self.throttle and self.rng.random() < self.throttle_fraction:
            return ClockState(self.sm_mhz, self.throttle)
        return ClockState(self.sm_mhz)


def process_seed(base: int, process: int) -> int:
    """A distinct, repeatable seed for each simulated process."""
    return (base * 1_000_003 + process * 7919) % (2**31)
