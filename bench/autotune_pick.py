"""Which config the kernel's autotuner picks for a case, in fresh processes, with the GPU
idle before the first call and with it kept busy first (``CudaTimer.warm_gpu``). Needs a
CUDA GPU.

    python3 -m bench.autotune_pick [--case kb54[,n1_oc17_bias...]] [--processes 4]
        [--settings idle,warmed] [--variant bench/variants/v24d_heldtuner.diff]

Each child process makes the case's inputs, optionally warms the GPU, calls the kernel once
(the autotune), and prints the pick and each config's median do_bench time over the
tuner's rounds (the kernel's tuner judges each config against the fastest of each round,
`relative_times`; a kernel still tuned by Triton's autotuner: its one timing a config).
Triton's on-disk autotune cache and the kernel's kept picks (``CONV3D_TUNE_DIR``) are
switched off in the children, so each one decides anew.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.variants import VariantError, materialize
from pytest_conv3d_perf.cases import CaseError, builtin_cases, select

CHILD = """
import json, statistics, sys, time, torch
if sys.argv[4]:
    from bench.variants import load
    ig = load(sys.argv[4], "kernel_variant", own_digest=True)
else:
    from kernels import implicit_gemm as ig
from pytest_conv3d_perf import check
from pytest_conv3d_perf.cases import builtin_cases, select
from pytest_conv3d_perf.timer import CudaTimer
name, warm, idle_s = sys.argv[1], sys.argv[2] == "1", float(sys.argv[3])
[case] = select(builtin_cases(), [name])
inputs = check.random_inputs(case, torch.device("cuda"), 1)
if warm:
    CudaTimer().warm_gpu(0.2)
else:
    torch.cuda.synchronize()
    time.sleep(idle_s)  # the GPU idles, as between a process's start and its first case
ig.conv3d(inputs.x, inputs.weight, inputs.bias, case.stride, case.padding, case.dilation)
tuned = getattr(ig, "_TIMINGS", None)
if tuned:  # the kernel's own tuner: each config's median over its rounds
    [rounds] = tuned.values()
    # The list the tuner ran on this GPU (v26: more than AUTOTUNE_CONFIGS on sm_90).
    listed = getattr(ig, "autotune_configs", None)
    configs = listed(torch.cuda.get_device_capability()) if listed else ig.AUTOTUNE_CONFIGS
    timings = {str(configs[i]): round(statistics.median(t), 4) for i, t in rounds.items()}
else:  # Triton's autotuner (the kernel before v16)
    timed = getattr(ig._conv3d_autotuned, "configs_timings", None) or {}
    timings = {str(c): round(float(t[0]), 4) for c, t in timed.items()}
print(json.dumps({"pick": str(ig._LAST[0]), "timings": timings}))
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default="kb54", help="a case, or several comma-separated")
    ap.add_argument(
        "--settings",
        default="idle,warmed",
        help="idle (the GPU idle before the call), warmed (kept busy first), or both",
    )
    ap.add_argument(
        "--variant",
        default="",
        help="a variant of the kernel file (a .diff of bench/variants) to tune instead",
    )
    ap.add_argument("--processes", type=int, default=4, help="fresh processes per setting")
    ap.add_argument("--idle-s", type=float, default=2.0, help="idle time before the call")
    args = ap.parse_args(argv)
    settings = [s for s in args.settings.split(",") if s]
    try:
        cases = select(builtin_cases(), [c for c in args.case.split(",") if c])
        if not settings or set(settings) - {"idle", "warmed"}:
            raise ValueError(f"--settings: idle, warmed or both, not {args.settings!r}")
        variant = str(materialize(Path(args.variant))) if args.variant else ""
    except (CaseError, ValueError, VariantError) as exc:
        print(f"autotune_pick: {exc}", file=sys.stderr)
        return 2
    # Neither Triton's on-disk autotune cache nor the kernel's kept picks: each child tunes.
    env = {**os.environ, "TRITON_CACHE_AUTOTUNING": "0", "CONV3D_TUNE_DIR": "off"}
    for case in cases:
        code = pick_case(case.name, args.processes, settings, args.idle_s, variant, env)
        if code:
            return code
    return 0


def pick_case(
    name: str, processes: int, settings: list[str], idle_s: float, variant: str, env: dict
) -> int:
    picks = {s: collections.Counter() for s in settings}
    for i in range(processes):
        for setting in settings:
            start = time.perf_counter()
            done = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    CHILD,
                    name,
                    str(int(setting == "warmed")),
                    str(idle_s),
                    variant,
                ],
                env=env,
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                print(done.stderr[-2000:], file=sys.stderr)
                return 1
            row = json.loads(done.stdout.strip().splitlines()[-1])
            picks[setting][row["pick"]] += 1
            fastest = sorted(row["timings"].items(), key=lambda kv: kv[1])[:3]
            took = time.perf_counter() - start
            print(f"# {setting} {i}: {took:.0f} s, picked {row['pick']}", flush=True)
            print(f"#   fastest three as it timed them: {fastest}", flush=True)
    which = f" ({Path(variant).stem})" if variant else ""
    print(f"\n{name}{which}: autotune picks in {processes} fresh processes each")
    for setting, counts in picks.items():
        for pick, n in counts.most_common():
            print(f"  {setting:7s} {n}x {pick}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
