"""conv3d-perf tune: its rules, enforced with the gate's engine on a fake timer."""

import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kernels import implicit_gemm as ig
from pytest_conv3d_perf.measure import Plan
from pytest_conv3d_perf.stats import Change
from pytest_conv3d_perf.timer import ClockState
from pytest_conv3d_perf.tune import (
    LaunchConfig,
    Resources,
    Trial,
    adopt,
    edit_config_list,
    measure_candidates,
    neighbours,
)

ROOM = Resources(registers=96, shared_bytes=60_000, shared_per_sm=228 * 1024, max_warps_per_sm=64)


@pytest.mark.parametrize(
    "cfg",
    [
        LaunchConfig(256, 64, 16, 8, 4),
        LaunchConfig(64, 32, 16, 4, 3),
        LaunchConfig(128, 128, 16, 8, 3),
        LaunchConfig(64, 64, 64, 4, 2),
    ],
)
def test_neighbours_keep_blocks_and_the_original(cfg):
    found = neighbours(cfg, ROOM)
    assert found[0] == cfg
    assert 3 <= len(found) <= 6 and len(set(found)) == len(found)
    for c in found:
        assert (c.block_m, c.block_n, c.block_k) == (cfg.block_m, cfg.block_n, cfg.block_k)
        assert c.num_warps in (2, 4, 8, 16) and c.num_stages in (2, 3, 4)
        assert c.num_warps == cfg.num_warps or c.num_stages == cfg.num_stages
        assert abs(c.num_stages - cfg.num_stages) <= 1


def test_no_more_warps_when_the_registers_do_not_allow_them():
    tight = Resources(
        registers=255, shared_bytes=60_000, shared_per_sm=228 * 1024, max_warps_per_sm=64
    )
    found = neighbours(LaunchConfig(256, 64, 16, 8, 3), tight)
    assert all(c.num_warps <= 8 for c in found)


def trial(gain, half=0.2, stable=True, case="kb66"):
    cfg = LaunchConfig(128, 64, 16, 4, 3)
    return Trial(case, cfg, cfg, 1.0, 1.0, Change(gain, gain - half, gain + half), stable)


@pytest.mark.parametrize(
    "trials, adopted",
    [
        ([trial(5.0)], True),
        ([trial(0.9)], False),  # under the threshold
        ([trial(1.1, half=0.5)], False),  # above it, but not with confidence
        ([trial(5.0, stable=False)], False),
        ([trial(5.0), trial(0.2, case="other")], False),  # must gain on every case
        ([], False),
    ],
)
def test_adoption_rule(trials, adopted):
    assert adopt(trials, 1.0)[0] is adopted


class FakeTimer:
    def __init__(self, batch_noise=0.0):
        self.rng = random.Random(5)
        self.batch_noise = batch_noise

    def sample(self, fns, rounds):
        drift = 1 + self.rng.gauss(0, self.batch_noise)
        out = [[f.ms * drift * (1 + self.rng.gauss(0, 1e-4)) for _ in range(rounds)] for f in fns]
        time.sleep(sum(map(sum, out)) / 1e3)
        return out

    def clock(self):
        return ClockState(1980.0)


def calls(times):
    def make(cfg):
        def fn():
            return None

        fn.ms = times[cfg]
        return fn

    return make


def run(times, batch_noise=0.0):
    original = LaunchConfig(128, 64, 16, 4, 3)
    candidates = neighbours(original, ROOM)
    trials = measure_candidates(
        FakeTimer(batch_noise),
        "kb66",
        original,
        candidates,
        calls(times(candidates)),
        Plan(budget_s=0.4, min_time_s=0.1),
        max_halfwidth_pct=0.5,
    )
    return {t.candidate: adopt([t], 1.0) for t in trials}


def test_clear_gain_is_adopted_and_small_gain_reverted():
    def times(cands):
        return {c: 1.0 for c in cands} | {cands[1]: 0.95, cands[2]: 0.995}

    decisions = run(times)
    adopted = [c for c, (ok, _) in decisions.items() if ok]
    assert len(adopted) == 1 and adopted[0].num_warps == 8
    assert len(decisions) == len(neighbours(LaunchConfig(128, 64, 16, 4, 3), ROOM)) - 1


def test_unstable_measurement_is_reverted():
    def times(cands):
        return {c: 1.0 for c in cands} | {cands[1]: 0.95}

    decisions = run(times, batch_noise=0.05)
    assert not any(ok for ok, _ in decisions.values())
    assert any("unstable" in why for _, why in decisions.values())


def test_edit_keeps_originals_and_adds_once():
    source = Path(ig.__file__).read_text()
    new = LaunchConfig(256, 64, 16, 16, 4)
    edited = edit_config_list(source, [new])
    assert edited.count(new.source()) == 1
    for cfg in ig.AUTOTUNE_CONFIGS:
        kw = cfg.kwargs
        line = LaunchConfig(
            kw["BLOCK_M"], kw["BLOCK_N"], kw["BLOCK_K"], cfg.num_warps, cfg.num_stages
        ).source()
        assert line in edited
    assert edit_config_list(edited, [new]) == edited
    with pytest.raises(ValueError, match="AUTOTUNE_CONFIGS"):
        edit_config_list("x = 1\n", [new])


def test_tune_without_a_gpu_is_one_clear_line():
    out = subprocess.run(
        [sys.executable, "-m", "pytest_conv3d_perf.cli", "tune"], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "conv3d-perf tune: a CUDA GPU was required but torch.cuda.is_available() is False"
    )


def test_write_refuses_a_kernel_outside_the_repository(tmp_path):
    from pathlib import Path

    from pytest_conv3d_perf.tune_gpu import TuneError, writable_source

    root = Path(__file__).resolve().parents[1]
    assert writable_source(ig.conv3d, root) == Path(ig.__file__).resolve()
    # pytest's own code stands in for a kernel installed in site-packages.
    with pytest.raises(TuneError, match="outside this repository"):
        writable_source(pytest.main, root)
    with pytest.raises(TuneError, match="outside this repository"):
        writable_source(ig.conv3d, tmp_path)


def test_tune_names_the_kernel_it_would_tune_from_the_configuration():
    from pathlib import Path

    from pytest_conv3d_perf.cli import configured_kernel

    assert configured_kernel(Path(__file__).resolve().parents[1]) == "kernels.implicit_gemm:conv3d"
