"""The RTX 4090's (sm_89) path, compiled and modelled without a 4090.

The CI runner is an RTX 4090, where the kernel runs plain fp32 FMA (``ieee``: the precision
``kernels.implicit_gemm.mode_for_capability`` gives sm_89), and nobody has timed it. For
every config of the kernel's autotune list and every case of the built-in suite, this
compiles the kernel for sm_89 in that precision, specialised as the case's launch would be
(``bench.kernel_static.compile_like_launch``: sizes, alignment and the bias flag), with
the installed Triton and its bundled ptxas, and reads from the cubin (cuobjdump):

- measured statically: registers per thread, spill stack bytes, shared memory per block
  (over the 4090's 99 KB opt-in, 101376 bytes, it cannot launch: flagged), and the K loop's
  share of FFMA among its SASS instructions;
- computed from those: blocks and warps per SM (the CUDA occupancy calculator's rules,
  ``blocks_by_registers``, ``blocks_by_shared``, ``blocks_by_threads``), the grid's blocks
  against 128 SMs x blocks per SM (waves, tail efficiency);
- **modelled, not measured**: a time per case and config (``model_time``, assumptions in its
  docstring and in ``occupancy_and_wave_factor``'s).

    python3 -m bench.sm89_model [--cases a,b] [--json out.json] [--gpu rtx4090|h200]

``--gpu h200`` compiles the same ieee path for sm_90 and models it with the H200's figures,
for the next step: time that path on an H200 and set the model against the measurement.

The decisions are pure functions of numbers (tests/test_sm89_model.py); this module imports
neither torch nor Triton until it compiles.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass

from pytest_conv3d_perf.cases import Conv3dCase, builtin_cases, select
from pytest_conv3d_perf.report import text_table
from pytest_conv3d_perf.tune import LaunchConfig


@dataclass(frozen=True)
class Gpu:
    name: str
    capability: int
    sms: int
    max_threads_per_sm: int
    max_warps_per_sm: int
    max_blocks_per_sm: int
    registers_per_sm: int
    # Registers are given to a warp in units of this many (a thread's count rounded up to
    # a multiple of 8), in each of the SM's sub-partitions (warp schedulers) apart.
    register_unit_per_warp: int
    max_registers_per_thread: int
    max_registers_per_block: int
    sub_partitions: int
    shared_per_sm: int
    # The most one block may ask for (opt-in), the system's reserve per block on top of
    # it, and the unit shared memory is allocated in.
    shared_per_block_optin: int
    shared_reserved_per_block: int
    shared_unit: int
    fp32_flop_per_s: float
    dram_bytes_per_s: float


# NVIDIA's Ada figures (AD102 in the RTX 4090): 128 SMs, 1536 threads / 48 warps / 24 blocks
# per SM, 64K registers, 100 KB of shared memory per SM of which a block may take 99 KB,
# 1 KB reserved per block, 128-byte allocation unit (cuda_occupancy.h, compute capability
# 8.x); 82.6 TFLOP/s FP32 (128 SMs x 128 FMA lanes x 2 x 2.52 GHz boost), 1008 GB/s.
RTX_4090 = Gpu(
    name="NVIDIA GeForce RTX 4090",
    capability=89,
    sms=128,
    max_threads_per_sm=1536,
    max_warps_per_sm=48,
    max_blocks_per_sm=24,
    registers_per_sm=65536,
    register_unit_per_warp=256,
    max_registers_per_thread=255,
    max_registers_per_block=65536,
    sub_partitions=4,
    shared_per_sm=100 * 1024,
    shared_per_block_optin=99 * 1024,
    shared_reserved_per_block=1024,
    shared_unit=128,
    fp32_flop_per_s=82.6e12,
    dram_bytes_per_s=1008e9,
)

# The proxy: H200 SXM (sm_90), 132 SMs, 2048 threads / 64 warps / 32 blocks per SM, 228 KB
# of shared memory per SM (227 KB a block), about 67 TFLOP/s FP32 (non-tensor), 4.8 TB/s.
H200 = Gpu(
    name="NVIDIA H200",
    capability=90,
    sms=132,
    max_threads_per_sm=2048,
    max_warps_per_sm=64,
    max_blocks_per_sm=32,
    registers_per_sm=65536,
    register_unit_per_warp=256,
    max_registers_per_thread=255,
    max_registers_per_block=65536,
    sub_partitions=4,
    shared_per_sm=228 * 1024,
    shared_per_block_optin=227 * 1024,
    shared_reserved_per_block=1024,
    shared_unit=128,
    fp32_flop_per_s=67e12,
    dram_bytes_per_s=4.8e12,
)

GPUS = {"rtx4090": RTX_4090, "h200": H200}

# Resident warps per warp scheduler (SM sub-partition) taken to hide the FMA loop's stalls:
# see ``latency_efficiency``. The model's least certain number; the H200 proxy run is
# there to check it.
WARPS_PER_SCHEDULER = 2

# Fewer resident warps per SM than this is called poor occupancy (``latency_efficiency``
# below 1).
POOR_OCCUPANCY_WARPS = WARPS_PER_SCHEDULER * 4


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _round_up(a: int, unit: int) -> int:
    return _cdiv(a, unit) * unit


def blocks_by_registers(registers: int, threads: int, gpu: Gpu = RTX_4090) -> int:
    """Blocks per SM the register file allows (cuda_occupancy.h's rule): a warp takes
    ``registers * 32`` rounded up to 256, each of the four sub-partitions holds a quarter
    of the file, and a block needs its warps' registers. 0: the block cannot launch.
    128 registers x 256 threads: 4096 a warp, 4 warps a sub-partition, 16 an SM, 2 blocks."""
    warps = _cdiv(threads, 32)
    if registers <= 0:
        return gpu.max_blocks_per_sm
    per_warp = _round_up(registers * 32, gpu.register_unit_per_warp)
    # The hardware checks a block as if its warps were spread over every sub-partition.
    assumed = per_warp * _round_up(warps, gpu.sub_partitions)
    if registers > gpu.max_registers_per_thread or assumed > gpu.max_registers_per_block:
        return 0
    per_partition = (gpu.registers_per_sm // gpu.sub_partitions) // per_warp
    return per_partition * gpu.sub_partitions // warps


def blocks_by_shared(shared_bytes: int, gpu: Gpu = RTX_4090) -> int:
    """Blocks per SM shared memory allows: each block takes its bytes plus the system's
    1 KB, rounded up to 128; a block over the opt-in limit (99 KB on sm_89) cannot
    launch (0). 24576 bytes: 25600 each, 4 blocks in 100 KB."""
    if shared_bytes > gpu.shared_per_block_optin:
        return 0
    taken = _round_up(shared_bytes + gpu.shared_reserved_per_block, gpu.shared_unit)
    return gpu.shared_per_sm // taken


def blocks_by_threads(threads: int, gpu: Gpu = RTX_4090) -> int:
    """Blocks per SM the thread, warp and block limits allow."""
    warps = _cdiv(threads, 32)
    return min(
        gpu.max_threads_per_sm // threads, gpu.max_warps_per_sm // warps, gpu.max_blocks_per_sm
    )


@dataclass(frozen=True)
class Occupancy:
    blocks_per_sm: int
    limiter: str  # "registers", "shared", "threads" (the smallest limit; first on ties)
    warps_per_sm: int
    fraction: float  # resident warps over the SM's maximum


def occupancy(registers: int, shared_bytes: int, num_warps: int, gpu: Gpu = RTX_4090) -> Occupancy:
    threads = 32 * num_warps
    limits = {
        "registers": blocks_by_registers(registers, threads, gpu),
        "shared": blocks_by_shared(shared_bytes, gpu),
        "threads": blocks_by_threads(threads, gpu),
    }
    limiter = min(limits, key=lambda k: limits[k])
    blocks = limits[limiter]
    return Occupancy(blocks, limiter, blocks * num_warps, blocks * num_warps / gpu.max_warps_per_sm)


def grid_blocks(case: Conv3dCase, block_m: int, block_n: int) -> int:
    """The blocks ``conv3d`` launches: per image, its output positions in blocks of
    ``block_m`` times its channels in blocks of ``block_n`` (a block never spans images)."""
    spatial = math.prod(case.output)
    return case.n * _cdiv(spatial, block_m) * _cdiv(case.oc, block_n)


def tile_efficiency(case: Conv3dCase, block_m: int, block_n: int, block_k: int) -> float:
    """The case's multiply-adds over those the blocks issue: a block multiplies whole
    ``block_m x block_n`` tiles over K rounded up to ``block_k``, masked or not."""
    spatial = math.prod(case.output)
    k = case.ic * math.prod(case.kernel)
    useful = case.n * spatial * case.oc * k
    issued = grid_blocks(case, block_m, block_n) * block_m * block_n * _round_up(k, block_k)
    return useful / issued


@dataclass(frozen=True)
class Waves:
    waves: float  # grid blocks over the slots of one full wave (SMs x blocks per SM)
    rounds: int  # full or partial waves run one after another
    resident_per_sm: int  # blocks an SM holds at once: blocks per SM, or fewer on a small grid
    tail_efficiency: float  # grid blocks over the slots the rounds occupy


def waves(grid: int, blocks_per_sm: int, gpu: Gpu = RTX_4090) -> Waves:
    """How a grid of ``grid`` equal blocks fills the GPU. With a wave or more, every SM
    holds ``blocks_per_sm`` blocks and the efficiency is waves / ceil(waves). A grid smaller
    than one wave is spread over the SMs first, so an SM holds ceil(grid / SMs) blocks
    (fewer than it could) and the efficiency is the busiest SM's share:
    grid / (SMs x ceil(grid / SMs))."""
    if blocks_per_sm <= 0 or grid <= 0:
        return Waves(math.inf if grid > 0 else 0.0, 0, 0, 0.0)
    slots = gpu.sms * blocks_per_sm
    rounds = _cdiv(grid, slots)
    resident = min(blocks_per_sm, _cdiv(grid, gpu.sms))
    return Waves(grid / slots, rounds, resident, grid / (gpu.sms * resident * rounds))


def latency_efficiency(
    warps_per_sm: int, gpu: Gpu = RTX_4090, warps_per_scheduler: float = WARPS_PER_SCHEDULER
) -> float:
    """The share of its issue rate an SM keeps with this many resident warps:
    min(1, warps per scheduler / WARPS_PER_SCHEDULER).

    Assumes: a warp of this kernel's FMA loop issues back to back between stalls (its
    FFMAs are independent: each thread holds BLOCK_M x BLOCK_N / threads accumulators), and
    stalls at the K step's barriers, shared-memory loads and waits for the next step's
    copies; a second warp on the same scheduler, from another block or the same one, issues
    through those stalls, and more than two add nothing. One warp a scheduler (a 4-warp
    block alone on its SM) keeps half. It ignores the pipeline's depth and the copies'
    latency against a step's length."""
    per_scheduler = warps_per_sm / gpu.sub_partitions
    return min(1.0, per_scheduler / warps_per_scheduler)


