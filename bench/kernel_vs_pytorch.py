"""Per case and precision mode: the kernel's device time, TFLOP/s, share of the floor, speed
relative to each PyTorch setting, call time in a loop, and its largest errors against the
float64 truth. Needs a CUDA GPU.

    python3 -m bench.kernel_vs_pytorch [--cases kb54,kb66] [--precision tf32x3,tf32x3-2acc]
                                      [--json out.json]

Columns: `x called` is PyTorch as a caller runs it (cuDNN with TF32, its default), `x fp32`
PyTorch in true fp32 (`torch.backends.cudnn.allow_tf32 = False`, the like-for-like one),
`x cl+tf32` channels-last with TF32, layout changes included (PyTorch's fastest setting);
above 1 the kernel is faster. `call us` is what a caller in a loop sees per call
(back-to-back calls, host work included, one synchronisation at the end), beside PyTorch's
as called; `host us` the host's time per call alone (calls queued behind a spin kernel, so
none waits for the GPU): where it is near `call us`, the call is bound by the host.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from typing import NamedTuple

import torch
import triton.testing

from kernels.implicit_gemm import PRECISIONS, conv3d, last_config
from pytest_conv3d_perf import check
from pytest_conv3d_perf.cases import builtin_cases, select

# The TF32 dense tensor rate the notes' floors use, by GPU model (0.14 ms for 6.83e10 FLOP
# on an H100; the H200 has the same SMs and clocks). The bandwidth is measured at the start
# of a run (a device-to-device copy: 3.0 TB/s on the device tool's H100, about 4.3 on its
# H200), since a data sheet's number is not reached.
TF32_PEAK = {"H100": 4.9e14, "H200": 4.9e14}
# tf32x3 issues three TF32 products per product; ieee runs on the CUDA cores (about a
# seventh of the TF32 rate on an H100).
PRECISION_COST = {"tf32x3-ws": 3, "tf32x3": 3, "tf32x3-2acc": 3, "tf32": 1, "ieee": 7}


class Ceilings(NamedTuple):
    bandwidth: float  # bytes/s a device-to-device copy reaches
    tf32: float  # dense TF32 tensor-core FLOP/s


def floor_ms(flop: int, min_bytes: int, precision: str, ceilings: Ceilings) -> float:
    """The larger of the bytes over the bandwidth and the products the precision issues
    over the tensor rate: no kernel of that precision can beat it."""
    seconds = max(min_bytes / ceilings.bandwidth, flop * PRECISION_COST[precision] / ceilings.tf32)
    return seconds * 1e3


def tf32_peak(device_name: str) -> float | None:
    return next((rate for model, rate in TF32_PEAK.items() if model in device_name), None)


def copy_bandwidth(gib: int = 1) -> float:
    """Bytes/s of a device-to-device copy of ``gib`` GiB (read and written), do_bench's
    median: what the memory system gives a kernel that only streams."""
    src = torch.empty(gib << 28, dtype=torch.float32, device="cuda").uniform_()
    dst = torch.empty_like(src)
    ms = float(
        triton.testing.do_bench(lambda: dst.copy_(src), warmup=25, rep=500, return_mode="median")
    )
    moved = 2 * src.numel() * src.element_size()
    return moved / (ms * 1e-3)


def measured_ceilings(tf32_tflops: float | None = None) -> Ceilings:
    rate = tf32_tflops * 1e12 if tf32_tflops else tf32_peak(torch.cuda.get_device_name())
    if rate is None:
        raise SystemExit(
            f"kernel_vs_pytorch: no TF32 rate known for {torch.cuda.get_device_name()}; "
            "give it with --tf32-tflops"
        )
    return Ceilings(copy_bandwidth(), rate)


def bench(fn, rep_ms: int) -> float:
    return float(triton.testing.do_bench(fn, warmup=25, rep=rep_ms, return_mode="median"))


def call_us(fn, calls: int = 100, repeats: int = 7) -> float:
    """Median over ``repeats`` loops of ``calls`` back-to-back calls, per call: launches,
    host work and allocations included, as a caller's loop sees them."""
    fn()
    torch.cuda.synchronize()
    per_call = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
        per_call.append((time.perf_counter() - t0) / calls * 1e6)
    return sorted(per_call)[len(per_call) // 2]


def host_us(fn, calls: int = 100, repeats: int = 5) -> float:
    """Median over ``repeats`` of the host time per call of ``calls`` calls issued while
    a spin kernel holds the GPU (about 30 ms at 1.7 GHz), so no call waits for it."""
    fn()
    torch.cuda.synchronize()
    per_call = []
    for _ in range(repeats):
        torch.cuda._sleep(50_000_000)
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        per_call.append((time.perf_counter() - t0) / calls * 1e6)
        torch.cuda.synchronize()
    return sorted(per_call)[len(per_call) // 2]


def pytorch_settings(case, x, w, b):
    f = torch.nn.functional.conv3d
    args = (case.stride, case.padding, case.dilation)

    def as_called():
        return f(x, w, b, *args)

    w_cl = w.to(memory_format=torch.channels_last_3d)

    def channels_last():
        # The layout change counts, as it would for a caller holding NCDHW tensors.
        return f(x.to(memory_format=torch.channels_last_3d), w_cl, b, *args).contiguous()

    # name: (callable, cudnn.benchmark, cudnn.allow_tf32)
    return {
        "as_called": (as_called, False, True),
        "fp32": (as_called, False, False),
        "cl_tf32": (channels_last, True, True),
    }


@contextlib.contextmanager
def cudnn_flags(benchmark: bool, tf32: bool):
    """cuDNN's ``benchmark`` and ``allow_tf32`` as a setting of ``pytorch_settings`` wants
    them, restored afterwards, so the kernel's timings run under the defaults."""
    saved = torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32 = benchmark, tf32
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32 = saved


def fp32_rounds(kernel, setting, rounds: int, rep_ms: int) -> tuple[list[float], list[float]]:
    """The kernel's and PyTorch's device times (ms) in ``rounds`` interleaved rounds, PyTorch
    in ``setting`` (one of ``pytorch_settings``), for a ratio near 1 that one pair of
    timings cannot settle."""
    fn, benchmark, tf32 = setting
    mine, theirs = [], []
    for _ in range(rounds):
        with cudnn_flags(benchmark, tf32):
            theirs.append(bench(fn, rep_ms))
        mine.append(bench(kernel, rep_ms))
    return mine, theirs


def ratio_summary(mine: list[float], theirs: list[float]) -> dict:
    """Each round's PyTorch time over the kernel's: the median and the range."""
    ratios = sorted(t / m for m, t in zip(mine, theirs, strict=True))
    return {"x_fp32_median": statistics.median(ratios), "x_fp32_range": [ratios[0], ratios[-1]]}


def run_case(
    case, rep_ms: int, precisions: list[str], ceilings: Ceilings, rounds: int = 1
) -> list[dict]:
    dev = torch.device("cuda")
    inputs = check.random_inputs(case, dev, seed=1)
    x, w, b = inputs.x, inputs.weight, inputs.bias
    args = (x, w, b, case.stride, case.padding, case.dilation)
    torch_row: dict = {}
    settings = pytorch_settings(case, x, w, b)
    for name, (fn, benchmark, tf32) in settings.items():
        with cudnn_flags(benchmark, tf32):
            torch_row[name] = bench(fn, rep_ms)
            if name == "as_called":
                torch_row["torch_call_us"] = call_us(fn)
                torch_row["torch_host_us"] = host_us(fn)

    rows = []
    for precision in precisions:
        row: dict = {"case": case.name, "precision": precision, "flop": case.flop, **torch_row}
        out = check.poisoned_output(case, dev)
        conv3d(*args, out=out, precision=precision)
        torch.cuda.synchronize()
        report = check.CheckReport(case.name, check.rule_for("fp32"))
        check.compare_with_truth(out, inputs, case, report)
        row.update(max_abs=report.max_abs.value, max_rel=report.max_rel.value, ok=report.ok)
        del out

        def kernel(precision: str = precision):
            return conv3d(*args, precision=precision)

        row["ms"] = bench(kernel, rep_ms)
        if rounds > 1:
            mine, theirs = fp32_rounds(kernel, settings["fp32"], rounds, rep_ms)
            row.update(ratio_summary(mine, theirs), ms_rounds=mine, fp32_rounds=theirs)
        row["call_us"] = call_us(kernel)
        row["host_us"] = host_us(kernel)
        row["floor_ms"] = floor_ms(case.flop, case.min_bytes, precision, ceilings)
        row["tflops"] = case.flop / row["ms"] / 1e9
        # The case's own config (its latest launch), not every key tuned so far.
        row["autotune"] = last_config()
        rows.append(row)
    return rows


def geomean(values: list[float]) -> float:
    prod = 1.0
    for v in values:
        prod *= v
    return prod ** (1 / len(values)) if values else float("nan")


def print_rows(rows: list[dict], precisions: list[str], rounds: int, ceilings: Ceilings) -> None:
    """The table of ``run_case``'s rows, then each precision's geometric means."""
    print(
        f"\n{torch.cuda.get_device_name()}, torch {torch.__version__}, "
        f"triton {triton.__version__}; "
        f"floors at {ceilings.bandwidth / 1e12:.2f} TB/s (copy, measured) and "
        f"{ceilings.tf32 / 1e12:.0f} TFLOP/s TF32"
    )
    head = (
        f"{'case':20s} {'precision':12s} {'ms':>8s} {'TFLOP/s':>7s} "
        f"{'floor ms':>8s} {'x floor':>7s} "
        f"{'x called':>8s} {'x fp32':>7s} {'x cl+tf32':>9s} {'call us':>8s} "
        f"{'torch us':>8s} {'host us':>7s} {'torch':>6s} {'max abs':>9s} ok"
    )
    print(head)
    for r in rows:
        print(
            f"{r['case']:20s} {r['precision']:12s} {r['ms']:8.4f} {r['tflops']:7.1f} "
            f"{r['floor_ms']:8.4f} {r['ms'] / r['floor_ms']:7.2f} {r['as_called'] / r['ms']:8.2f} "
            f"{r['fp32'] / r['ms']:7.2f} {r['cl_tf32'] / r['ms']:9.2f} {r['call_us']:8.1f} "
            f"{r['torch_call_us']:8.1f} {r['host_us']:7.1f} {r['torch_host_us']:6.1f} "
            f"{r['max_abs']:9.2e} {r['ok']}"
        )
    ranged = [r for r in rows if "x_fp32_median" in r]
    if ranged:
        print(f"\nx fp32 over {rounds} interleaved rounds (median, range):")
        for r in ranged:
            low, high = r["x_fp32_range"]
            print(
                f"{r['case']:20s} {r['precision']:12s} {r['x_fp32_median']:6.3f} "
                f"[{low:.3f}, {high:.3f}]"
            )
    for p in precisions:
        mine = [r for r in rows if r["precision"] == p]
        kb = [r for r in mine if r["case"].startswith("kb")]
        fp32_all = geomean([r["fp32"] / r["ms"] for r in mine])
        line = f"{p}: geometric mean vs PyTorch in true fp32 {fp32_all:.2f}x over {len(mine)} cases"
        if kb:
            fp32_kb = geomean([r["fp32"] / r["ms"] for r in kb])
            called_kb = geomean([r["as_called"] / r["ms"] for r in kb])
            line += f" (KernelBench: {fp32_kb:.2f}x; vs as called {called_kb:.2f}x)"
        print(line)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    ap.add_argument("--rep-ms", type=int, default=200, help="do_bench repetition time per call")
    ap.add_argument(
        "--precision",
        default="tf32x3-ws",
        help=f"comma-separated precision modes of the kernel ({', '.join(PRECISIONS)})",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="also time the kernel and PyTorch in true fp32 in this many interleaved rounds "
        "and print each case's median ratio and its range (for ratios near 1)",
    )
    ap.add_argument("--json", default="", help="write the rows as JSON here")
    ap.add_argument(
        "--tf32-tflops",
        type=float,
        default=None,
        help="the GPU's dense TF32 tensor rate for the floors (known: H100, H200)",
    )
    args = ap.parse_args(argv)
    precisions = [p for p in args.precision.split(",") if p]
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        print(f"kernel_vs_pytorch: unknown precision {unknown[0]!r}", file=sys.stderr)
        return 2
    if args.rounds < 1:
        print(f"kernel_vs_pytorch: --rounds must be at least 1, got {args.rounds}", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("kernel_vs_pytorch: needs a CUDA GPU", file=sys.stderr)
        return 2
    names = [n for n in args.cases.split(",") if n]
    ceilings = measured_ceilings(args.tf32_tflops)
    rows = []
    for case in select(builtin_cases(), names):
        for row in run_case(case, args.rep_ms, precisions, ceilings, args.rounds):
            rows.append(row)
            print(f"# {case.name} {row['precision']}: {row['ms']:.4f} ms", flush=True)
    print_rows(rows, precisions, args.rounds, ceilings)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
