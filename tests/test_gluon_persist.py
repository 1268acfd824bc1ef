"""bench/gluon_persist (the kernel file's persistent Gluon kernel at other tiles and
programs a multiprocessor): which suite cases it takes, its configs, its command line, and
its sm_90 compile with the installed Triton (no GPU; its numbers come from the device:
notes/kernel.md, round 3, ninth and tenth sessions)."""

import re

import pytest
import torch

from bench import gluon_persist
from kernels import implicit_gemm as ig
from pytest_conv3d_perf.cases import builtin_cases, select
from tests.offline_shared import run_compiling

needs_tma = pytest.mark.skipif(
    ig._conv3d_gl_persist_kernel is None, reason="this Triton has no Gluon Hopper TMA"
)


@needs_tma
def test_it_takes_the_suite_cases_the_kernel_file_would():
    cases = {c.name: c for c in builtin_cases()}
    assert gluon_persist.why_not(cases["kb54"]) is None
    assert gluon_persist.why_not(cases["kb59"]) is None
    assert "unpadded" in gluon_persist.why_not(cases["c3d_conv3a"])
    # KernelBench #60: K 3 x 3 x 5 x 7 = 315, more than 8 steps of 16.
    assert "not K up to 128" in gluon_persist.why_not(cases["kb60"])


def test_its_configs_are_the_kernel_files_at_other_tiles_and_programs():
    for cfg in ig.PERSIST_CONFIGS:
        kw = cfg.kwargs
        same = gluon_persist.persist_config(kw["BLOCK_M"], kw["PER_SM"])
        assert same.kwargs == kw and same.num_warps == cfg.num_warps
    assert ig.is_persistent(gluon_persist.persist_config(64, 5))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--per-sm", "two"], "integers"),
        (["--per-sm", "0"], "one or more"),
        (["--block-m", "32"], "64, 128 or both"),
        (["--block-m", "many"], "64, 128 or both"),
    ],
)
def test_bad_options_exit_2_with_a_message(argv, message, capsys):
    assert gluon_persist.main(argv) == 2
    assert message in capsys.readouterr().err


def test_timing_without_a_gpu_is_a_clear_error(capsys, monkeypatch):
    if ig._conv3d_gl_persist_kernel is None:
        pytest.skip("the command stops earlier without Gluon")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gluon_persist.main(["--cases", "kb59"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


@needs_tma
def test_the_kernel_compiles_for_sm90_at_either_tile():
    done = run_compiling(
        [
            "-m",
            "bench.gluon_persist",
            "--static",
            "--cases",
            "kb54,c3d_conv3a",
            "--block-m",
            "64,128",
        ]
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = {line.split(":")[0]: line for line in done.stdout.splitlines() if ": shared" in line}
    # #54's weight halves whole (80 columns x 64: 5 steps of 16, its 81st column added on
    # the CUDA cores, v59; BF16 at 64 rows, v63, else TF32) and one output tile of
    # BLOCK_M x 64 in fp32; no STG: the tile leaves by TMA; one tensor-core wait a K step;
    # three products a step, of one k16 (BF16) or 2 k8 x (BLOCK_M / 64) instructions. The
    # 64-row tile spills the few bytes v63 was timed with (16 under Triton 3.6, 24 3.9).
    small, large = lines["kb54 BLOCK_M 64"], lines["kb54 BLOCK_M 128"]
    assert "shared 36864" in small and "'mma': 15," in small
    assert "shared 73728" in large and "'mma': 60," in large
    assert "'spill_stack_bytes': 0" in large
    assert re.search(r"'spill_stack_bytes': (0|8|16|24),", small), small
    for line in lines.values():
        assert "'stores': {}" in line
        assert "'mma_waits': 5" in line
    assert "c3d_conv3a: not taken: only unpadded" in done.stdout
    [case] = select(builtin_cases(), ["c3d_conv3a"])
    assert gluon_persist.why_not(case) is not None
