"""v30: the kernel file's persistent Gluon kernel (``_conv3d_gl_persist_kernel``, the
GLUON=2 configs) for the write-bound layers. On this machine: which layers it takes, what
a launch passes it, its grid, its output descriptor, the unaligned ``out=``, the baseline
round trip and its sm_90 compile. On an H100 or H200 (the device): its results against
float64, tuned and at each config."""

from __future__ import annotations

import dataclasses
import functools
import json

import pytest
import torch

from kernels import implicit_gemm as ig
from pytest_conv3d_perf.cases import builtin_cases, select
from tests.offline_shared import run_compiling
from tests.one_call import assert_one_call_computes_the_truth, assert_one_call_keeps_infinities

needs_tma = pytest.mark.skipif(
    ig.gluon is None or ig.tma is None, reason="this Triton has no Gluon Hopper TMA"
)
_FLAGS = {"PRECISION": "tf32x3-ws", "PADDED": False, "PROMOTE": False}


@pytest.mark.parametrize(
    ("k", "oc", "spatial", "flags"),
    [
        (27, 64, 720, {"KSTEPS": 2, "NB": 1, "HALF": 0}),  # KernelBench #59's weight
        (81, 64, 720, {"KSTEPS": 6, "NB": 1, "HALF": 2}),  # #54's: 5 steps of 16, one column
        (33, 64, 720, {"KSTEPS": 3, "NB": 1, "HALF": 2}),  # one column past two steps
        (17, 64, 720, {"KSTEPS": 2, "NB": 1, "HALF": 1}),  # past one: the gathers need two
        (82, 64, 720, {"KSTEPS": 6, "NB": 1, "HALF": 1}),  # two columns: a step of 8
        (24, 64, 720, {"KSTEPS": 2, "NB": 1, "HALF": 1}),  # 8 past the first step
        (25, 64, 720, {"KSTEPS": 2, "NB": 1, "HALF": 0}),  # 9 past it: a whole step
        (16, 64, 720, {"KSTEPS": 0, "NB": 0, "HALF": 0}),  # one step: the gathers run 2 ahead
        (128, 128, 4, {"KSTEPS": 8, "NB": 2, "HALF": 0}),  # the largest weight kept whole
        (129, 64, 720, {"KSTEPS": 0, "NB": 0, "HALF": 0}),  # nine steps: not kept
        (27, 48, 720, {"KSTEPS": 0, "NB": 0, "HALF": 0}),  # not whole blocks of 64 channels
        (27, 64, 722, {"KSTEPS": 0, "NB": 0, "HALF": 0}),  # rows not 16-byte aligned (TMA)
    ],
)
def test_a_layer_fits_when_its_weight_stays_whole_in_whole_channel_blocks(k, oc, spatial, flags):
    assert ig.persist_flags(k, oc, spatial) == flags


@needs_tma
@pytest.mark.parametrize(
    ("change", "takes"),
    [
        ({}, True),
        ({"KSTEPS": 0}, False),
        ({"PADDED": True}, False),
        ({"PROMOTE": True}, False),
        ({"PRECISION": "ieee"}, False),
    ],
)
def test_the_persistent_configs_are_tuned_only_where_the_layer_fits(change, takes, monkeypatch):
    monkeypatch.setattr(ig, "interpreting", lambda: False)
    flags = {**_FLAGS, "KSTEPS": 2, "NB": 1, **change}
    for cfg in ig.PERSIST_CONFIGS:
        assert ig.config_takes(cfg, flags) is takes
    # The other Gluon config does not look at the fit.
    assert ig.config_takes(ig.GLUON_CONFIGS[0], flags) is ig.gluon_takes(flags)
    monkeypatch.setattr(ig, "tma", None)
    assert not ig.config_takes(ig.PERSIST_CONFIGS[0], {**_FLAGS, "KSTEPS": 2, "NB": 1})


def test_a_launch_passes_each_kernel_its_own_parameters():
    flags = {**_FLAGS, "HAS_BIAS": True, "ASSUME_K": False, "OUT_VEC": 4, "TAP_IC": 0}
    flags.update(KSTEPS=6, NB=1, HALF=1)
    persist, plain = ig.PERSIST_CONFIGS[0], ig.AUTOTUNE_CONFIGS[1]
    launched = ig.launch_kwargs(flags, persist)
    assert (launched["KSTEPS"], launched["NB"], launched["HALF"]) == (6, 1, 1)
    assert not set((*ig.HOST_KEYS, "TAP_IC")) & set(launched)
    assert not {*ig.PERSIST_FLAGS, "GLUON", "TAP_IC"} & set(ig.launch_kwargs(flags, plain))
    # Every constexpr of the kernel's parameter list, and nothing else but the launch's
    # options (num_warps, ...).
    names = ig.arg_names(persist)
    assert names[: len(ig._ARG_NAMES)] == ig._ARG_NAMES
    options = set(persist.all_kwargs()) - set(persist.kwargs)
    assert set(launched) - options == set(names[names.index("HAS_BIAS") :])
    if ig._conv3d_gl_persist_kernel is not None:
        assert tuple(ig._conv3d_gl_persist_kernel.arg_names) == names
        assert ig.kernel_for(persist) is ig._conv3d_gl_persist_kernel


