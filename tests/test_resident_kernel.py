"""v50: the kernel file's resident kernel (``_conv3d_gl_resident_kernel``), which a GLUON=1
config launches where the layer's whole weight fits in shared memory. On this machine:
which layers it takes, what a launch passes it, its grid, that a plan always goes back
through Triton's launch for it, and its sm_90 compile. On an H100 or H200 (the device): its
results against float64, at the config and through a plan, call after call."""

from __future__ import annotations

import dataclasses
import functools
import json

import pytest
import torch

from kernels import conv3d
from kernels import implicit_gemm as ig
from pytest_conv3d_perf import check
from pytest_conv3d_perf.cases import builtin_cases, select
from tests.launch_stubs import Recorder
from tests.offline_shared import run_compiling
from tests.one_call import assert_one_call_computes_the_truth, assert_one_call_keeps_infinities

needs_gluon = pytest.mark.skipif(ig.gluon is None, reason="this Triton has no Gluon Hopper ops")
[GLUON] = ig.GLUON_CONFIGS


@pytest.mark.parametrize(
    ("k", "oc", "steps"),
    [
        (315, 64, 20),  # KernelBench #60 and #66: 80 KB of weight
        (81, 64, 6),  # #54's
        (81, 17, 6),  # fewer channels than a block: the padded rows are zeros
        (384, 64, 24),  # the largest weight kept: 96 KB
        (385, 64, 0),  # 25 steps: not kept
        (315, 65, 0),  # two blocks of channels: the ring
        (16, 64, 0),  # one step: the taps are loaded two ahead
        (17, 64, 2),
    ],
)
def test_a_layer_is_resident_where_its_weight_fits_one_cta(k, oc, steps):
    assert ig.resident_steps(k, oc) == steps


_FLAGS = {
    "HAS_BIAS": False,
    "PADDED": False,
    "PRECISION": "tf32x3-ws",
    "PROMOTE": False,
    "ASSUME_K": True,
    "OUT_VEC": 4,
    "TAP_IC": 0,
    "KSTEPS": 0,
    "NB": 0,
    "HALF": 0,
}


def test_only_a_gluon_1_launch_of_a_layer_that_fits_carries_its_steps():
    resident = ig.launch_kwargs({**_FLAGS, "RSTEPS": 20}, GLUON)
    assert resident["RSTEPS"] == 20 and resident["maxnreg"] == ig.RESIDENT_REGS
    # Every constexpr of the resident kernel's parameters, and nothing else but the
    # launch's options (num_warps, maxnreg, ...).
    if ig.gluon is not None:
        names = tuple(ig._conv3d_gl_resident_kernel.arg_names)
        options = set(GLUON.all_kwargs()) - set(GLUON.kwargs) | {"maxnreg"}
        assert set(resident) - options == set(names[names.index("HAS_BIAS") :])
    assert "RSTEPS" not in ig.launch_kwargs({**_FLAGS, "RSTEPS": 0}, GLUON)
    for other in (ig.AUTOTUNE_CONFIGS[1], ig.PERSIST_CONFIGS[0]):
        assert "RSTEPS" not in ig.launch_kwargs({**_FLAGS, "RSTEPS": 20}, other)


def _kb60_like(n=2, ic=3, oc=64, input=(6, 9, 11), **more):
    base = select(builtin_cases(), ["kb60"])[0]
    return dataclasses.replace(
        base, name="resident", small=None, n=n, ic=ic, oc=oc, input=input, **more
    )


@needs_gluon
@pytest.mark.parametrize(
    ("n", "input", "ctas"),
    [
        # kb60: 16 images of 1,686 tiles of 128 positions: every SM.
        (16, (64, 64, 64), 132),
        # One image of 4 x 1 x 1 = 4 positions: one tile, one CTA.
        (1, (6, 5, 7), 1),
        # 3 images of 1 x 5 x 5 = 25 positions: 3 tiles, one CTA of three warpgroups.
        (3, (3, 9, 11), 1),
        # 7 tiles: three CTAs, the last with one warpgroup's tile.
        (7, (3, 9, 11), 3),
    ],
)
def test_the_resident_grid_is_a_cta_an_sm_or_a_tile_a_warpgroup(n, input, ctas, monkeypatch):
    case = _kb60_like(n=n, input=input)
    seen = Recorder([])
    monkeypatch.setattr(ig, "_conv3d_gl_resident_kernel", seen)
    monkeypatch.setattr(ig, "_sm_count", lambda device: 132)
    x = torch.empty(case.n, case.ic, *case.input)
    args = (x, x, x, x, x, x, *ig.case_scalar_args(case))
    ig._launch(GLUON, (999, 1, 1), args, {"RSTEPS": 20})
    [(grid, _, _)] = seen.launches
    assert grid == (ctas, 1, 1)


