"""bench/gluon_persist (the persistent Gluon experiment for the write-bound KernelBench
layers): which layers it takes, its command line, and that its kernel compiles for sm_90
with the installed Triton (no GPU; its numbers come from the device: notes/kernel.md,
round 3, ninth session)."""

from pathlib import Path

import pytest
import torch

from bench import gluon_conv, gluon_persist
from tests.offline_shared import run_compiling

ROOT = Path(__file__).resolve().parents[1]

needs_gluon = pytest.mark.skipif(
    gluon_persist.gluon is None, reason="this Triton has no Gluon Hopper TMA"
)


@needs_gluon
def test_it_takes_unpadded_layers_whose_weight_fits_in_whole_channel_blocks():
    x = torch.empty(1, 3, 8, 8, 8)

    def weight(oc, ic, k=3):
        return torch.empty(oc, ic, k, k, k)

    assert gluon_persist.applies(x, weight(64, 3), 0, 1, 1) is None
    assert gluon_persist.applies(x, weight(128, 3), 0, 1, 1) is None
    # K 128, eight steps of 16: the largest weight kept whole.
    assert gluon_persist.applies(x, torch.empty(64, 128, 1, 1, 1), 0, 1, 1) is None
    assert "more than 8 steps" in gluon_persist.applies(x, weight(64, 5), 0, 1, 1)
    assert "unpadded" in gluon_persist.applies(x, weight(64, 3), 1, 1, 1)
    assert "unpadded" in gluon_persist.applies(x, weight(64, 3), 0, 1, 2)
    assert "whole blocks of 64" in gluon_persist.applies(x, weight(48, 3), 0, 1, 1)
    with pytest.raises(gluon_conv.NotApplicable, match="whole blocks"):
        gluon_persist.conv3d_persist(x, weight(17, 3))


@needs_gluon
def test_an_output_of_rows_not_16_byte_aligned_is_not_taken():
    # 6x6x7 = 252 positions is a multiple of 4; 5x5x5 = 125 is not.
    with pytest.raises(gluon_conv.NotApplicable, match="16-byte aligned"):
        gluon_persist.conv3d_persist(torch.empty(1, 3, 7, 7, 7), torch.empty(64, 3, 3, 3, 3))


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
    if gluon_persist.gluon is None:
        pytest.skip("the command stops earlier without Gluon")
    assert gluon_persist.main(argv) == 2
    assert message in capsys.readouterr().err


def test_timing_without_a_gpu_is_a_clear_error(capsys, monkeypatch):
    if gluon_persist.gluon is None:
        pytest.skip("the command stops earlier without Gluon")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gluon_persist.main(["--cases", "kb59"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


@needs_gluon
def test_the_kernel_compiles_for_sm90_with_the_weight_resident_and_a_tma_store():
    done = run_compiling(["-m", "bench.gluon_persist", "--static", "--cases", "kb54,kb59"])
    assert done.returncode == 0, done.stderr[-2000:]
    lines = {
        line.split(" BLOCK_M 128:")[0]: line
        for line in done.stdout.splitlines()
        if " BLOCK_M 128: shared" in line
    }
    # The weight's two halves whole (#54: 6 steps of 16 x 64, #59: 2) and one output tile
    # of 128 x 64 in shared memory, 4 bytes each; no STG: the tile leaves by TMA.
    assert "shared 81920" in lines["kb54"] and "shared 49152" in lines["kb59"]
    for line in lines.values():
        assert "'stores': {}" in line and "'spill_stack_bytes': 0" in line
    # One tensor-core wait a K step.
    assert "'mma_waits': 6" in lines["kb54"] and "'mma_waits': 2" in lines["kb59"]
