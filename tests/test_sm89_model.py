"""bench/sm89_model.py's decisions, on hand-computed numbers; nothing here compiles."""

import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench import sm89_model as m
from pytest_conv3d_perf.cases import Conv3dCase

GPU = m.RTX_4090
ROOT = Path(__file__).resolve().parent.parent


def test_the_model_imports_neither_torch_nor_triton():
    # The pure functions stay fast to test; only the compile path imports them.
    probe = "import sys, bench.sm89_model; print(sorted({'torch', 'triton'} & set(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "registers, threads, blocks",
    [
        (128, 256, 2),  # 4096 a warp: 4 warps a sub-partition, 16 an SM, 2 blocks of 8
        (129, 256, 1),  # 4128 rounds up to 4352: 3 warps a sub-partition, 12 an SM
        (255, 256, 1),  # 8160 -> 8192: 2 a sub-partition, 8 an SM
        (255, 128, 2),
        (168, 128, 3),  # 5376: 3 a sub-partition, 12 an SM
        (160, 256, 1),  # 5120: 3 a sub-partition, 12 an SM: one block of 8
        (40, 128, 12),  # 1280: 12 a sub-partition, 48 an SM
        # 3072 a warp: 16384 // 3072 = 5 a sub-partition, 20 an SM, where 65536 // 3072
        # over the whole SM would give 21.
        (96, 32, 20),
        (256, 32, 0),  # over 255 a thread
    ],
)
def test_blocks_by_registers(registers, threads, blocks):
    assert m.blocks_by_registers(registers, threads, GPU) == blocks


def test_a_block_over_the_register_file_cannot_launch():
    # 255 registers x 1024 threads: 8192 x 32 warps = 262144 > 65536.
    assert m.blocks_by_registers(255, 1024, GPU) == 0
    assert m.blocks_by_registers(64, 1024, GPU) == 1  # 2048 x 32 = 65536 exactly


@pytest.mark.parametrize(
    "shared, blocks",
    [
        (24576, 4),  # + 1024 = 25600: 4 in 102400
        (49152, 2),  # 50176
        (33280, 2),  # 34304: 2.98
        (101376, 1),  # the opt-in limit itself: 102400, one block
        (101377, 0),  # a byte over: cannot launch
        (0, 100),  # the reserve alone: 1024 each
        (100, 88),  # 1124 rounds up to 1152: 88
    ],
)
def test_blocks_by_shared(shared, blocks):
    assert m.blocks_by_shared(shared, GPU) == blocks


@pytest.mark.parametrize("threads, blocks", [(32, 24), (128, 12), (256, 6), (512, 3), (1024, 1)])
def test_blocks_by_threads(threads, blocks):
    assert m.blocks_by_threads(threads, GPU) == blocks


def test_occupancy_takes_the_smallest_limit_and_names_it():
    occ = m.occupancy(128, 24576, 8, GPU)  # registers 2, shared 4, threads 6
    assert (occ.blocks_per_sm, occ.limiter, occ.warps_per_sm) == (2, "registers", 16)
    assert occ.fraction == pytest.approx(16 / 48)
    occ = m.occupancy(96, 36864, 4, GPU)  # registers 5, shared 2 (37888 each), threads 12
    assert (occ.blocks_per_sm, occ.limiter, occ.warps_per_sm) == (2, "shared", 8)
    occ = m.occupancy(32, 1024, 4, GPU)  # registers 16, shared 50, threads 12
    assert (occ.blocks_per_sm, occ.limiter) == (12, "threads")
    assert m.occupancy(128, 120000, 4, GPU).blocks_per_sm == 0


def test_waves_of_a_grid_of_several_waves():
    w = m.waves(300, 2, GPU)  # 256 slots: 1.17 waves in 2 rounds
    assert w.waves == pytest.approx(300 / 256)
    assert (w.rounds, w.resident_per_sm) == (2, 2)
    assert w.tail_efficiency == pytest.approx(300 / 512)
    assert m.waves(512, 2, GPU).tail_efficiency == 1.0