def occupancy_and_wave_factor(
    grid: int,
    registers: int,
    shared_bytes: int,
    num_warps: int,
    gpu: Gpu = RTX_4090,
    warps_per_scheduler: float = WARPS_PER_SCHEDULER,
) -> tuple[Occupancy, Waves, float]:
    """The occupancy, the waves and the factor (0 to 1) that divides the time floor:
    ``waves.tail_efficiency x latency_efficiency(resident warps per SM)``.

    Assumes every block does the same work and an SM runs the blocks it holds together,
    at a rate set by its resident warps; a partial last wave takes as long as a full one
    (pessimistic: its blocks share their SMs with fewer others)."""
    occ = occupancy(registers, shared_bytes, num_warps, gpu)
    w = waves(grid, occ.blocks_per_sm, gpu)
    resident = w.resident_per_sm * num_warps
    factor = w.tail_efficiency * latency_efficiency(resident, gpu, warps_per_scheduler)
    return occ, w, factor


@dataclass(frozen=True)
class LoopMix:
    instructions: int  # SASS instructions of the K loop's body
    ffma: int
    local: int  # local-memory loads and stores (spills) in it
    found: bool  # False: no backward branch; the counts are the whole kernel's

    @property
    def ffma_share(self) -> float:
        return self.ffma / self.instructions if self.instructions else 0.0