@pytest.mark.parametrize(
    ("per_sm", "tiles", "channel_blocks", "programs"),
    [
        (3, 80645, 1, 396),  # #59 on an H200's 132 multiprocessors
        (2, 29791, 1, 264),  # #54
        (3, 100, 2, 200),  # fewer tiles than slots: one program a tile and channel block
        (2, 10_000, 3, 264),  # a multiple of the channel blocks
        (2, 10_000, 300, 300),  # more channel blocks than slots: one row block at a time
    ],
)
def test_the_grid_is_per_sm_programs_a_multiprocessor_in_whole_channel_blocks(
    per_sm, tiles, channel_blocks, programs
):
    cfg = next(c for c in ig.PERSIST_CONFIGS if c.kwargs["PER_SM"] == per_sm)
    assert cfg.kwargs["BLOCK_M"] == 128
    got = ig.persist_grid(cfg, tiles, channel_blocks, 132)
    assert got == programs and got % channel_blocks == 0


def _kb59_like(n=2, ic=1, oc=64, input=(10, 11, 12), **more):
    base = select(builtin_cases(), ["kb59"])[0]
    return dataclasses.replace(
        base, name="persist", small=None, n=n, ic=ic, oc=oc, input=input, **more
    )


def _kernel_args(case, out):
    scalars = ig.case_scalar_args(case)
    x = torch.empty(case.n, case.ic, *case.input)
    return (x, x, x, x, out, x, *scalars)


@needs_tma
def test_the_output_descriptor_is_n_times_oc_rows_of_the_positions():
    case = _kb59_like(kernel=(3, 3, 3))
    out = torch.empty(case.output_shape)
    desc = ig.output_arg(ig.PERSIST_CONFIGS[0], _kernel_args(case, out))
    assert list(desc.shape) == [2 * 64, 8 * 9 * 10]
    assert list(desc.strides) == [8 * 9 * 10, 1]
    assert list(desc.block_shape) == [64, 128]
    assert desc.base.data_ptr() == out.data_ptr()
    # Every other config takes the tensor.
    assert ig.output_arg(ig.GLUON_CONFIGS[0], _kernel_args(case, out)) is out


@needs_tma
def test_an_output_that_tma_cannot_write_is_computed_aside_and_copied(monkeypatch):
    case = _kb59_like(kernel=(3, 3, 3))
    shape = case.output_shape
    storage = torch.full((torch.Size(shape).numel() + 1,), -1.0)
    out = storage[1:].view(shape)  # 4 bytes past a 16-byte boundary
    assert out.data_ptr() % 16
    written = []

    class Kernel:
        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                written.append(args[4].base)
                args[4].base.fill_(7.0)

            return launch

    monkeypatch.setattr(ig, "_conv3d_gl_persist_kernel", Kernel())
    ig._launch(ig.PERSIST_CONFIGS[0], (1, 1, 1), _kernel_args(case, out), {})
    [target] = written
    assert target.data_ptr() % 16 == 0 and target.data_ptr() != out.data_ptr()
    assert out.eq(7.0).all() and storage[0] == -1.0


def test_a_persistent_config_where_its_kernel_does_not_run_is_a_clear_error():
    # 48 output channels are not whole blocks of 64: on a GPU as under the interpreter
    # (which runs no Gluon), the config says what it takes. The tensors live where the
    # kernels run: on a GPU, tf32x3-ws splits the weight with a launch before the check.
    dev = "cuda" if torch.cuda.is_available() and not ig.interpreting() else "cpu"
    x, w = torch.randn(1, 1, 6, 6, 6, device=dev), torch.randn(48, 1, 3, 3, 3, device=dev)
    with pytest.raises(ValueError, match="K up to 128, whole blocks of 64"):
        ig.conv3d(x, w, precision="tf32x3-ws", config=ig.PERSIST_CONFIGS[0])


def test_a_persistent_config_survives_the_baseline_round_trip():
    from bench.kernel_static import _launch_config
    from pytest_conv3d_perf.tune import LaunchConfig, neighbours

    for cfg in ig.PERSIST_CONFIGS:
        read = LaunchConfig.from_dict(ig._config_dict(cfg))
        assert dict(read.extra) == {"GLUON": 2, "PER_SM": cfg.kwargs["PER_SM"]}
        back = _launch_config(read)
        assert ig.is_persistent(back) and back.kwargs == cfg.kwargs
        assert neighbours(read, None) == [read]


