"""Copies of one kernel in one process: how far apart they time, and whether each keeps its
offset. Needs a CUDA GPU.

    python3 -m bench.copies [--cases tiny_odd,odd_sizes_oc24,kb54] [--copies 4]
        [--repeats 3] [--recorded baselines/nvidia-h200.json] [--json out.json]

The gate's A/B of identical code read tiny_odd +1.33% to +1.79% (and -1.71% in another
process) with intervals that exclude zero, the sign kept through a process
(notes/gate-quality.md, round 3, third session). This asks why. Today's kernel file is
loaded ``--copies`` times as modules of its own (the same source: one compiled binary,
loaded once a module), every copy at the same config (the one ``--recorded`` holds, else
copy 0's tuned pick), and all copies are timed interleaved by the gate's timer (L2 flush,
stream hold, a random order each round), ``--repeats`` times. Each copy's median is
reported against copy 0's with its interval.

- Offsets that stay with their copy through the repeats, spread around zero: a property of
  each loaded copy, which timing several copies of each side and rotating them averages out.
- Offsets that follow the order of loading (the first copy slower, say): a fixed bias of the
  side loaded first, which rotation does not remove.
- Offsets within their intervals: the copies are alike here, and the A/B's offset came from
  something else the two sides do not share.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KERNEL = ROOT / "kernels" / "implicit_gemm.py"


def rounds_for(ms: float, fns: int, seconds: float) -> int:
    """Rounds of ``fns`` calls that fill about ``seconds``: each timed call costs its kernel
    time and about 0.15 ms of flush and hold. 50 to 4000."""
    per_round_s = fns * (ms + 0.15) / 1e3
    return max(50, min(4000, int(seconds / per_round_s)))


def offsets(samples: list[list[float]]) -> list[tuple[float, float, float]]:
    """Each copy's median against copy 0's, in percent, with its 95% interval."""
    from pytest_conv3d_perf.stats import relative_change, summarize

    first = summarize(samples[0])
    out = []
    for s in samples:
        mine = summarize(s)
        c = relative_change(mine.median, mine.rel_halfwidth, first.median, first.rel_halfwidth)
        out.append((c.pct, c.low_pct, c.high_pct))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="tiny_odd,odd_sizes_oc24,n1_oc17_bias,kb54")
    ap.add_argument("--copies", type=int, default=4, help="loaded copies of the kernel (2-16)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0, help="timing per repeat and case")
    ap.add_argument("--recorded", default="", help="baseline file: run its configs")
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)

    from pytest_conv3d_perf.cases import CaseError, builtin_cases, select

    try:
        if not 2 <= args.copies <= 16:
            raise ValueError(f"--copies: 2 to 16, not {args.copies}")
        if args.repeats < 1 or args.seconds <= 0:
            raise ValueError("--repeats and --seconds must be positive")
        if args.recorded and not Path(args.recorded).is_file():
            raise ValueError(f"no such baseline file: {args.recorded!r}")
        cases = select(builtin_cases(), [c for c in args.cases.split(",") if c and c != "all"])
    except (ValueError, CaseError) as exc:
        print(f"copies: {exc}", file=sys.stderr)
        return 2

    import torch

    if not torch.cuda.is_available():
        print("copies: needs a CUDA GPU", file=sys.stderr)
        return 2

    from bench.kernel_ab import pin_config
    from bench.kernel_static import recorded_configs
    from bench.variants import load
    from pytest_conv3d_perf import check
    from pytest_conv3d_perf.timer import CudaTimer

    copies = [load(KERNEL, f"kernel_copy{i}") for i in range(args.copies)]
    configs = recorded_configs(args.recorded)
    timer = CudaTimer("flush")
    rows = []
    for case in cases:
        inputs = check.random_inputs(case, torch.device("cuda"), 1)
        a = (inputs.x, inputs.weight, inputs.bias, case.stride, case.padding, case.dilation)
        cfg = configs.get(case.name)
        if cfg is None:  # copy 0 tunes; every copy then runs its pick
            copies[0].conv3d(*a)
            cfg = copies[0]._LAST[0]
        fns = []
        for m in copies:
            kwargs = pin_config(m, cfg, getattr(m, "_tune", None))
            fns.append(lambda m=m, kw=kwargs, a=a: m.conv3d(*a, **kw))
        for fn in fns:
            for _ in range(20):
                fn()
        timer.calibrate(fns)
        ms = min(sum(s) / len(s) for s in timer.sample(fns, 5))
        rounds = rounds_for(ms, len(fns), args.seconds)
        for r in range(args.repeats):
            found = offsets(timer.sample(fns, rounds))
            row = {"case": case.name, "repeat": r, "ms": ms, "rounds": rounds, "offsets": found}
            rows.append(row)
            text = "  ".join(f"{p:+.2f} [{lo:+.2f},{hi:+.2f}]" for p, lo, hi in found[1:])
            print(f"# {case.name} repeat {r} ({rounds} rounds): copies 1..: {text}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    print(f"\n{torch.cuda.get_device_name()}: each copy against copy 0, percent [95% interval]")
    for row in rows:
        cells = "  ".join(f"{p:+6.2f}" for p, _, _ in row["offsets"][1:])
        print(f"{row['case']:20s} r{row['repeat']}  {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
