"""Sweep launch configs of the implicit-GEMM kernel per case (in one precision mode), and
every precision mode at the best one, to choose the autotune list from measurements.
Needs a CUDA GPU.

    python3 -m bench.kernel_configs [--cases kb54,kb66] [--precision tf32] [--json out.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys

import torch
import triton
import triton.testing

from kernels import implicit_gemm as ig
from pytest_conv3d_perf import check
from pytest_conv3d_perf.cases import builtin_cases, select


def candidates() -> list[triton.Config]:
    out = []
    for bm, bn, bk, warps, stages in itertools.product(
        (64, 128, 256), (64, 128), (16, 32, 64), (4, 8), (3, 4)
    ):
        cfg = triton.Config(
            {"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk}, num_warps=warps, num_stages=stages
        )
        if bm * bn // (warps * 32) > 128:  # accumulator registers per thread
            continue
        if warps == 8 and bm * bn < 128 * 128:
            continue
        if warps == 4 and bm * bn > 128 * 128:
            continue
        out.append(cfg)
    # Last: compiling for the RTX 4090 takes a second or two per config.
    used = ig.compiled_shared_bytes(out, 89, padded=True)
    return [cfg for cfg, nbytes in zip(out, used) if nbytes <= ig.SHARED_MEMORY_LIMIT]


def launch(case, inputs, cfg: triton.Config, precision: str, out: torch.Tensor):
    x, w, b = inputs.x, inputs.weight, inputs.bias
    ig.conv3d(
        x, w, b, case.stride, case.padding, case.dilation, out=out, precision=precision, config=cfg
    )


def time_config(case, inputs, cfg, precision: str, out: torch.Tensor, rep: int) -> float:
    def run() -> None:
        launch(case, inputs, cfg, precision, out)

    run()
    return float(triton.testing.do_bench(run, warmup=10, rep=rep, return_mode="median"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="kb54,kb59,kb60,kb66,video_c64")
    ap.add_argument("--precision", default=ig.DEFAULT_PRECISION, choices=ig.PRECISIONS)
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    dev = torch.device("cuda")
    rows = []
    for case in select(builtin_cases(), args.cases.split(",")):
        inputs = check.random_inputs(case, dev, 1)
        out = torch.empty(case.output_shape, device=dev)
        timed = []
        for cfg in candidates():
            try:
                ms = time_config(case, inputs, cfg, args.precision, out, rep=40)
            except Exception as exc:  # a config that fails to compile is skipped
                print(f"# {case.name} {cfg}: {type(exc).__name__}", flush=True)
                continue
            timed.append((ms, cfg))
        timed.sort(key=lambda t: t[0])
        best_ms, best = timed[0]
        prec = {}
        for p in ig.PRECISIONS:
            prec[p] = time_config(case, inputs, best, p, out, rep=100)
        report = check.CheckReport(case.name, check.rule_for(args.precision))
        launch(case, inputs, best, args.precision, out)
        check.compare_with_truth(out, inputs, case, report)
        row = {
            "case": case.name,
            "best_ms": best_ms,
            "best": str(best),
            "top5": [(round(t, 4), str(c)) for t, c in timed[:5]],
            "precisions_ms": prec,
            "ok": report.ok,
            "max_abs": report.max_abs.value,
            "configs": len(timed),
        }
        rows.append(row)
        print(f"# {case.name}: best {best_ms:.3f} ms {best}", flush=True)
    print(
        f"\n{torch.cuda.get_device_name()}, triton {triton.__version__}, "
        f"configs swept with {args.precision}; each precision timed at the best config"
    )
    for r in rows:
        times = "  ".join(f"{p} {ms:.3f}" for p, ms in r["precisions_ms"].items())
        print(
            f"{r['case']:10s} best {r['best_ms']:.3f}  {times}  ok={r['ok']} "
            f"err={r['max_abs']:.1e}  ({r['configs']} configs)"
        )
        for t, c in r["top5"]:
            print(f"    {t:.4f} {c}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