# A SASS instruction line: its address, an optional predicate, the opcode, its operands.
_SASS_LINE = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z][\w.]*)([^;]*);")


def k_loop_mix(sass: str) -> LoopMix:
    """The instruction mix of the K loop in ``cuobjdump -sass`` text: the body of the widest
    backward branch (``BRA`` to a lower address), the kernel's only loop."""
    code = [(int(a, 16), op, rest) for a, op, rest in _SASS_LINE.findall(sass)]
    loops = []
    for address, op, operands in code:
        target = re.search(r"0x([0-9a-f]+)", operands) if op.startswith("BRA") else None
        if target and int(target.group(1), 16) < address:
            loops.append((int(target.group(1), 16), address))
    lo, hi = max(loops, key=lambda span: span[1] - span[0]) if loops else (0, math.inf)
    body = [op for address, op, _ in code if lo <= address <= hi]
    return LoopMix(
        instructions=len(body),
        ffma=sum(op.startswith("FFMA") for op in body),
        local=sum(op.startswith(("LDL", "STL")) for op in body),
        found=bool(loops),
    )


@dataclass(frozen=True)
class TimeModel:
    floor_s: float  # max(FLOP / FP32 rate, bytes / DRAM rate)
    fma_s: float  # FLOP at the FP32 rate times the tiles' waste and the loop's FFMA share
    memory_s: float  # each tensor moved once at the DRAM rate
    modelled_s: float
    bound: str  # "fma" or "memory": the larger of fma_s and memory_s


