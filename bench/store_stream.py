"""How fast the kernel's output pattern alone can be written: each case's output (NCDHW)
stored by a kernel that computes nothing, tile by tile, as the conv kernel's epilogue
stores it (a BLOCK_M x BLOCK_N tile of positions x channels, rows never spanning two
images), against PyTorch's fill of the same tensor. Needs a CUDA GPU.

    python3 -m bench.store_stream [--cases kb54,kb59,kb60,kb66] [--tiles 128x64,256x64]

Two sources for the tile: ``plain`` (a value the store's own layout computes) and ``mma``
(the tile comes out of a tensor-core product of K 16, as the conv's accumulator does, so
the store pays the layout conversion the real epilogue pays). The gap between the conv
kernel's time and this one's is what the K loop costs over the write stream.
"""

from __future__ import annotations

import argparse
import sys

import torch
import triton
import triton.language as tl
import triton.testing

from pytest_conv3d_perf.cases import CaseError, builtin_cases, select
from pytest_conv3d_perf.report import text_table

DEFAULT_CASES = "kb54,kb59,kb60,kb66"
DEFAULT_TILES = "128x64,64x64,256x64,128x32"


@triton.jit
def _store_tile(
    y_ptr,
    OC,
    SPATIAL,
    MMA: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    pid = tl.program_id(0)
    num_pid_n = tl.cdiv(OC, BLOCK_N)
    pid_m = pid // num_pid_n
    pid_n = pid % num_pid_n
    blocks_per_image = tl.cdiv(SPATIAL, BLOCK_M)
    batch = pid_m // blocks_per_image
    pos = (pid_m % blocks_per_image) * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    if MMA:
        # A product whose result depends on the block, so nothing folds away.
        a = (pos[:, None] + tl.arange(0, 16)[None, :]).to(tl.float32)
        b = (rn[None, :] + tl.arange(0, 16)[:, None]).to(tl.float32)
        tile = tl.dot(a, b, input_precision="tf32")
    else:
        tile = (pos[:, None] + rn[None, :]).to(tl.float32)
    y_row = batch.to(tl.int64) * OC * SPATIAL + pos
    y_col = rn.to(tl.int64) * SPATIAL
    tl.store(
        y_ptr + y_row[:, None] + y_col[None, :],
        tile,
        mask=(pos < SPATIAL)[:, None] & (rn < OC)[None, :],
    )


def parse_tiles(text: str) -> list[tuple[int, int]]:
    tiles = []
    for item in text.split(","):
        try:
            m, n = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise ValueError(f"--tiles: {item!r} is not MxN (e.g. 128x64)") from None
        if m < 16 or n < 16 or m & (m - 1) or n & (n - 1):
            raise ValueError(f"--tiles: {item!r}: both sides powers of two, 16 or more")
        tiles.append((m, n))
    return tiles


def store_ms(y: torch.Tensor, tile: tuple[int, int], mma: bool, reps: int) -> float:
    n, oc = y.shape[:2]
    spatial = y[0, 0].numel()
    bm, bn = tile
    grid = (n * triton.cdiv(spatial, bm) * triton.cdiv(oc, bn),)

    def run() -> None:
        _store_tile[grid](y, oc, spatial, MMA=mma, BLOCK_M=bm, BLOCK_N=bn, num_warps=4)

    return float(triton.testing.do_bench(run, rep=reps, return_mode="median"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=DEFAULT_CASES, help="suite cases (default: %(default)s)")
    ap.add_argument("--tiles", default=DEFAULT_TILES, help="MxN tiles (default: %(default)s)")
    ap.add_argument("--rep-ms", type=int, default=200, help="do_bench's rep (default: %(default)s)")
    args = ap.parse_args(argv)
    try:
        tiles = parse_tiles(args.tiles)
        cases = select(builtin_cases(), [c for c in args.cases.split(",") if c])
    except (ValueError, CaseError) as err:
        print(f"store_stream: {err}", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("store_stream: needs a CUDA GPU", file=sys.stderr)
        return 2
    rows = []
    for case in cases:
        y = torch.empty(case.output_shape, device="cuda")
        gb = y.numel() * 4 / 1e9
        fill = float(
            triton.testing.do_bench(lambda y=y: y.fill_(1.0), rep=args.rep_ms, return_mode="median")
        )
        rows.append([case.name, "torch fill_", f"{fill:.4f}", f"{gb / fill:.2f}"])
        for tile in tiles:
            for mma in (False, True):
                ms = store_ms(y, tile, mma, args.rep_ms)
                rows.append(
                    [
                        case.name,
                        f"{tile[0]}x{tile[1]} {'mma' if mma else 'plain'}",
                        f"{ms:.4f}",
                        f"{gb / ms:.2f}",
                    ]
                )
        print(f"# {case.name}: {gb:.3f} GB of output", flush=True)
    print(text_table(["case", "store", "ms", "TB/s"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
