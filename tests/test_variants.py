"""The kernel's candidate copies (bench/variants/) against the float64 truth, and
bench.kernel_ab's handling of the files it compares. No GPU: under the CPU interpreter
(the plugin sets TRITON_INTERPRET before anything imports Triton), with the suite's checker
and its fp32 rule."""

import dataclasses
import functools
import math
from pathlib import Path

import pytest
import torch

from bench import kernel_ab
from bench.variants import load, materialize
from kernels import implicit_gemm as ig
from pytest_conv3d_perf.cases import builtin_cases, select
from tests.one_call import assert_one_call_computes_the_truth

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = sorted(p for p in (ROOT / "bench" / "variants").glob("v*.diff"))


def _case(base: str, **sizes):
    return dataclasses.replace(select(builtin_cases(), [base])[0], small=None, **sizes)


# Small enough for the interpreter, and each reaching a path a variant changes: unpadded
# layers whose output positions per channel are a multiple of 4 (v24a's 16-byte stores) or
# of 2 only, with a last row block cut short, their taps loaded a step ahead (three stages,
# v24c) or in the step (two); a padded layer (v24b's bounds check); OC not a multiple of
# the block; a bias.
CASES = [
    # kb59's 3x3x1 kernel, K = 27: output 4x6x5 = 120 positions.
    (_case("kb59", n=2, ic=3, oc=16, input=(6, 8, 5)), ig._config(32, 16, 16, 4, 3)),
    # OC 17 and a bias, K = 81: output 4x5x6 = 120.
    (_case("n1_oc17_bias", n=1, ic=3, oc=17, input=(6, 7, 8)), ig._config(32, 16, 16, 4, 2)),
    # Padding (1, 0, 1), OC 24, K = 108: output 5x4x5 = 100.
    (_case("odd_sizes_oc24", n=2, ic=4, oc=24, input=(5, 6, 5)), ig._config(32, 16, 16, 4, 3)),
    # Dilation 2 without padding: output 3x3x2 = 18, a multiple of 2 only.
    (
        _case("dilated2", n=1, ic=2, oc=16, input=(7, 7, 6), padding=(0, 0, 0)),
        ig._config(32, 16, 32, 4, 2),
    ),
    # Padded with 16 input channels (v27d's tap-major K): BLOCK_K 16 divides IC, so a step
    # lies within one tap; K = 432 in 27 steps.
    (
        _case("video_c64", name="tap_major_ic16", n=1, ic=16, oc=16, input=(3, 4, 5)),
        ig._config(32, 16, 16, 4, 3),
    ),
    # The same with BLOCK_K 32, which does not divide IC: a step spans two taps.
    (
        _case("video_c64", name="tap_major_ic16_bk32", n=1, ic=16, oc=16, input=(3, 4, 5)),
        ig._config(32, 16, 32, 4, 2),
    ),
    # Unpadded, OC within BLOCK_N, K = 108 in four steps of 32, a bias; output 4x5x6 = 120,
    # 4 row blocks an image (the shape v25's persistent programs, retired, looped over).
    (
        _case("n1_oc17_bias", name="persistent_k4_bias", n=2, ic=4, oc=16, input=(6, 7, 8)),
        ig._config(32, 16, 32, 4, 2),
    ),
]


@pytest.fixture(scope="module", params=VARIANTS, ids=lambda p: p.stem)
def variant(request):
    return load(materialize(request.param), f"variant_{request.param.stem}", own_digest=True)


def test_there_are_variants_to_check():
    assert VARIANTS, "bench/variants/ holds no v*.diff"


@pytest.mark.parametrize("case, config", CASES, ids=[c.name for c, _ in CASES])
def test_a_variant_computes_the_truth(variant, conv3d_device, case, config):
    fn = functools.partial(variant.conv3d, config=config)
    assert_one_call_computes_the_truth(fn, case, conv3d_device)