def model_time(
    flop: float,
    nbytes: float,
    gpu: Gpu = RTX_4090,
    *,
    tile_eff: float = 1.0,
    ffma_share: float = 1.0,
    factor: float = 1.0,
) -> TimeModel:
    """A modelled time, not a measurement:
    ``max(FLOP / (rate x tile_eff x ffma_share), bytes / bandwidth) / factor``.

    With every efficiency 1 it is the floor, max(FLOP / 82.6 TFLOP/s, bytes / 1008 GB/s)
    on the 4090, divided by ``occupancy_and_wave_factor``. The FMA side assumes: the FP32
    rate is one FFMA warp instruction per scheduler per clock, which is also the issue
    rate, so the loop's other instructions (shared loads, addresses, copies) take slots
    FFMAs would have had (``ffma_share``); the tiles' masked rows, columns and K padding
    are issued too (``tile_eff``). The memory side: each input, weight and output element
    crosses DRAM once (reuse served by the 72 MB L2), at the full bandwidth. It ignores
    the launch (several microseconds: the smallest cases are all launch), the prologue and
    epilogue, spills' traffic (reported apart), clocks and power limits."""
    fma = (
        flop / (gpu.fp32_flop_per_s * tile_eff * ffma_share) if tile_eff * ffma_share else math.inf
    )
    memory = nbytes / gpu.dram_bytes_per_s
    floor = max(flop / gpu.fp32_flop_per_s, memory)
    modelled = max(fma, memory) / factor if factor > 0 else math.inf
    return TimeModel(floor, fma, memory, modelled, "fma" if fma >= memory else "memory")


def flags(row: dict, gpu: Gpu = RTX_4090) -> list[str]:
    """What disqualifies or weakens a config on a case."""
    out = []
    if row["shared_bytes"] > gpu.shared_per_block_optin:
        out.append("shared>optin")
    if row["blocks_per_sm"] == 0:
        out.append("no-launch")
    if row["spill_stack_bytes"] > 0:
        out.append("spills")
    if row["loop_local"] > 0:
        out.append("loop-spills")
    if 0 < row["warps_per_sm"] < POOR_OCCUPANCY_WARPS:
        out.append("low-occ")
    if not row.get("loop_found", True):
        out.append("no-loop")
    return out


def analyse(
    case: Conv3dCase,
    config: dict,
    compiled: dict,
    gpu: Gpu = RTX_4090,
    warps_per_scheduler: float = WARPS_PER_SCHEDULER,
) -> dict:
    """One row: the compiled facts (``compiled``: registers, spill_stack_bytes, shared_bytes,
    loop instructions / ffma / local) with the occupancy, waves and modelled time."""
    grid = grid_blocks(case, config["BLOCK_M"], config["BLOCK_N"])
    occ, w, factor = occupancy_and_wave_factor(
        grid,
        compiled["registers"],
        compiled["shared_bytes"],
        config["num_warps"],
        gpu,
        warps_per_scheduler,
    )
    mix = LoopMix(
        compiled["loop_instructions"], compiled["loop_ffma"], compiled["loop_local"], True
    )
    tile = tile_efficiency(case, config["BLOCK_M"], config["BLOCK_N"], config["BLOCK_K"])
    t = model_time(
        case.flop, case.min_bytes, gpu, tile_eff=tile, ffma_share=mix.ffma_share, factor=factor
    )
    row = {
        "case": case.name,
        "config": config,
        **compiled,
        "blocks_per_sm": occ.blocks_per_sm,
        "limiter": occ.limiter,
        "warps_per_sm": occ.warps_per_sm,
        "occupancy": occ.fraction,
        "grid_blocks": grid,
        "waves": w.waves,
        "rounds": w.rounds,
        "resident_warps_per_sm": w.resident_per_sm * config["num_warps"],
        "tail_efficiency": w.tail_efficiency,
        "latency_efficiency": latency_efficiency(
            w.resident_per_sm * config["num_warps"], gpu, warps_per_scheduler
        ),
        "factor": factor,
        "tile_efficiency": tile,
        "ffma_share": mix.ffma_share,
        **{k: v for k, v in asdict(t).items()},
    }
    row["flags"] = flags(row, gpu)
    return row