def test_a_grid_under_one_wave_spreads_over_the_sms_first():
    w = m.waves(64, 2, GPU)  # half the SMs, one block each
    assert (w.rounds, w.resident_per_sm) == (1, 1)
    assert w.tail_efficiency == pytest.approx(0.5)
    w = m.waves(200, 4, GPU)  # 2 blocks on the busiest SM, 200 of 256 SM-slots busy
    assert (w.rounds, w.resident_per_sm) == (1, 2)
    assert w.tail_efficiency == pytest.approx(200 / 256)


def test_waves_of_a_config_that_cannot_launch():
    w = m.waves(100, 0, GPU)
    assert w.tail_efficiency == 0.0 and math.isinf(w.waves)


@pytest.mark.parametrize("warps, eff", [(4, 0.5), (6, 0.75), (8, 1.0), (48, 1.0), (0, 0.0)])
def test_latency_efficiency(warps, eff):
    # Two warps a scheduler, four schedulers an SM: 8 warps hide the stalls.
    assert m.latency_efficiency(warps, GPU) == pytest.approx(eff)


def test_the_factor_is_tail_times_latency_at_the_residency_the_grid_gets():
    # 128 regs x 4 warps: 4 blocks by registers (16 warps); shared 12288 (13312 each: 7);
    # threads 12. A grid of 640 blocks: 512 slots, 2 rounds, tail 640 / 1024.
    occ, w, factor = m.occupancy_and_wave_factor(640, 128, 12288, 4, GPU)
    assert (occ.blocks_per_sm, occ.limiter) == (4, "registers")
    assert factor == pytest.approx(640 / 1024)
    # A grid of 128: one 4-warp block an SM, one warp a scheduler: tail 1, latency 0.5.
    _, w, factor = m.occupancy_and_wave_factor(128, 128, 12288, 4, GPU)
    assert w.resident_per_sm == 1 and factor == pytest.approx(0.5)


def _case(**kw):
    base = dict(name="c", n=2, ic=4, oc=24, kernel=(3, 3, 3), input=(12, 12, 12))
    return Conv3dCase(**{**base, **kw})


def test_grid_blocks_as_conv3d_launches_them():
    case = _case()  # output 10x10x10 = 1000 positions an image
    assert m.grid_blocks(case, 64, 32) == 2 * 16 * 1  # cdiv(1000, 64) = 16, cdiv(24, 32) = 1
    assert m.grid_blocks(case, 128, 16) == 2 * 8 * 2


def test_tile_efficiency_counts_the_masked_work_the_tiles_issue():
    case = _case()  # K = 4 * 27 = 108
    # per image: 1024 rows issued for 1000; 32 columns for 24; K 112 for 108.
    expected = (1000 * 24 * 108) / (1024 * 32 * 112)
    assert m.tile_efficiency(case, 64, 32, 16) == pytest.approx(expected)
    exact = _case(oc=32, input=(10, 10, 10), kernel=(1, 1, 1), ic=16)  # 1000 rows
    assert m.tile_efficiency(exact, 8, 32, 16) == 1.0


SASS = """
        /*0000*/                   MOV R1, c[0x0][0x28] ;
        /*0010*/                   S2R R0, SR_CTAID.X ;
        /*0020*/              @!P0 BRA 0x00c0 ;
        /*0030*/                   LDS.128 R4, [R2] ;
        /*0040*/                   FFMA R8, R4, R5, R8 ;
        /*0050*/                   FFMA R9, R4, R6, R9 ;
        /*0060*/                   STL [R1], R9 ;
        /*0070*/              @P1 BRA 0x0030 ;
        /*0080*/                   STG.E [R10.64], R8 ;
        /*0090*/                   EXIT ;
        /*00a0*/                   BRA 0xa0;
"""


def test_the_k_loop_is_the_body_of_the_backward_branch():
    mix = m.k_loop_mix(SASS)
    assert mix.found
    # 0x30 to 0x70: LDS, 2 FFMA, STL, BRA. The forward branch and the self-loop are not loops.
    assert (mix.instructions, mix.ffma, mix.local) == (5, 2, 1)
    assert mix.ffma_share == pytest.approx(0.4)