@needs_tma
def test_the_persistent_configs_compile_for_sm90_with_the_weight_resident(tmp_path):
    # As bench.kernel_static reads them from a baseline that recorded them, in a child
    # without TRITON_INTERPRET.
    recorded = {
        "cases": {
            "kb59": {"autotune": ig._config_dict(ig.PERSIST_CONFIGS[0])},
            "kb54": {"autotune": ig._config_dict(ig.PERSIST_CONFIGS[2])},
        }
    }
    assert ig.PERSIST_CONFIGS[2].kwargs["BLOCK_M"] == 64
    (tmp_path / "gpu.json").write_text(json.dumps(recorded))
    done = run_compiling(
        [
            *("-m", "bench.kernel_static", "--cases", "kb59,kb54", "--as-launched"),
            *("--baseline", str(tmp_path / "gpu.json"), "--json", str(tmp_path / "out.json")),
        ]
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {row["case"]: row for row in json.loads((tmp_path / "out.json").read_text())}
    # The weight's two halves whole (#59: 2 steps of 16 columns x 64 in TF32, 4 bytes;
    # #54: 5, its last column added on the CUDA cores, HALF 2, in BF16, 2 bytes, v63) and
    # one output tile of BLOCK_M x 64, 4 bytes each; one tensor-core wait a K step on the
    # tensor cores, three products a step (TF32's k8 two instructions each, BF16's k16
    # one, per 64 rows); no STG (the tile leaves by TMA); #59 no spill, #54 the 16 bytes
    # v63 was timed with (Triton 3.6; 3.9 spills 24); PER_SM programs' registers and
    # shared memory fit a multiprocessor.
    for name, steps, columns, size, mma, spill in (
        ("kb59", 2, 32, 4, 12, 0),
        ("kb54", 5, 80, 2, 3, 24),
    ):
        row = rows[name]
        per_sm, block_m = row["config"]["PER_SM"], row["config"]["BLOCK_M"]
        assert row["shared_bytes"] == 2 * columns * 64 * size + block_m * 64 * 4, row
        assert row["mma_waits"] == steps and not row["stores"], row
        assert row["mma"] == steps * mma, row
        assert row["spill_stack_bytes"] <= spill, row
        assert row["registers"] * 128 * per_sm <= 65536, row
        assert row["shared_bytes"] * per_sm <= 227 * 1024, row


# On an H100 or H200: the results.
PERSIST_LAYERS = {
    # K 27 (2 steps), one channel block, a bias, two images whose last row block runs
    # past the image (720 positions), as #59.
    "k27_bias": dict(kernel=(3, 3, 3), bias=True),
    # K 81 (6 steps), two channel blocks, strided, as #54 with more channels.
    "k81_oc128_strided": dict(
        ic=3, oc=128, n=1, input=(9, 13, 12), kernel=(3, 3, 3), stride=(1, 2, 1)
    ),
    # 4 positions an image, fewer than a tile's rows: the TMA box is wider than the rows
    # it writes, three images of one channel block.
    "four_positions": dict(n=3, input=(3, 4, 4), kernel=(3, 3, 3)),
    # K 24: a step of 16, then the half one (HALF), so the gathers two ahead reach into
    # the next tile from the first step on.
    "k24_half": dict(n=2, ic=3, input=(5, 6, 7), kernel=(2, 2, 2)),
    # K 81 with a bias: five steps, then the last column on the CUDA cores (HALF 2), as #54.
    "k81_tail_bias": dict(ic=3, n=2, input=(6, 7, 9), kernel=(3, 3, 3), bias=True),
    # K 33: two steps, then the column, so the gathers two ahead wrap into the next tile
    # from the first step on.
    "k33_tail": dict(ic=1, n=2, input=(5, 13, 8), kernel=(3, 11, 1)),
}


@pytest.mark.parametrize("config", ig.PERSIST_CONFIGS, ids=str)
@pytest.mark.parametrize("layer", PERSIST_LAYERS)
def test_each_persistent_config_computes_the_truth(hopper, config, layer):
    case = _kb59_like(**PERSIST_LAYERS[layer])
    fn = functools.partial(ig.conv3d, precision="tf32x3-ws", config=config)
    assert_one_call_computes_the_truth(fn, case, hopper)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf - inf
@pytest.mark.parametrize("config", ig.PERSIST_CONFIGS, ids=str)
def test_each_persistent_config_keeps_infinities(hopper, config):
    # #54's K of 81: five steps, then the column on the CUDA cores.
    fn = functools.partial(ig.conv3d, precision="tf32x3-ws", config=config)
    assert_one_call_keeps_infinities(fn, hopper)


def test_an_unaligned_out_gets_the_aligned_result(hopper):
    case = _kb59_like(**PERSIST_LAYERS["k27_bias"])
    x = torch.randn(case.n, case.ic, *case.input, device=hopper)
    w = torch.randn(case.oc, case.ic, *case.kernel, device=hopper)
    b = torch.randn(case.oc, device=hopper)
    cfg = ig.PERSIST_CONFIGS[0]
    want = ig.conv3d(x, w, b, precision="tf32x3-ws", config=cfg)
    storage = torch.empty(want.numel() + 1, device=hopper)
    out = storage[1:].view(want.shape)
    ig.conv3d(x, w, b, precision="tf32x3-ws", config=cfg, out=out)
    assert torch.equal(out, want)
