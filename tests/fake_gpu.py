"""A conftest body that replaces the GPU with a fake timer, for pytester runs.

Environment knobs (read at every sample, so a test can change them between runs):
FAKE_SLOWDOWN (fraction added to the kernel's time), FAKE_REF_SLOWDOWN (the same for the
reference), FAKE_NOISE (relative standard deviation), FAKE_THROTTLE (a reason name),
FAKE_MHZ (the SM clock), FAKE_BATCH_NOISE (relative standard deviation of an offset drawn
once per batch, as a drifting GPU gives), FAKE_HOST_MS (host work the kernel's launcher adds
to each call, on top of 0.05 ms: seen in the call time only), FAKE_RECORDED_SLOWDOWN (the
same as FAKE_SLOWDOWN for the kernel as recorded at the baseline's commit, when the gate
times it beside today's: a machine that moved slows both)."""

CONFTEST = """
import os
import random
import time

import pytest

from pytest_conv3d_perf.timer import ClockState


class FakeTimer:
    def __init__(self):
        self.rng = random.Random(1234)

    def sample(self, fns, rounds):
        slow = float(os.environ.get("FAKE_SLOWDOWN", "0"))
        ref_slow = float(os.environ.get("FAKE_REF_SLOWDOWN", "0"))
        noise = float(os.environ.get("FAKE_NOISE", "0.001"))
        drift = 1 + self.rng.gauss(0, float(os.environ.get("FAKE_BATCH_NOISE", "0")))
        rec_slow = float(os.environ.get("FAKE_RECORDED_SLOWDOWN", "0"))
        out = []
        for i, fn in enumerate(fns):
            recorded = getattr(fn, "conv3d_role", "") == "recorded"
            base = 1.0 if i == 0 or recorded else 3.0
            own = slow if i == 0 else (rec_slow if recorded else ref_slow)
            factor = (1 + own) * drift
            out.append([base * factor * (1 + self.rng.gauss(0, noise)) for _ in range(rounds)])
        # Take as long as the simulated device work, so batches come at a GPU's pace.
        time.sleep(sum(sum(times) for times in out) / 1e3)
        return out

    def call_sample(self, fns, rounds, calls):
        host = 0.05 + float(os.environ.get("FAKE_HOST_MS", "0"))
        slow = float(os.environ.get("FAKE_SLOWDOWN", "0"))
        out = []
        rec_slow = float(os.environ.get("FAKE_RECORDED_SLOWDOWN", "0"))
        for i, fn in enumerate(fns):
            recorded = getattr(fn, "conv3d_role", "") == "recorded"
            own = slow if i == 0 else (rec_slow if recorded else 0)
            device = (1.0 if i == 0 or recorded else 3.0) * (1 + own)
            per_call = device + (host if i == 0 else 0.05)
            out.append([per_call * (1 + self.rng.gauss(0, 0.001)) for _ in range(rounds)])
        time.sleep(sum(sum(t) for t in out) * calls / 1e3)
        return out

    def clock(self):
        reason = os.environ.get("FAKE_THROTTLE", "")
        return ClockState(float(os.environ.get("FAKE_MHZ", "1980")),
                          (reason,) if reason else ())


@pytest.hookimpl(tryfirst=True)
def pytest_conv3d_perf_make_timer(config, l2):
    return FakeTimer()


@pytest.hookimpl(tryfirst=True)
def pytest_conv3d_perf_device_info(config):
    return {"gpu": "Fake GPU 9000", "torch": "x", "triton": "y"}
"""

TEST_FILE = """
import torch


def conv(x, w, b, stride, padding, dilation):
    return torch.nn.functional.conv3d(x, w, b, stride, padding, dilation)


def test_speed(conv3d_case, conv3d_perf):
    conv3d_perf.case(conv, conv3d_case)
"""
