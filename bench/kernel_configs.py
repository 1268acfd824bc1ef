"""Sweep launch configs of the implicit-GEMM kernel per case, and the precision modes at the
best one, to choose the autotune list from measurements. Needs a CUDA GPU.

    python bench/kernel_configs.py [--cases kb54,kb66] [--json out.json]
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
        if ig.shared_memory_bytes(cfg) > ig.SHARED_MEMORY_LIMIT:
            continue
        if bm * bn // (warps * 32) > 128:  # accumulator registers per thread
            continue
        if warps == 8 and bm * bn < 128 * 128:
            continue
        if warps == 4 and bm * bn > 128 * 128:
            continue
        out.append(cfg)
    return out


def launch(case, inputs, cfg: triton.Config, precision: str, out: torch.Tensor):
    x, w, b = inputs.x, inputs.weight, inputs.bias
    n, ic, d, h, wd = x.shape
    od, oh, ow = case.output
    m = n * od * oh * ow
    k = ic * w.shape[2] * w.shape[3] * w.shape[4]
    taps = ig._tap_table(ic, tuple(w.shape[2:]), case.dilation, (d, h, wd), x.device)
    grid = (triton.cdiv(m, cfg.kwargs["BLOCK_M"]) * triton.cdiv(case.oc, cfg.kwargs["BLOCK_N"]),)
    ig._conv3d_kernel[grid](
        x,
        w,
        b if b is not None else w,
        out,
        taps,
        m,
        case.oc,
        k,
        d,
        h,
        wd,
        od,
        oh,
        ow,
        *case.stride,
        *case.padding,
        ic * d * h * wd,
        HAS_BIAS=b is not None,
        PADDED=any(case.padding),
        PRECISION=precision,
        **cfg.kwargs,
        num_warps=cfg.num_warps,
        num_stages=cfg.num_stages,
    )


def time_config(case, inputs, cfg, precision: str, out: torch.Tensor, rep: int) -> float:
    def run() -> None:
        launch(case, inputs, cfg, precision, out)

    run()
    return float(triton.testing.do_bench(run, warmup=10, rep=rep, return_mode="median"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="kb54,kb59,kb60,kb66,video_c64")
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
                ms = time_config(case, inputs, cfg, "tf32x3", out, rep=40)
            except Exception as exc:  # a config that fails to compile is skipped
                print(f"# {case.name} {cfg}: {type(exc).__name__}", flush=True)
                continue
            timed.append((ms, cfg))
        timed.sort(key=lambda t: t[0])
        best_ms, best = timed[0]
        prec = {}
        for p in ("tf32", "ieee"):
            prec[p] = time_config(case, inputs, best, p, out, rep=100)
        report = check.CheckReport(case.name, check.rule_for("tf32x3"))
        launch(case, inputs, best, "tf32x3", out)
        check.compare_with_truth(out, inputs, case, report)
        row = {
            "case": case.name,
            "best_ms": best_ms,
            "best": str(best),
            "top5": [(round(t, 4), str(c)) for t, c in timed[:5]],
            "tf32_ms": prec["tf32"],
            "ieee_ms": prec["ieee"],
            "ok": report.ok,
            "max_abs": report.max_abs.value,
            "configs": len(timed),
        }
        rows.append(row)
        print(f"# {case.name}: best {best_ms:.3f} ms {best}", flush=True)
    print(f"\n{torch.cuda.get_device_name()}, triton {triton.__version__}")
    for r in rows:
        print(
            f"{r['case']:10s} tf32x3 {r['best_ms']:.3f}  tf32 {r['tf32_ms']:.3f}  "
            f"ieee {r['ieee_ms']:.3f}  ok={r['ok']} err={r['max_abs']:.1e}  "
            f"({r['configs']} configs)"
        )
        for t, c in r["top5"]:
            print(f"    {t:.4f} {c}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
