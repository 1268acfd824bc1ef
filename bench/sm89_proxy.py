"""The RTX 4090's `ieee` path timed by proxy on an H200, set against the static model.

Reads what `bench.kernel_modes --modes ieee --json` timed on the H200 (every config of the
list, each case's `timed` rows) and, optionally, what `bench.sm89_model --gpu h200 --json`
modelled for the same GPU and code. Prints, per case:

- the fastest config measured, and the fastest left when ``--drop`` leaves configs out
  (notes/sm89.md's proposed list drops five), with what that costs;
- the model's pick and how far its measured time is from the fastest; the rank
  correlation between modelled and measured times over the configs (1: the model orders
  the configs as the GPU does).

Measured and modelled are kept apart in the output: the H200 times are measured, and
what they say of a 4090 is an inference (notes/sm89.md: same registers per SM, the FP32
rate 0.81x the 4090's, other shared memory and DRAM).

    python3 -m bench.sm89_proxy notes/data/round3-session6/ieee-configs*.json \\
        --model notes/data/sm89/model-h200.json
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

import numpy as np

from bench.sm89_model import H200, RTX_4090
from pytest_conv3d_perf.cases import builtin_cases
from pytest_conv3d_perf.report import text_table
from pytest_conv3d_perf.tune import LaunchConfig

# notes/sm89.md, "Proposed sm_89 config list": the five that spill in the K loop on sm_89.
PROPOSED_DROP = (
    "128x64x16 w4 s3",
    "128x64x16 w4 s4",
    "128x64x64 w4 s2",
    "64x32x128 w4 s2",
    "64x16x128 w4 s2",
)

_KEYS = ("BLOCK_M", "BLOCK_N", "BLOCK_K", "num_warps", "num_stages")
_FIELD = re.compile(rf"({'|'.join(_KEYS)}): (\d+)")


def label(config: str | dict) -> str:
    """'128x64x16 w4 s3' for a config as kernel_modes prints it or as a dict."""
    fields = config if isinstance(config, dict) else dict(_FIELD.findall(config))
    try:
        return LaunchConfig.from_dict({k: int(v) for k, v in fields.items() if k in _KEYS}).label()
    except KeyError as missing:
        raise ValueError(f"not a config: {config!r} (no {missing})") from None


def measured_times(rows: list[dict]) -> dict[str, dict[str, float]]:
    """{case: {config label: ms}} from kernel_modes rows (mode ieee only)."""
    out: dict[str, dict[str, float]] = {}
    for row in rows:
        if row.get("mode") != "ieee" or not row.get("ok", True):
            continue
        times = out.setdefault(row["case"], {})
        for ms, config in row.get("timed") or [[row["ms"], row["config"]]]:
            times[label(config)] = float(ms)
    return out


def model_times(model: dict) -> dict[str, dict[str, float]]:
    """{case: {config label: modelled s}} from sm89_model's JSON."""
    out: dict[str, dict[str, float]] = {}
    for row in model.get("rows", []):
        s = row.get("modelled_s")
        if isinstance(s, (int, float)) and math.isfinite(s):
            out.setdefault(row["case"], {})[label(row["config"])] = float(s)
    return out


def rank_correlation(a: dict[str, float], b: dict[str, float]) -> float | None:
    """Spearman's rho over the configs both hold (ties take their mean rank)."""
    keys = sorted(set(a) & set(b))
    if len(keys) < 3:
        return None

    def ranks(values: list[float]) -> np.ndarray:
        order = np.argsort(values, kind="stable")
        r = np.empty(len(values))
        r[order] = np.arange(len(values))
        for v in set(values):  # ties: their mean rank
            tied = [i for i, x in enumerate(values) if x == v]
            r[tied] = r[tied].mean()
        return r

    ra, rb = ranks([a[k] for k in keys]), ranks([b[k] for k in keys])
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def compare(
    measured: dict[str, dict[str, float]],
    modelled: dict[str, dict[str, float]],
    drop: tuple[str, ...],
) -> list[dict]:
    rows = []
    for case, times in sorted(measured.items()):
        best = min(times, key=times.get)
        kept = {k: v for k, v in times.items() if k not in drop}
        kept_best = min(kept, key=kept.get) if kept else None
        model = modelled.get(case, {})
        pick = min(model, key=model.get) if model else None
        rows.append(
            {
                "case": case,
                "best": best,
                "best_ms": times[best],
                "kept_best": kept_best,
                "kept_loss": kept[kept_best] / times[best] - 1 if kept_best else None,
                "model_pick": pick,
                "model_pick_loss": times[pick] / times[best] - 1 if pick in times else None,
                "rho": rank_correlation(model, times) if model else None,
                "configs": len(times),
            }
        )
    return rows


