"""The kernel on real layers of published 3D networks that its configs were not chosen on,
against PyTorch as called (TF32), in true fp32 and channels-last TF32, and against each
layer's floor (bench/kernel_vs_pytorch.py's columns and ceilings). Needs a CUDA GPU.

    python3 -m bench.real_layers [--layers c3d_conv1a,i3d_conv1a] [--json out.json]

Batch sizes are what an inference or a small training step of each network uses; where a
network's input is large (nnU-Net, V-Net) the layer is at a smaller crop of the volume.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from bench import kernel_vs_pytorch as kvp
from pytest_conv3d_perf.cases import case_from_mapping, select

# name, network and where in it, then the case's fields.
LAYERS = [
    ("c3d_conv1a", "C3D conv1a, 16x112x112 clips", dict(n=4, ic=3, oc=64, input=[16, 112, 112])),
    ("c3d_conv2a", "C3D conv2a", dict(n=4, ic=64, oc=128, input=[16, 56, 56])),
    ("c3d_conv4a", "C3D conv4a", dict(n=8, ic=256, oc=512, input=[4, 14, 14])),
    ("c3d_conv5a", "C3D conv5a", dict(n=8, ic=512, oc=512, input=[2, 7, 7])),
    (
        "i3d_conv1a",
        "I3D Conv3d_1a_7x7, stride 2",
        dict(n=1, ic=3, oc=64, kernel=[7, 7, 7], input=[32, 224, 224], stride=2, padding=3),
    ),
    (
        "r2plus1d_spatial",
        "R(2+1)D layer1 spatial 1x3x3",
        dict(n=2, ic=64, oc=144, kernel=[1, 3, 3], input=[8, 56, 56], padding=[0, 1, 1]),
    ),
    (
        "r2plus1d_temporal",
        "R(2+1)D layer1 temporal 3x1x1",
        dict(n=2, ic=144, oc=64, kernel=[3, 1, 1], input=[8, 56, 56], padding=[1, 0, 0]),
    ),
    ("r3d18_layer2", "R3D-18 layer2 3x3x3", dict(n=4, ic=128, oc=128, input=[8, 28, 28])),
    (
        "unet3d_decoder",
        "3D U-Net decoder 128->64 at 32^3",
        dict(n=1, ic=128, oc=64, input=[32, 32, 32]),
    ),
    (
        "nnunet_stage0",
        "nnU-Net full-resolution stage 0, 32->32 at a 96^3 crop",
        dict(n=2, ic=32, oc=32, input=[96, 96, 96]),
    ),
    (
        "vnet_stage1",
        "V-Net stage 1, 5x5x5 16->16 at 64^3",
        dict(n=1, ic=16, oc=16, kernel=[5, 5, 5], input=[64, 64, 64], padding=2),
    ),
    (
        "swin3d_patch_embed",
        "Video Swin patch embedding 2x4x4, stride 2x4x4",
        dict(n=1, ic=3, oc=96, kernel=[2, 4, 4], input=[32, 224, 224], stride=[2, 4, 4], padding=0),
    ),
]


def layers():
    out = []
    for name, description, fields in LAYERS:
        data = {"kernel": [3, 3, 3], "padding": 1, **fields}
        out.append(case_from_mapping({"name": name, "description": description, **data}))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", default="", help="comma-separated layer names (default: all)")
    ap.add_argument("--rep-ms", type=int, default=100, help="do_bench repetition time per call")
    ap.add_argument("--precision", default="tf32x3-ws", help="the kernel's precision mode")
    ap.add_argument("--tf32-tflops", type=float, default=None, help="as kernel_vs_pytorch's")
    ap.add_argument("--json", default="", help="write the rows as JSON here")
    args = ap.parse_args(argv)
    try:
        chosen = select(layers(), [n for n in args.layers.split(",") if n])
    except ValueError as err:
        print(f"real_layers: {err}", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("real_layers: needs a CUDA GPU", file=sys.stderr)
        return 2
    ceilings = kvp.measured_ceilings(args.tf32_tflops)
    rows = []
    for i, case in enumerate(chosen, 1):
        for row in kvp.run_case(case, args.rep_ms, [args.precision], ceilings):
            rows.append(row)
            print(f"# {i}/{len(chosen)} {progress_line(row)}", flush=True)
        # Each layer's rows as they come: a run cut short (a device call's time limit,
        # thirteenth session) keeps what it measured.
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(rows, fh, indent=1)
    kvp.print_rows(rows, [args.precision], 1, ceilings)
    return 0


def progress_line(row: dict) -> str:
    """One measured layer's line: its time against its floor and against PyTorch as called
    (TF32) and in true fp32, and whether it kept the fp32 rule."""
    return (
        f"{row['case']}: {row['ms']:.4f} ms, floor {row['floor_ms']:.4f} "
        f"(x{row['ms'] / row['floor_ms']:.2f}), "
        f"PyTorch as called x{row['as_called'] / row['ms']:.2f}, "
        f"in fp32 x{row['fp32'] / row['ms']:.2f}, fp32 rule {'kept' if row['ok'] else 'MISSED'}"
    )


if __name__ == "__main__":
    sys.exit(main())