def clean(row: dict) -> bool:
    """Launches, loads and stores no spilled value in the K loop (a few bytes spilled
    around it cost nothing per step), and leaves the SM at least POOR_OCCUPANCY_WARPS
    warps."""
    return not set(row["flags"]) - {"spills"}


# The kernel's tuner runs the first config in list order within 1% of the fastest
# (kernels/implicit_gemm.py, TUNE_MARGIN); the model's pick does the same.
PICK_MARGIN = 0.01


def best_rows(rows: Sequence[dict], keep=lambda row: True, margin: float = PICK_MARGIN):
    """Per case, the row the tuner would pick if the model were its timing: the first in
    list order whose modelled time is within ``margin`` of the shortest, among the rows
    ``keep`` accepts; rows that cannot launch never win."""
    fastest = fastest_times(rows, keep)
    best: dict[str, dict] = {}
    for r in rows:
        if r["case"] in best or r["blocks_per_sm"] == 0 or not keep(r):
            continue
        if r["modelled_s"] <= fastest[r["case"]] * (1 + margin):
            best[r["case"]] = r
    return best


def fastest_times(rows: Sequence[dict], keep=lambda row: True) -> dict[str, float]:
    """Per case, the shortest modelled time among the launchable rows ``keep`` accepts."""
    out: dict[str, float] = {}
    for r in rows:
        if r["blocks_per_sm"] and keep(r):
            out[r["case"]] = min(out.get(r["case"], math.inf), r["modelled_s"])
    return out


