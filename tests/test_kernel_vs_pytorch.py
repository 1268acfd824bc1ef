"""bench/kernel_vs_pytorch.py's arithmetic and its arguments, without a GPU."""

import pytest

from bench import kernel_vs_pytorch as kvp


def test_the_rounds_give_pytorchs_time_over_the_kernels_per_round():
    summary = kvp.ratio_summary(mine=[10.0, 10.0, 20.0], theirs=[10.5, 9.5, 21.0])
    assert summary["x_fp32_median"] == pytest.approx(1.05)
    assert summary["x_fp32_range"] == pytest.approx([0.95, 1.05])


def test_zero_rounds_is_refused_before_any_gpu_work(capsys):
    assert kvp.main(["--rounds", "0"]) == 2
    assert "--rounds must be at least 1" in capsys.readouterr().err


def test_a_pytorch_setting_leaves_cudnns_flags_as_it_found_them():
    cudnn = kvp.torch.backends.cudnn
    saved = cudnn.benchmark, cudnn.allow_tf32
    try:
        cudnn.benchmark, cudnn.allow_tf32 = False, True
        with pytest.raises(RuntimeError), kvp.cudnn_flags(True, False):
            assert (cudnn.benchmark, cudnn.allow_tf32) == (True, False)
            raise RuntimeError("a timing that failed")
        assert (cudnn.benchmark, cudnn.allow_tf32) == (False, True)
    finally:
        cudnn.benchmark, cudnn.allow_tf32 = saved