def test_the_cases_reach_both_stagings_and_every_output_alignment():
    unpadded = {math.prod(c.output_shape[2:]) % 4 for c, _ in CASES if not any(c.padding)}
    assert unpadded == {0, 2}
    assert {ig.loads_taps_ahead(cfg) for _, cfg in CASES} == {True, False}
    assert {any(case.padding) for case, _ in CASES} == {True, False}
    # v27d: a padded layer of 16 input channels, with a BLOCK_K that divides IC and one that
    # does not.
    tap_major = [cfg for c, cfg in CASES if any(c.padding) and c.ic % 16 == 0]
    assert {c.ic % cfg.kwargs["BLOCK_K"] == 0 for c, cfg in CASES if cfg in tap_major} == {
        True,
        False,
    }


@pytest.mark.parametrize("k", [1, 27, 81, 127, 128, 129, 315, 1026])
def test_an_unpadded_tap_row_holds_every_load_a_step_ahead(variant, k):
    # Where a variant loads the taps ahead without a mask (v24c), the last step's load of
    # the next step, k0 + BLOCK_K .. k0 + 2 BLOCK_K - 1, must lie inside the row.
    row = variant._tap_table(k, (1, 1, 1), (1, 1, 1), (4, 4, 4), "cpu", False)
    for cfg in variant.AUTOTUNE_CONFIGS:
        bk = cfg.kwargs["BLOCK_K"]
        last = (k - 1) // bk * bk
        needs = last + 2 * bk if variant.loads_taps_ahead(cfg) else last + bk
        # A row of K offsets exactly is loaded with a mask (kernels/implicit_gemm.py).
        assert row.numel() == k or row.numel() >= needs, (cfg, row.numel(), needs)


