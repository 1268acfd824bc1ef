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


def test_a_floor_is_the_larger_of_the_bytes_and_the_products_the_precision_issues():
    from pytest_conv3d_perf.cases import builtin_cases

    cases = {c.name: c for c in builtin_cases()}
    h200 = kvp.Ceilings(bandwidth=4.3e12, tf32=4.9e14)

    def floor(name: str, precision: str = "tf32x3-ws") -> float:
        return kvp.floor_ms(cases[name].flop, cases[name].min_bytes, precision, h200)

    # The issue's H200 floors: #59 is bound by its bytes (mostly the output), #60 and #66
    # by three TF32 products per product, #54 by both about equally.
    assert floor("kb59") == pytest.approx(cases["kb59"].min_bytes / 4.3e9, rel=1e-9)
    assert floor("kb60") == pytest.approx(3 * cases["kb60"].flop / 4.9e11, rel=1e-9)
    assert [round(floor(n), 2) for n in ("kb54", "kb59", "kb60", "kb66")] == [
        0.24,
        0.64,
        0.85,
        0.42,
    ]
    assert floor("kb60", "tf32") == pytest.approx(floor("kb60") / 3)
    assert kvp.tf32_peak("NVIDIA H200") == kvp.tf32_peak("NVIDIA H100 80GB HBM3") == 4.9e14
    assert kvp.tf32_peak("NVIDIA GeForce RTX 4090") is None


def test_real_layers_are_valid_cases_and_an_unknown_one_is_refused(capsys):
    from bench import real_layers

    names = [c.name for c in real_layers.layers()]
    assert len(names) >= 10 and len(set(names)) == len(names)
    assert real_layers.main(["--layers", "c3d_conv1a,nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_a_real_layers_progress_line_says_floor_pytorch_and_the_rule():
    from bench import real_layers

    row = {"case": "c3d_conv2a", "ms": 0.5, "floor_ms": 0.25, "as_called": 0.25, "fp32": 1.0}
    line = real_layers.progress_line({**row, "ok": True})
    assert line == (
        "c3d_conv2a: 0.5000 ms, floor 0.2500 (x2.00), PyTorch as called x0.50, "
        "in fp32 x2.00, fp32 rule kept"
    )
    assert real_layers.progress_line({**row, "ok": False}).endswith("fp32 rule MISSED")
