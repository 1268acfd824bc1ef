"""bench.wgmma_ceiling: the tensor cores' rate on the kernels' product shapes alone."""

import json

import pytest
import torch

from bench import wgmma_ceiling
from kernels import implicit_gemm as ig
from tests.offline_shared import run_compiling


def test_each_shape_compiles_for_sm90_with_a_step_of_three_products(tmp_path):
    if ig.gluon is None:
        pytest.skip("this Triton has no Gluon Hopper ops")
    # In a child without TRITON_INTERPRET, as bench.kernel_static's compiles.
    done = run_compiling(
        ["-m", "bench.wgmma_ceiling", "--offline", "--json", str(tmp_path / "out.json")]
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {row["shape"]: row for row in json.loads((tmp_path / "out.json").read_text())}
    assert set(rows) == {name for name, *_ in wgmma_ceiling.SHAPES}
    for name, bm, *_ in wgmma_ceiling.SHAPES:
        row = rows[name]
        # Three products of K 16: two instructions of K 8 each, one a 64 rows.
        per_step = 3 * 2 * (bm // 64)
        assert row["mma"] > 0 and row["mma"] % per_step == 0, row
        assert row["spill_stack_bytes"] == 0 and row["mma_waits"] >= 1, row
    assert "ring 128x64 rs" in done.stdout and "sm_90, offline" in done.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU machine measures instead")
def test_without_a_hopper_gpu_it_says_so_and_exits_2(capsys):
    assert wgmma_ceiling.main([]) == 2
    err = capsys.readouterr().err
    assert "wgmma_ceiling:" in err and ("capability 9.0" in err or "no Gluon" in err)