def geometric_mean(values: Sequence[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else math.nan


# The compile path: imports torch and Triton.


def _compile_one(job: tuple) -> dict:
    case, kwargs, warps, stages, capability, precision = job
    import triton

    from bench import kernel_static

    cfg = triton.Config(kwargs, num_warps=warps, num_stages=stages)
    kernel = kernel_static.compile_like_launch(cfg, capability, case, precision)
    with tempfile.TemporaryDirectory(prefix="sm89_model_") as scratch:
        usage, sass = kernel_static.dump_cubin(
            kernel.asm["cubin"], os.path.join(scratch, "k.cubin")
        )
    facts = kernel_static.facts_from_dump(usage, sass)
    mix = k_loop_mix(sass)
    return {
        "registers": facts["registers"],
        "spill_stack_bytes": facts["spill_stack_bytes"],
        "shared_bytes": int(kernel.metadata.shared),
        "loop_instructions": mix.instructions,
        "loop_ffma": mix.ffma,
        "loop_local": mix.local,
        "loop_found": mix.found,
    }


def _us(seconds: float) -> str:
    return "-" if not math.isfinite(seconds) else f"{seconds * 1e6:.4g}"


def report(
    rows: Sequence[dict],
    gpu: Gpu,
    precision: str,
    triton_version: str,
    warps_per_scheduler: float = WARPS_PER_SCHEDULER,
) -> str:
    label = {id(r): LaunchConfig.from_dict(r["config"]).label() for r in rows}
    best = best_rows(rows)
    best_clean = best_rows(rows, clean)
    fastest = fastest_times(rows)
    out = [
        f"{gpu.name} (sm_{gpu.capability}), precision {precision}, Triton {triton_version}: "
        f"{len({r['case'] for r in rows})} cases x {len({label[id(r)] for r in rows})} configs.",
        "STATIC (compiled for this GPU with Triton's ptxas, read with cuobjdump): regs, spill B, "
        "shared B, loop FFMA share.",
        "MODELLED, NOT MEASURED: blocks/SM and occupancy (occupancy-calculator rules), waves, "
        "and every time below (bench/sm89_model.py, model_time).",
        f"Limits: shared {gpu.shared_per_block_optin} B a block (opt-in), "
        f"{gpu.shared_per_sm} B an SM less {gpu.shared_reserved_per_block} B a block; "
        f"{gpu.max_warps_per_sm} warps, {gpu.max_blocks_per_sm} blocks, "
        f"{gpu.registers_per_sm} registers an SM; {gpu.sms} SMs; "
        f"{gpu.fp32_flop_per_s / 1e12:g} TFLOP/s FP32, {gpu.dram_bytes_per_s / 1e9:g} GB/s.",
        f"low-occ: the config's resources leave fewer than {POOR_OCCUPANCY_WARPS} warps an SM; "
        "spills: any spill stack; loop-spills: local loads or stores in the K loop; clean: "
        "launches, no loop-spills, no low-occ. "
        "tile: multiply-adds needed over those the tiles issue. FFMA share: of the K loop's "
        "SASS instructions.",
        "fma us: FLOP / (FP32 rate x tile x FFMA share); model us: max(fma us, bytes / DRAM "
        "rate) / (tail x latency efficiency). x fastest: model us over the case's shortest.",
        f"Latency efficiency: min(1, resident warps a scheduler / {warps_per_scheduler:g}).",
        "",
    ]
    header = [
        "case",
        "config",
        "regs",
        "spill B",
        "shared B",
        "blk/SM (limit)",
        "warps/SM",
        "occ",
        "grid",
        "waves",
        "tail",
        "tile",
        "FFMA share",
        "loop LDL/STL",
        "floor us",
        "fma us",
        "model us",
        "bound",
        "x fastest",
        "flags",
    ]
    body = []
    for r in rows:
        ratio = r["modelled_s"] / fastest.get(r["case"], math.inf)
        body.append(
            [
                r["case"],
                label[id(r)],
                str(r["registers"]),
                str(r["spill_stack_bytes"]),
                str(r["shared_bytes"]),
                f"{r['blocks_per_sm']} ({r['limiter']})",
                str(r["warps_per_sm"]),
                f"{r['occupancy']:.0%}",
                str(r["grid_blocks"]),
                f"{r['waves']:.2f}",
                f"{r['tail_efficiency']:.2f}",
                f"{r['tile_efficiency']:.2f}",
                f"{r['ffma_share']:.2f}",
                str(r["loop_local"]),
                _us(r["floor_s"]),
                _us(r["fma_s"]),
                _us(r["modelled_s"]),
                r["bound"],
                "-" if not math.isfinite(ratio) else f"{ratio:.2f}",
                ",".join(r["flags"]),
            ]
        )
    out += ["Per case and config:", text_table(header, body), ""]

    out.append(
        "Pick per case (modelled): the first config in list order within "
        f"{PICK_MARGIN:.0%} of the shortest modelled time, as the kernel's tuner picks:"
    )
    head = [
        "case",
        "config",
        "regs",
        "spill B",
        "shared B",
        "blk/SM",
        "occ",
        "waves",
        "tail",
        "model ms",
        "floor ms",
        "floor/model",
        "bound",
        "runner-up (x fastest)",
        "best clean (x fastest)",
    ]
    summary = []
    for case in dict.fromkeys(r["case"] for r in rows):
        b = best.get(case)
        if b is None:
            summary.append([case, "none can launch", *[""] * (len(head) - 2)])
            continue
        others = sorted(
            (r for r in rows if r["case"] == case and r is not b and r["blocks_per_sm"]),
            key=lambda r: r["modelled_s"],
        )
        second = (
            f"{label[id(others[0])]} ({others[0]['modelled_s'] / fastest[case]:.2f})"
            if others
            else "-"
        )
        c = best_clean.get(case)
        tidy = "none" if c is None else f"{label[id(c)]} ({c['modelled_s'] / fastest[case]:.2f})"
        summary.append(
            [
                case,
                label[id(b)],
                str(b["registers"]),
                str(b["spill_stack_bytes"]),
                str(b["shared_bytes"]),
                str(b["blocks_per_sm"]),
                f"{b['occupancy']:.0%}",
                f"{b['waves']:.2f}",
                f"{b['tail_efficiency']:.2f}",
                f"{b['modelled_s'] * 1e3:.4f}",
                f"{b['floor_s'] * 1e3:.4f}",
                f"{b['floor_s'] / b['modelled_s']:.2f}",
                b["bound"],
                second,
                tidy,
            ]
        )
    out += [text_table(head, summary), ""]

    out.append("Per config over the cases (x fastest: modelled time over each case's shortest):")
    head = [
        "config",
        "regs (min-max)",
        "spills on",
        "loop-spills on",
        "max spill B",
        "max shared B",
        "over opt-in",
        "warps/SM (min-max)",
        "low-occ on",
        "picked on",
        "picked clean on",
        "within 1.10x on",
        "geomean x fastest",
    ]
    per_config = []
    for name in dict.fromkeys(label[id(r)] for r in rows):
        mine = [r for r in rows if label[id(r)] == name]
        ratios = [
            r["modelled_s"] / fastest[r["case"]]
            for r in mine
            if r["case"] in fastest and math.isfinite(r["modelled_s"])
        ]
        wins = [r["case"] for r in mine if best.get(r["case"]) is r]
        per_config.append(
            [
                name,
                f"{min(r['registers'] for r in mine)}-{max(r['registers'] for r in mine)}",
                f"{sum(r['spill_stack_bytes'] > 0 for r in mine)}/{len(mine)}",
                f"{sum(r['loop_local'] > 0 for r in mine)}/{len(mine)}",
                str(max(r["spill_stack_bytes"] for r in mine)),
                str(max(r["shared_bytes"] for r in mine)),
                str(sum("shared>optin" in r["flags"] for r in mine)),
                f"{min(r['warps_per_sm'] for r in mine)}-{max(r['warps_per_sm'] for r in mine)}",
                str(sum("low-occ" in r["flags"] for r in mine)),
                ",".join(wins) or "-",
                ",".join(r["case"] for r in mine if best_clean.get(r["case"]) is r) or "-",
                str(sum(x <= 1.10 for x in ratios)),
                f"{geometric_mean(ratios):.2f}" if ratios else "-",
            ]
        )
    out += [text_table(head, per_config)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    ap.add_argument("--json", default="", help="also write the rows here")
    ap.add_argument(
        "--gpu",
        default="rtx4090",
        choices=sorted(GPUS),
        help="the GPU modelled and the capability compiled for (h200: the proxy, sm_90)",
    )
    ap.add_argument(
        "--warps-per-scheduler",
        type=float,
        default=WARPS_PER_SCHEDULER,
        help="resident warps a scheduler the model takes to hide the loop's stalls",
    )
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        sys.exit("sm89_model: unset TRITON_INTERPRET; compiling needs Triton's compiler")
    import multiprocessing

    import triton

    from kernels import implicit_gemm as ig

    gpu = GPUS[args.gpu]
    # The precision the 4090 runs, on either GPU: the H200 stands in for its path.
    precision = ig.mode_for_capability((8, 9))
    cases = builtin_cases()
    if args.cases:
        cases = select(cases, args.cases.split(","))
    # Every config runs in ieee (no block-size limit); one that cannot launch is flagged.
    configs = list(ig.AUTOTUNE_CONFIGS)
    jobs = [
        (case, dict(c.kwargs), c.num_warps, c.num_stages, gpu.capability, precision)
        for case in cases
        for c in configs
    ]
    with ProcessPoolExecutor(
        max_workers=max(1, args.workers), mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        compiled = []
        for i, facts in enumerate(pool.map(_compile_one, jobs), 1):
            compiled.append(facts)
            if i % len(configs) == 0:
                print(f"# {jobs[i - 1][0].name}: compiled", file=sys.stderr, flush=True)
    rows = [
        analyse(
            job[0],
            {**job[1], "num_warps": job[2], "num_stages": job[3]},
            facts,
            gpu,
            args.warps_per_scheduler,
        )
        for job, facts in zip(jobs, compiled)
    ]
    print(report(rows, gpu, precision, triton.__version__, args.warps_per_scheduler))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "gpu": asdict(gpu),
                    "precision": precision,
                    "warps_per_scheduler": args.warps_per_scheduler,
                    "triton": triton.__version__,
                    "note": "registers, spills, shared and loop counts are static; occupancy, "
                    "waves and times are modelled, not measured",
                    "rows": rows,
                },
                fh,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
