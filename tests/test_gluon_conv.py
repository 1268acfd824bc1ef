"""bench/gluon_conv (the Gluon experiment beside the kernel file): which layers its path
takes, its command line, and that its kernel still compiles for sm_90 with the installed
Triton (no GPU; Gluon does not run under the CPU interpreter, so its numbers come from the
device: notes/kernel.md, round 3, eighth session)."""

from pathlib import Path

import pytest
import torch

from bench import gluon_conv
from tests.offline_shared import run_compiling

ROOT = Path(__file__).resolve().parents[1]

needs_gluon = pytest.mark.skipif(
    gluon_conv.gluon is None, reason="this Triton has no Gluon Hopper ops"
)


@pytest.mark.parametrize(
    ("text", "block"),
    [("128x64x16s4", (128, 64, 16, 4)), ("64X64X32S3", (64, 64, 32, 3))],
)
def test_a_block_reads_as_tile_and_stages(text, block):
    assert gluon_conv.parse_block(text) == block


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("128x64x16", "is not MxNxKsS"),
        ("128x64s3", "is not MxNxKsS"),
        ("256x64x16s3", "M 64 or 128"),
        ("128x64x64s3", "K 16 or 32"),
        ("128x64x16s1", "2 stages or more"),
    ],
)
def test_a_malformed_block_says_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        gluon_conv.parse_block(text)


def test_a_malformed_block_on_the_command_line_exits_2(capsys):
    if gluon_conv.gluon is None:
        pytest.skip("the command stops earlier without Gluon")
    assert gluon_conv.main(["--static", "--blocks", "128x64"]) == 2
    assert "is not MxNxKsS" in capsys.readouterr().err


@needs_gluon
def test_the_path_takes_unpadded_layers_of_the_unpromoted_loop_only():
    x = torch.empty(1, 3, 8, 8, 8)

    def weight(ic, k=3):
        return torch.empty(64, ic, k, k, k)

    assert gluon_conv.applies(x, weight(3), 0, 1, 1) is None
    assert "tap-major" in gluon_conv.applies(x, weight(3), 1, 1, 1)
    assert "tap-major" in gluon_conv.applies(x, weight(3), (0, 0, 1), 1, 1)
    assert "one group" in gluon_conv.applies(x, weight(3), 0, 1, 2)
    # 40 channels of 3x3x3, unpadded: K = 1080, above the promoted loop's threshold.
    assert "promoted" in gluon_conv.applies(x, weight(40), 0, 1, 1)
    # Padded, tap-major (a multiple of 16 channels): either loop.
    assert gluon_conv.applies(x, weight(16), 1, 1, 1) is None
    assert gluon_conv.applies(x, weight(48), 1, 1, 1) is None
    with pytest.raises(gluon_conv.NotApplicable, match="tap-major"):
        gluon_conv.conv3d_gl(x, weight(3), padding=1)
    # A tile whose BLOCK_K does not divide the channels: no tap-major steps.
    with pytest.raises(gluon_conv.NotApplicable, match="does not divide"):
        gluon_conv.conv3d_gl(
            torch.empty(1, 16, 8, 8, 8), weight(16), padding=1, block=(64, 64, 32, 3)
        )


@needs_gluon
def test_the_kernel_compiles_for_sm90_with_one_tensor_core_wait_a_step():
    done = run_compiling(["-m", "bench.gluon_conv", "--static", "--cases", "kb54,c3d_conv3a"])
    assert done.returncode == 0, done.stderr[-2000:]
    [line] = [out for out in done.stdout.splitlines() if out.startswith("kb54 ")]
    # The three products of a step go back to back, one wait after them (the kernel
    # file's loop waits after each of the first two), and the input's gather is 16 loads
    # of a word straight into registers (and 4 of its taps), no copy through shared memory.
    assert "'mma_waits': 1" in line
    assert "'LDG.E': 20" in line
    assert "'spill_stack_bytes': 0" in line
    # The padded tap-major kernel in the promoted loop (c3d_conv3a: K 3456): its three
    # products and one wait a step too (the kernel file's promoted loop waits after each).
    [line] = [out for out in done.stdout.splitlines() if out.startswith("c3d_conv3a ")]
    assert "'mma_waits': 1" in line and "'spill_stack_bytes': 0" in line


def test_static_under_the_interpreter_is_a_clear_error(capsys, monkeypatch):
    if gluon_conv.gluon is None:
        pytest.skip("the command stops earlier without Gluon")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert gluon_conv.main(["--static", "--cases", "kb54"]) == 2
    assert "unset TRITON_INTERPRET" in capsys.readouterr().err


def test_sides_are_checked_against_float64_then_timed_against_the_base(monkeypatch, capsys):
    # The timing loop both Gluon experiments share, with the GPU's timer replaced: each
    # side's rule and error come from float64, its change from the rounds' ratios.
    import triton.testing

    from pytest_conv3d_perf import check
    from pytest_conv3d_perf.cases import builtin_cases, select

    [case] = select(builtin_cases(), ["tiny_odd"])
    inputs = check.random_inputs(case, torch.device("cpu"), seed=1)
    args = (inputs.x, inputs.weight, inputs.bias, case.stride, case.padding, case.dilation)
    right = torch.nn.functional.conv3d(*args)

    def not_here():
        raise gluon_conv.NotApplicable("not this layer")

    sides = {"base": lambda: right, "wrong": lambda: right + 1.0, "skipped": not_here}
    clock = iter([1.0, 1.1, 1.0, 1.2, 1.0, 1.3])
    monkeypatch.setattr(triton.testing, "do_bench", lambda fn, rep, return_mode: next(clock))
    rows = gluon_conv.time_sides(case, inputs, sides, rounds=3, rep_ms=1, width=8)
    assert "skipped: not timed: not this layer" in capsys.readouterr().out
    base, wrong = rows
    assert "fp32 rule True" in base and "change +0.00%" in base
    assert "fp32 rule False, max abs err 1.0e+00" in wrong
    assert "1.2000 ms" in wrong and "change +20.00% [+10.00, +30.00]" in wrong
