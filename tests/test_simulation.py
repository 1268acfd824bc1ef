"""The decision code on the simulated GPU (the noise measured on the H100): behaviour a
reviewer relies on, checked over several simulated processes, no GPU needed."""

import argparse

import pytest

from bench.gate_sim import trial
from pytest_conv3d_perf.simulated import Noise, SimulatedGpu, process_seed
from pytest_conv3d_perf.verdict import Verdict

ARGS = argparse.Namespace(fail=2.0, warn=1.0, budget=1.0, history="git", mode="stored")


def trials(kernel_ms, change, n, **overrides):
    args = argparse.Namespace(**{**vars(ARGS), **overrides})
    return [trial(kernel_ms, change, process_seed(7, i), args, Noise()) for i in range(n)]


def test_processes_draw_different_noise_and_a_seed_repeats_one():
    a, b, again = (SimulatedGpu(1.0, 3.0, seed=s) for s in (1, 2, 1))
    assert a.kernel.offset != b.kernel.offset
    assert a.kernel.offset == again.kernel.offset
    runner = a.runner("kernel")
    assert a.sample([runner], 5)[0] != b.sample([b.runner("kernel")], 5)[0]


def test_tiny_kernels_are_bimodal():
    gpu = SimulatedGpu(0.013, 0.012, seed=3)
    times = gpu.sample([gpu.runner("kernel")], 2000)[0]
    slow = [t for t in times if t > 0.03]
    assert 10 <= len(slow) <= 80  # about 2% of samples at 3.5 times the time


@pytest.mark.parametrize("kernel_ms", [0.013, 0.5])
def test_unchanged_speed_is_never_a_regression_and_its_interval_holds_zero(kernel_ms):
    done = trials(kernel_ms, "0", 8)
    assert all(t.verdict is not Verdict.REGRESSION for t in done)
    assert sum(t.verdict is Verdict.UNSTABLE for t in done) <= 1
    assert sum(t.covered for t in done) >= 7


@pytest.mark.parametrize("kernel_ms", [0.013, 0.5])
def test_a_five_percent_slowdown_is_a_regression_settled_by_the_ab(kernel_ms):
    done = trials(kernel_ms, "0.05", 5)
    assert [t.verdict for t in done] == [Verdict.REGRESSION] * 5
    assert {t.settled_by for t in done} == {"ab"}


def test_without_history_the_stored_number_decides_a_five_percent_slowdown():
    done = trials(0.5, "0.05", 4, history="none")
    assert [t.verdict for t in done] == [Verdict.REGRESSION] * 4
    assert {t.settled_by for t in done} <= {"stored", "repeat"}


@pytest.mark.parametrize("kernel_ms", [0.013, 0.22])
def test_host_work_fails_a_case_whose_call_it_slows(kernel_ms):
    # 0.2 ms of host work: +10% on a 0.22 ms case's call, whose interval against the
    # stored call time is too wide to call; the A/B calls it.
    done = trials(kernel_ms, "host", 3)
    assert [t.verdict for t in done] == [Verdict.REGRESSION] * 3
    assert {t.settled_by for t in done} == {"ab"}


def test_host_work_hidden_behind_a_long_kernel_passes():
    done = trials(2.4, "host", 3)
    assert Verdict.REGRESSION not in {t.verdict for t in done}


@pytest.mark.parametrize("kernel_ms", [0.013, 0.5])
def test_against_a_revision_the_ab_decides_every_case(kernel_ms):
    # The pull-request gate: no case is left to the stored number, unchanged ones included.
    same = trials(kernel_ms, "0", 6, mode="against")
    assert all(t.verdict is not Verdict.REGRESSION for t in same)
    assert {t.settled_by for t in same} == {"ab"}
    slower = trials(kernel_ms, "0.05", 4, mode="against")
    assert [t.verdict for t in slower] == [Verdict.REGRESSION] * 4
