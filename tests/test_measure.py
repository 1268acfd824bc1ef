"""The measurement engine's order of work, on a fake timer."""

from pytest_conv3d_perf.measure import Plan, measure
from pytest_conv3d_perf.timer import ClockState


class LoggingTimer:
    """Records what the engine asks of it; every sample takes 1 ms."""

    def __init__(self, log: list) -> None:
        self.log = log

    def warm_gpu(self, seconds: float) -> None:
        self.log.append(("warm", seconds))

    def sample(self, fns, rounds):
        self.log.append(("sample", rounds))
        return [[1.0] * rounds for _ in fns]

    def clock(self):
        return ClockState(1980.0)


def test_the_gpu_is_warmed_before_a_cases_first_call_which_may_autotune():
    log: list = []
    ticks = iter(range(10_000))

    def kernel():
        log.append(("call",))

    plan = Plan(budget_s=5, min_samples=10, min_batches=2, min_time_s=0, gpu_warm_s=0.25)
    measure(LoggingTimer(log), kernel, None, plan, now=lambda: next(ticks) * 0.01)
    assert log[0] == ("warm", 0.25)
    assert log[1] == ("call",)
    assert sum(1 for entry in log if entry[0] == "warm") == 1