@needs_gluon
def test_a_plan_launches_the_resident_kernel_through_triton_every_call(
    stubbed_gpu_path, monkeypatch
):
    # Its grid is not the ring's (the plan's), and its constexprs are not the ring's
    # either: the compiled ring's direct launcher must never stand in for it.
    _, tuner = stubbed_gpu_path
    tuner.config = GLUON
    ring, resident = Recorder([]), Recorder([])
    monkeypatch.setattr(ig, "_conv3d_gl_kernel", ring)
    monkeypatch.setattr(ig, "_conv3d_gl_resident_kernel", resident)
    monkeypatch.setattr(ig, "_sm_count", lambda device: 132)
    x, w = torch.randn(2, 3, 6, 9, 11), torch.randn(64, 3, 3, 5, 7)
    for _ in range(4):
        conv3d(x, w)
    assert ring.launches == [] and resident.direct == []
    assert [kw["RSTEPS"] for _, _, kw in resident.launches] == [20] * 4
    # A layer of 65 channels: the ring, and from the plan's second call its direct launch.
    w65 = torch.randn(65, 3, 3, 5, 7)
    for _ in range(3):
        conv3d(x, w65)
    assert len(ring.launches) == 2 and len(ring.direct) == 1
    assert all("RSTEPS" not in kw for _, _, kw in ring.launches)


@needs_gluon
def test_the_resident_kernel_compiles_for_sm90_with_no_barrier_in_its_loops(tmp_path):
    # As bench.kernel_static reads a GLUON=1 config from a baseline that recorded it, in a
    # child without TRITON_INTERPRET.
    recorded = {"cases": {name: {"autotune": ig._config_dict(GLUON)} for name in ("kb60", "kb66")}}
    (tmp_path / "gpu.json").write_text(json.dumps(recorded))
    done = run_compiling(
        [
            *("-m", "bench.kernel_static", "--cases", "kb60,kb66", "--as-launched", "--loop"),
            *("--baseline", str(tmp_path / "gpu.json"), "--json", str(tmp_path / "out.json")),
        ]
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for row in json.loads((tmp_path / "out.json").read_text()):
        # The weight's BF16 halves whole (v65), 20 steps of 16 x 64, 2 bytes each, in one
        # CTA an SM.
        assert 2 * 20 * 16 * 64 * 2 <= row["shared_bytes"] <= 227 * 1024, row
        # Three warpgroups of 168 registers fill the 64 K; no spill under Triton 3.6 or
        # 3.9 (TF32 halves spilled 48 bytes under 3.9).
        assert row["registers"] <= ig.RESIDENT_REGS and row["spill_stack_bytes"] <= 64, row
        # A K loop a warpgroup: a step's three BF16 products of 128 rows (6 k16
        # instructions; TF32's were 12 k8), one wait, 18 global loads (its gather's and
        # the taps' 4; TF32's were 20), and no CTA barrier nor copy.
        assert len(row["inner_loops"]) == 3, row
        for loop in row["inner_loops"]:
            assert (loop["mma"], loop["mma_waits"], loop["ldg"]) == (6, 1, 18), loop
            assert loop["bars"] == 0 and loop["async_copies"] == 0, loop


# On an H100 or H200: the results.
RESIDENT_LAYERS = {
    # K 315 (20 steps), a bias, two images whose last tile runs past the image.
    "k315_bias": dict(bias=True),
    # 17 channels: the weight's padded rows and the store's mask.
    "oc17": dict(oc=17, kernel=(3, 3, 3)),
    # K 24 (2 steps, the fewest): the taps two steps ahead wrap to the next tile's. 5
    # tiles of one image each: 2 CTAs, one warpgroup without a tile.
    "k24": dict(n=5, input=(3, 4, 5), kernel=(2, 2, 2)),
    # Strided and dilated: 3 images of 7 x 19 x 26 positions, 28 tiles each, the last
    # one part past the image.
    "strided_dilated": dict(
        n=3, input=(9, 40, 30), kernel=(3, 3, 3), stride=(1, 2, 1), dilation=(1, 1, 2)
    ),
}


@pytest.mark.parametrize("layer", RESIDENT_LAYERS)
def test_the_resident_kernel_computes_the_truth(hopper, layer):
    case = _kb60_like(**RESIDENT_LAYERS[layer])
    assert ig.resident_steps(ig.case_scalar_args(case)[2], case.oc) > 0
    fn = functools.partial(ig.conv3d, precision="tf32x3-ws", config=GLUON)
    assert_one_call_computes_the_truth(fn, case, hopper)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf - inf
def test_the_resident_kernel_keeps_infinities(hopper):
    # #60's kernel (3, 5, 7): K 315, 20 steps.
    fn = functools.partial(ig.conv3d, precision="tf32x3-ws", config=GLUON)
    assert_one_call_keeps_infinities(fn, hopper, kernel=(3, 5, 7), input=(6, 9, 11))


def test_a_resident_plan_computes_the_truth_call_after_call(hopper, monkeypatch):
    monkeypatch.setattr(ig, "_TUNED", {})
    monkeypatch.setattr(ig, "_PLANS", {})
    monkeypatch.setattr(ig, "_tune", lambda *_: GLUON)
    case = _kb60_like(**RESIDENT_LAYERS["k315_bias"])
    for seed in range(3):
        inputs = check.random_inputs(case, hopper, seed)
        got = conv3d(inputs.x, inputs.weight, inputs.bias)
        report = check.CheckReport(case.name, check.rule_for("fp32"))
        check.compare_with_truth(got, inputs, case, report)
        assert report.ok, report.message()
    assert ig._LAST == [GLUON] and len(ig._PLANS) == 1