def test_no_backward_branch_counts_the_whole_kernel():
    mix = m.k_loop_mix(SASS.replace("@P1 BRA 0x0030", "NOP"))
    assert not mix.found and mix.instructions == 11 and mix.ffma == 2


def test_the_floor_is_the_larger_of_fma_and_memory():
    t = m.model_time(82.6e12, 1008e9 / 2, GPU)  # 1 s of FMA, 0.5 s of memory
    assert (t.floor_s, t.fma_s, t.memory_s, t.modelled_s, t.bound) == (1.0, 1.0, 0.5, 1.0, "fma")
    t = m.model_time(82.6e12 / 4, 1008e9, GPU)
    assert (t.floor_s, t.modelled_s, t.bound) == (1.0, 1.0, "memory")


def test_the_modelled_time_divides_by_the_efficiencies():
    t = m.model_time(82.6e12, 1008e9 / 2, GPU, tile_eff=0.8, ffma_share=0.5, factor=0.5)
    assert t.fma_s == pytest.approx(2.5)  # 1 / (0.8 x 0.5)
    assert t.modelled_s == pytest.approx(5.0)  # 2.5 / 0.5
    assert t.floor_s == 1.0
    # Memory-bound: the FMA side's waste does not show, the factor does.
    t = m.model_time(82.6e12 / 10, 1008e9, GPU, tile_eff=0.5, ffma_share=0.5, factor=0.8)
    assert t.bound == "memory" and t.modelled_s == pytest.approx(1.25)
    assert math.isinf(m.model_time(1.0, 1.0, GPU, factor=0.0).modelled_s)


def test_a_row_is_flagged_for_spills_shared_and_occupancy():
    case = _case()
    config = {"BLOCK_M": 64, "BLOCK_N": 32, "BLOCK_K": 16, "num_warps": 4, "num_stages": 2}
    compiled = {
        "registers": 255,
        "spill_stack_bytes": 16,
        "shared_bytes": 60000,  # one block of 4 warps an SM
        "loop_instructions": 10,
        "loop_ffma": 8,
        "loop_local": 0,
        "loop_found": True,
    }
    row = m.analyse(case, config, compiled, GPU)
    assert row["flags"] == ["spills", "low-occ"]
    assert (row["blocks_per_sm"], row["limiter"], row["grid_blocks"]) == (1, "shared", 32)
    # 32 blocks on 128 SMs: tail 0.25, one warp a scheduler: 0.5.
    assert row["factor"] == pytest.approx(0.125)
    assert not m.clean(row)
    roomy = m.analyse(case, config, {**compiled, "shared_bytes": 20000}, GPU)
    assert roomy["flags"] == ["spills"] and m.clean(roomy)  # spilled outside the loop only
    looped = m.analyse(case, config, {**compiled, "shared_bytes": 20000, "loop_local": 2}, GPU)
    assert looped["flags"] == ["spills", "loop-spills"] and not m.clean(looped)
    over = m.analyse(case, config, {**compiled, "shared_bytes": 120000}, GPU)
    assert over["flags"][:2] == ["shared>optin", "no-launch"]
    assert math.isinf(over["modelled_s"])
    assert m.best_rows([over, row])["c"] is row


def test_the_pick_is_the_first_within_the_margin_as_the_tuner_picks():
    rows = [
        {"case": "a", "blocks_per_sm": 1, "modelled_s": 2.0, "flags": []},
        {"case": "a", "blocks_per_sm": 1, "modelled_s": 1.009, "flags": ["spills", "loop-spills"]},
        {"case": "a", "blocks_per_sm": 2, "modelled_s": 1.0, "flags": []},
        {"case": "a", "blocks_per_sm": 0, "modelled_s": 0.5, "flags": ["no-launch"]},
    ]
    assert m.fastest_times(rows) == {"a": 1.0}  # a row that cannot launch is no time
    assert m.best_rows(rows)["a"] is rows[1]  # within 1% of 1.0, and first
    assert m.best_rows(rows, margin=0.0)["a"] is rows[2]
    assert m.best_rows(rows, m.clean)["a"] is rows[2]
