import json

import pytest

from bench import sm89_proxy as proxy

# A config as bench.kernel_modes writes it.
CFG = (
    "BLOCK_M: {}, BLOCK_N: {}, BLOCK_K: {}, num_warps: 4, num_ctas: 1, num_stages: {}, "
    "maxnreg: None"
)


def _row(case, timed, mode="ieee"):
    return {
        "case": case,
        "mode": mode,
        "ms": min(t for t, _ in timed),
        "config": timed[0][1],
        "ok": True,
        "timed": timed,
    }


def test_labels_read_both_spellings_of_a_config():
    assert proxy.label(CFG.format(128, 64, 16, 3)) == "128x64x16 w4 s3"
    config = {"BLOCK_M": 64, "BLOCK_N": 32, "BLOCK_K": 32, "num_warps": 8, "num_stages": 2}
    assert proxy.label(config) == "64x32x32 w8 s2"
    with pytest.raises(ValueError, match="not a config"):
        proxy.label("BLOCK_M: 64")


def test_rank_correlation_is_one_for_the_same_order_and_minus_one_reversed():
    a = {"x": 1.0, "y": 2.0, "z": 3.0, "w": 4.0}
    assert proxy.rank_correlation(a, {k: 10 * v for k, v in a.items()}) == pytest.approx(1)
    assert proxy.rank_correlation(a, {k: -v for k, v in a.items()}) == pytest.approx(-1)
    assert proxy.rank_correlation(a, {"x": 1.0, "y": 2.0}) is None  # too few in common
    assert proxy.rank_correlation(a, dict.fromkeys(a, 1.0)) is None  # no order at all


def test_dropping_the_fastest_config_costs_the_gap_to_the_next():
    timed = [
        [1.0, CFG.format(128, 64, 16, 3)],
        [1.1, CFG.format(64, 32, 32, 2)],
        [1.5, CFG.format(32, 32, 32, 2)],
    ]
    measured = proxy.measured_times([_row("kb60", timed), _row("kb60", timed, "tf32x3-ws")])
    assert measured == {
        "kb60": {"128x64x16 w4 s3": 1.0, "64x32x32 w4 s2": 1.1, "32x32x32 w4 s2": 1.5}
    }
    model = {"kb60": {"128x64x16 w4 s3": 3.0, "64x32x32 w4 s2": 2.0, "32x32x32 w4 s2": 1.0}}
    [row] = proxy.compare(measured, model, ("128x64x16 w4 s3",))
    assert row["best"] == "128x64x16 w4 s3"
    assert row["kept_best"] == "64x32x32 w4 s2"
    assert row["kept_loss"] == pytest.approx(0.1)
    assert row["model_pick"] == "32x32x32 w4 s2"
    assert row["model_pick_loss"] == pytest.approx(0.5)
    assert row["rho"] == pytest.approx(-1)


def test_the_command_prints_measured_and_modelled_apart(tmp_path, capsys):
    timed = [[2.0, CFG.format(128, 64, 16, 3)], [1.0, CFG.format(64, 32, 32, 2)]]
    measured = tmp_path / "ieee.json"
    measured.write_text(json.dumps([_row("kb54", timed)]))
    out = tmp_path / "rows.json"
    assert proxy.main([str(measured), "--drop", "64x32x32 w4 s2", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "MEASURED on the H200" in text and "+100.0%" in text
    assert json.loads(out.read_text())[0]["kept_best"] == "128x64x16 w4 s3"


def test_unreadable_inputs_are_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert proxy.main([str(bad)]) == 2
    assert "cannot read the inputs" in capsys.readouterr().err
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    assert proxy.main([str(empty)]) == 2
    assert "no ieee rows" in capsys.readouterr().err


def test_the_4090_estimate_scales_by_the_fp32_rates_unless_its_memory_is_slower():
    from types import SimpleNamespace

    from bench.sm89_model import H200, RTX_4090

    compute = SimpleNamespace(flop=H200.fp32_flop_per_s * 1e-3, min_bytes=1)  # 1 ms at peak
    assert proxy.fp32_share(compute, 2.0) == pytest.approx(0.5)
    ratio = H200.fp32_flop_per_s / RTX_4090.fp32_flop_per_s
    assert proxy.rtx4090_estimate_ms(compute, 2.0) == pytest.approx(2.0 * ratio)
    memory = SimpleNamespace(flop=1, min_bytes=RTX_4090.dram_bytes_per_s * 5e-3)  # 5 ms
    assert proxy.rtx4090_estimate_ms(memory, 2.0) == pytest.approx(5.0)
