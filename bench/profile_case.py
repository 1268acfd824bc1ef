"""Launch one suite case's kernel with the config a baseline entry recorded (default: the
H200's file), for a profiler to read (no autotuning, so the profiled launch is the one the
gate times).

    ncu --kernel-name regex:conv3d --launch-skip 3 --launch-count 1 \\
        --section SpeedOfLight --section Occupancy --section WarpStateStats \\
        python3 -m bench.profile_case kb54 [--precision tf32x3] [--baseline FILE]

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

BASELINE = Path(__file__).resolve().parents[1] / "baselines" / "nvidia-h200.json"


def recorded_config(name: str, baseline: Path = BASELINE) -> triton.Config:
    cfg = dict(json.loads(Path(baseline).read_text())["cases"][name]["autotune"])
    warps, stages = cfg.pop("num_warps"), cfg.pop("num_stages")
    return triton.Config(cfg, num_warps=warps, num_stages=stages)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case", help="a suite case with an entry in the baseline file")
    ap.add_argument("--precision", default="tf32x3-ws", choices=PRECISIONS)
    ap.add_argument(
        "--baseline",
        default=str(BASELINE),
        help="baseline file whose recorded config to launch (default: %(default)s)",
    )
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("profile_case: needs a CUDA GPU", file=sys.stderr)
        return 2
    [case] = select(builtin_cases(), [args.case])
    inputs = check.random_inputs(case, torch.device("cuda"), seed=1)
    try:
        cfg = recorded_config(case.name, Path(args.baseline))
    except (OSError, ValueError, KeyError) as err:
        print(
            f"profile_case: no recorded config for {case.name} in {args.baseline}: {err!r}",
            file=sys.stderr,
        )
        return 2
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
