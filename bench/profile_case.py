"""Launch one suite case's kernel with the config its H100 baseline entry recorded, for a
profiler to read (no autotuning, so the profiled launch is the one the gate times).

    ncu --kernel-name regex:conv3d --launch-skip 3 --launch-count 1 \\
        --section SpeedOfLight --section Occupancy --section WarpStateStats \\
        python3 -m bench.profile_case kb54 [--precision tf32x3]

Needs a CUDA GPU. Four launches: three to warm up, the fourth to profile.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import triton

from kernels.implicit_gemm import PRECISIONS, conv3d
from pytest_conv3d_perf import check
from pytest_conv3d_perf.cases import builtin_cases, select

BASELINE = (
    Path(__file__).resolve().parents[1]
    / "notes"
    / "data"
    / "retired"
    / "nvidia-h100-80gb-hbm3.json"
)


def recorded_config(name: str) -> triton.Config:
    cfg = dict(json.loads(BASELINE.read_text())["cases"][name]["autotune"])
    warps, stages = cfg.pop("num_warps"), cfg.pop("num_stages")
    return triton.Config(cfg, num_warps=warps, num_stages=stages)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case", help="a suite case with an entry in the H100 baseline")
    ap.add_argument("--precision", default="tf32x3-ws", choices=PRECISIONS)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("profile_case: needs a CUDA GPU", file=sys.stderr)
        return 2
    [case] = select(builtin_cases(), [args.case])
    inputs = check.random_inputs(case, torch.device("cuda"), seed=1)
    cfg = recorded_config(case.name)
    for _ in range(4):
        conv3d(
            inputs.x,
            inputs.weight,
            inputs.bias,
            case.stride,
            case.padding,
            case.dilation,
            precision=args.precision,
            config=cfg,
        )
    torch.cuda.synchronize()
    print(f"profile_case: {case.name} {args.precision} {cfg}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