def test_each_variant_keeps_its_tuning_picks_apart():
    digests = {
        load(materialize(p), f"digest_{p.stem}", own_digest=True)._package_digest()
        for p in VARIANTS
    }
    assert len(digests) == len(VARIANTS)
    assert ig._package_digest() not in digests


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "give --base"),
        (["--variant", "bench/variants/no_such_variant.diff"], "no such variant file"),
        (["--base", "bench/variants/no_such_base.py"], "no such base file"),
        (["--base", "no-such-revision-xyz"], "neither a file nor a git revision"),
        (["--variant", "kernels/implicit_gemm.py", "--recorded", "nope.json"], "baseline file"),
        (["--variant", "kernels/implicit_gemm.py", "--cases", "kb54,nope"], "unknown case 'nope'"),
        (["--variant", "kernels/implicit_gemm.py", "--input-scale", "0"], "positive and finite"),
        (["--variant", "kernels/implicit_gemm.py", "--input-scale", "inf"], "positive and finite"),
        (["--variant", "kernels/implicit_gemm.py", "--input-scale", "nan"], "positive and finite"),
    ],
)
def test_kernel_ab_rejects_bad_paths_before_it_needs_a_gpu(argv, message, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert kernel_ab.main(argv) == 2
    assert message in capsys.readouterr().err


def test_kernel_ab_reads_all_as_every_case(capsys, monkeypatch):
    # Past the cases, the next check is the GPU's: "all" got that far.
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(kernel_ab.torch.cuda, "is_available", lambda: False)
    assert kernel_ab.main(["--variant", "kernels/implicit_gemm.py", "--cases", "all"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


def test_kernel_ab_times_a_variant_against_todays_file_by_default(monkeypatch):
    monkeypatch.chdir(ROOT)
    variant = str(VARIANTS[0].relative_to(ROOT))
    ap_args = kernel_ab.argparse.Namespace(variant=variant, base="", file=kernel_ab.KERNEL)
    base, head, base_label, head_label = kernel_ab.resolve_sides(ap_args)
    assert base == Path(kernel_ab.KERNEL) and head.name == VARIANTS[0].stem + ".py"
    assert head.read_text() != base.read_text()  # today's file with the diff applied
    assert head_label == variant and "today" in base_label
    # A file may be the base too, and a git revision still is.
    ap_args.base = variant
    assert kernel_ab.resolve_sides(ap_args)[0].read_text() == head.read_text()
    ap_args.base = "HEAD"
    text = kernel_ab.resolve_sides(ap_args)[0].read_text()
    assert "_conv3d_kernel" in text


class _Launches:
    """``_conv3d_kernel[grid](*args, **kwargs)`` recorded, nothing run."""

    def __init__(self):
        self.kwargs = []

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.kwargs.append(kwargs)

        return launch


def test_a_recorded_config_runs_on_the_tuned_launch_path(variant, monkeypatch):
    # kernel_ab --recorded: the config stands in for the tuning, and the calls after the
    # first launch through the plan as a tuned key's do.
    monkeypatch.setattr(variant, "interpreting", lambda: False)
    monkeypatch.setattr(variant, "runs_on", lambda device: True)  # the stub launches on the CPU
    monkeypatch.setattr(variant, "_MODE_BY_DEVICE", {-1: "tf32x3-ws"})
    monkeypatch.setattr(variant, "_TUNED", {})
    monkeypatch.setattr(variant, "_PLANS", {})
    monkeypatch.setattr(variant, "split_tf32", lambda t: (t.clone(), t.clone()))
    monkeypatch.setattr(variant, "_tune", variant._tune)
    launches = _Launches()
    monkeypatch.setattr(variant, "_conv3d_kernel", launches)
    cfg = variant.AUTOTUNE_CONFIGS[5]
    assert kernel_ab.pin_config(variant, cfg, variant._tune) == {}
    x, w = torch.randn(1, 3, 6, 6, 6), torch.randn(4, 3, 3, 3, 3)
    for _ in range(2):
        variant.conv3d(x, w)
    # The real tuner would have asked torch.cuda for the GPU's name; the second call
    # launched from the plan the first one stored, with the same arguments.
    assert len(variant._PLANS) == 1 and launches.kwargs[0] == launches.kwargs[1]
    assert {k: launches.kwargs[0][k] for k in cfg.kwargs} == cfg.kwargs
    assert variant.last_config() == variant._config_dict(cfg)
    # A kernel without its own tuner gets the config as an argument.
    assert kernel_ab.pin_config(variant, cfg, None) == {"config": cfg}


def test_a_variant_that_no_longer_applies_is_a_clear_error(tmp_path):
    from bench.variants import VariantError

    stale = tmp_path / "stale.diff"
    stale.write_text(
        VARIANTS[0].read_text().replace("\n-", "\n-# a line today's file does not have\n-", 1)
    )
    with pytest.raises(VariantError, match="no longer applies"):
        materialize(stale)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--case", "kb54,nope"], "unknown case 'nope'"),
        (["--settings", "hot"], "--settings: idle, warmed or both"),
        (["--variant", "bench/variants/no_such_variant.diff"], "no such variant file"),
    ],
)
def test_autotune_pick_rejects_bad_arguments_before_it_starts_a_process(argv, message, capsys):
    from bench import autotune_pick

    assert autotune_pick.main(argv) == 2
    assert message in capsys.readouterr().err


def test_kernel_ab_checks_each_side_against_float64():
    # A side that computes the wrong thing fast is marked, not reported as a gain alone.
    from pytest_conv3d_perf import check

    case = _case("n1_oc17_bias", n=1, ic=3, oc=5, input=(5, 6, 7))
    inputs = check.random_inputs(case, torch.device("cpu"), seed=1)
    right = torch.nn.functional.conv3d(
        inputs.x.double(), inputs.weight.double(), inputs.bias.double(), case.stride
    ).float()
    good = kernel_ab._fp32_report(right, inputs, case)
    assert good.ok and good.share < 0.01
    wrong = right.clone()
    wrong.view(-1)[7] += 1e-2
    bad = kernel_ab._fp32_report(wrong, inputs, case)
    assert not bad.ok and bad.share > 1
    row = {"base_fp32_rule": True, "today_fp32_rule": False}
    assert kernel_ab._rule_cell(row) == "FAILED: today"
    assert kernel_ab._rule_cell({**row, "today_fp32_rule": True}) == "both"
    # With the shares the row says how much of the rule each side spends.
    shares = {"base_fp32_share": 0.031, "today_fp32_share": 0.254}
    assert kernel_ab._rule_cell({**row, **shares, "today_fp32_rule": True}) == (
        "both (3.1%, 25.4%)"
    )
