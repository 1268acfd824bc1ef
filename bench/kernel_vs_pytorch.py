"""Per case: the kernel's time, TFLOP/s, share of the floor, speed relative to each PyTorch
setting, and its largest errors against the float64 truth. Needs a CUDA GPU.

    python bench/kernel_vs_pytorch.py [--cases kb54,kb66] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
import triton.testing

from kernels.implicit_gemm import chosen_config, conv3d
from pytest_conv3d_perf import check
from pytest_conv3d_perf.cases import builtin_cases, select

# Ceilings measured on the device tool's H100 (KINDS.md: a device-to-device copy moved
# 3.0 TB/s) and the TF32 dense rate DESIGN.md's floors imply (0.14 ms for 6.83e10 FLOP).
BANDWIDTH = 3.0e12
TF32_PEAK = 4.9e14
# tf32x3 issues three TF32 products per product.
PRECISION_COST = {"tf32x3": 3, "tf32x3-2acc": 3, "tf32": 1}


def bench(fn, rep_ms: int) -> float:
    return float(triton.testing.do_bench(fn, warmup=25, rep=rep_ms, return_mode="median"))


def pytorch_settings(case, x, w, b):
    f = torch.nn.functional.conv3d
    args = (case.stride, case.padding, case.dilation)

    def as_called():
        return f(x, w, b, *args)

    w_cl = w.to(memory_format=torch.channels_last_3d)

    def channels_last():
        # The layout change counts, as it would for a caller holding NCDHW tensors.
        return f(x.to(memory_format=torch.channels_last_3d), w_cl, b, *args).contiguous()

    return {
        "as_called": (as_called, False, False),
        "benchmark": (as_called, True, False),
        "cl_tf32": (channels_last, True, True),
    }


def run_case(case, rep_ms: int, precision: str) -> dict:
    dev = torch.device("cuda")
    inputs = check.random_inputs(case, dev, seed=1)
    x, w, b = inputs.x, inputs.weight, inputs.bias
    row: dict = {"case": case.name, "flop": case.flop}

    out = check.poisoned_output(case, dev)
    conv3d(x, w, b, case.stride, case.padding, case.dilation, out=out, precision=precision)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    report = check.CheckReport(case.name, check.rule_for(precision))
    check.compare_with_truth(out, inputs, case, report)
    torch.cuda.synchronize()
    row["truth_s"] = time.perf_counter() - t0
    row["max_abs"] = report.max_abs.value
    row["max_rel"] = report.max_rel.value
    row["ok"] = report.ok
    del out

    row["ms"] = bench(
        lambda: conv3d(x, w, b, case.stride, case.padding, case.dilation, precision=precision),
        rep_ms,
    )
    default_tf32 = torch.backends.cudnn.allow_tf32
    for name, (fn, benchmark, tf32) in pytorch_settings(case, x, w, b).items():
        torch.backends.cudnn.benchmark = benchmark
        torch.backends.cudnn.allow_tf32 = tf32 or default_tf32
        row[name] = bench(fn, rep_ms)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.allow_tf32 = default_tf32
    floor_s = max(case.min_bytes / BANDWIDTH, case.flop * PRECISION_COST[precision] / TF32_PEAK)
    row["floor_ms"] = floor_s * 1e3
    row["tflops"] = case.flop / row["ms"] / 1e9
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    ap.add_argument("--rep-ms", type=int, default=200, help="do_bench repetition time per call")
    ap.add_argument("--precision", default="tf32x3", choices=sorted(PRECISION_COST))
    ap.add_argument("--json", default="", help="write the rows as JSON here")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("kernel_vs_pytorch: needs a CUDA GPU", file=sys.stderr)
        return 2
    names = [n for n in args.cases.split(",") if n]
    rows = []
    for case in select(builtin_cases(), names):
        row = run_case(case, args.rep_ms, args.precision)
        rows.append(row)
        print(f"# {case.name}: {row['ms']:.3f} ms, truth {row['truth_s']:.1f} s", flush=True)
    print(
        f"\n{torch.cuda.get_device_name()}, torch {torch.__version__}, "
        f"triton {triton.__version__}, precision {args.precision}"
    )
    head = (
        f"{'case':20s} {'ms':>8s} {'TFLOP/s':>8s} {'floor%':>7s} {'x called':>8s} "
        f"{'x bench':>8s} {'x cl+tf32':>9s} {'max abs':>9s} {'max rel':>9s} ok"
    )
    print(head)
    for r in rows:
        print(
            f"{r['case']:20s} {r['ms']:8.3f} {r['tflops']:8.1f} "
            f"{100 * r['floor_ms'] / r['ms']:7.1f} {r['as_called'] / r['ms']:8.2f} "
            f"{r['benchmark'] / r['ms']:8.2f} {r['cl_tf32'] / r['ms']:9.2f} "
            f"{r['max_abs']:9.2e} {r['max_rel']:9.2e} {r['ok']}"
        )
    kb = [r for r in rows if r["case"].startswith("kb")]
    if kb:
        geo = 1.0
        for r in kb:
            geo *= r["as_called"] / r["ms"]
        print(
            f"geometric-mean speed-up over PyTorch as called (KernelBench cases): "
            f"{geo ** (1 / len(kb)):.2f}x"
        )
    print("autotune:", json.dumps(chosen_config()))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