def fp32_share(case, ms: float, gpu=H200) -> float:
    """The case's FLOP over ``ms`` as a share of the GPU's FP32 (FMA) rate."""
    return case.flop / (ms * 1e-3) / gpu.fp32_flop_per_s


def rtx4090_estimate_ms(case, h200_ms: float) -> float:
    """INFERRED, not measured: the H200's time at the same share of the 4090's FP32 rate,
    or the case's bytes at the 4090's DRAM rate where that is longer."""
    fma = h200_ms * H200.fp32_flop_per_s / RTX_4090.fp32_flop_per_s
    return max(fma, case.min_bytes / RTX_4090.dram_bytes_per_s * 1e3)


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:+.1f}%"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("measured", nargs="+", type=Path, help="kernel_modes --json files (ieee)")
    ap.add_argument("--model", type=Path, help="sm89_model --gpu h200 --json file")
    ap.add_argument(
        "--drop",
        default=",".join(PROPOSED_DROP),
        help="configs left out of the list, comma-separated labels (default: the proposal's)",
    )
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args(argv)
    try:
        rows_in = [r for p in args.measured for r in json.loads(p.read_text())]
        model_in = json.loads(args.model.read_text()) if args.model else {}
        measured, modelled = measured_times(rows_in), model_times(model_in)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"sm89_proxy: cannot read the inputs: {exc}", file=sys.stderr)
        return 2
    if not measured:
        print("sm89_proxy: no ieee rows in the measured files", file=sys.stderr)
        return 2
    drop = tuple(s.strip() for s in args.drop.split(",") if s.strip())
    rows = compare(measured, modelled, drop)
    cases = {c.name: c for c in builtin_cases()}
    for r in rows:
        case = cases.get(r["case"])
        r["fp32_share"] = fp32_share(case, r["best_ms"]) if case else None
        r["rtx4090_ms"] = rtx4090_estimate_ms(case, r["best_ms"]) if case else None
    print(
        "MEASURED on the H200 (ieee, every config; FP32 share of its "
        f"{H200.fp32_flop_per_s / 1e12:g} TFLOP/s); INFERRED: the 4090's ms at the same "
        f"share of {RTX_4090.fp32_flop_per_s / 1e12:g} TFLOP/s or its bytes at "
        f"{RTX_4090.dram_bytes_per_s / 1e9:g} GB/s; MODELLED: the model's pick and rho."
    )
    print(
        text_table(
            [
                "case",
                "fastest",
                "ms",
                "FP32 share",
                "4090 ms",
                "fastest kept",
                "cost",
                "model's pick",
                "its cost",
                "rho",
            ],
            [
                [
                    r["case"],
                    r["best"],
                    f"{r['best_ms']:.4f}",
                    "" if r["fp32_share"] is None else f"{100 * r['fp32_share']:.0f}%",
                    "" if r["rtx4090_ms"] is None else f"{r['rtx4090_ms']:.4f}",
                    r["kept_best"] or "",
                    _pct(r["kept_loss"]),
                    r["model_pick"] or "",
                    _pct(r["model_pick_loss"]),
                    "" if r["rho"] is None else f"{r['rho']:+.2f}",
                ]
                for r in rows
            ],
        )
    )
    losses = [r["kept_loss"] for r in rows if r["kept_loss"] is not None]
    if losses:
        gm = math.exp(sum(math.log1p(x) for x in losses) / len(losses)) - 1
        won = sum(r["best"] in drop for r in rows)
        print(
            f"dropping {len(drop)} config(s): one of them the fastest on {won} of "
            f"{len(rows)} cases; geometric mean cost {_pct(gm)}, worst {_pct(max(losses))}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
