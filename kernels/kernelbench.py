"""The file to hand KernelBench for each level-1 3D-convolution problem.

KernelBench builds ``ModelNew(*get_init_inputs())`` from the problem's own file, after the
same seed as its ``Model``, and compares outputs. Problems 54, 60 and 66 build their
``nn.Conv3d`` from ``kernel_size`` as given (an integer k is (k, k, k)), which
``implicit_gemm.ModelNew`` does too. Problem 59 turns its integer ``kernel_size`` k into a
(k, k, 1) kernel, so its file adds a ``ModelNew`` that does the same.

    python3 -m kernels.kernelbench 59 > model_new_59.py
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

KERNEL_FILE = Path(__file__).with_name("implicit_gemm.py")

_FLAT_KERNEL = '''

_ModelNew = ModelNew


class ModelNew(_ModelNew):
    """KernelBench level 1, problem 59: an integer kernel_size k is a (k, k, 1) kernel, as
    the problem's Model builds it."""

    def __init__(self, in_channels, out_channels, kernel_size, *args, **kwargs):
        if isinstance(kernel_size, int):
            kernel_size = (kernel_size, kernel_size, 1)
        super().__init__(in_channels, out_channels, kernel_size, *args, **kwargs)
'''


@dataclass(frozen=True)
class Problem:
    number: int
    name: str
    init_inputs: tuple  # get_init_inputs() of the problem's file
    input_shape: tuple[int, ...]  # get_inputs()'s tensor
    flat_int_kernel: bool = False  # Model builds (k, k, 1) from an integer k

    def kernel(self) -> tuple[int, int, int]:
        k = self.init_inputs[2]
        if isinstance(k, int):
            return (k, k, 1) if self.flat_int_kernel else (k, k, k)
        return tuple(k)


PROBLEMS = {
    p.number: p
    for p in (
        Problem(
            54, "conv_standard_3D__square_input__square_kernel", (3, 64, 3), (16, 3, 64, 64, 64)
        ),
        Problem(
            59,
            "conv_standard_3D__asymmetric_input__square_kernel",
            (3, 64, 3),
            (16, 3, 256, 256, 10),
            flat_int_kernel=True,
        ),
        Problem(
            60,
            "conv_standard_3D__square_input__asymmetric_kernel",
            (3, 64, (3, 5, 7)),
            (16, 3, 64, 64, 64),
        ),
        Problem(
            66,
            "conv_standard_3D__asymmetric_input__asymmetric_kernel",
            (3, 64, (3, 5, 7), (1, 1, 1), (0, 0, 0), (1, 1, 1)),
            (8, 3, 16, 128, 128),
        ),
    )
}


def model_source(number: int) -> str:
    """A self-contained ModelNew file for problem ``number``."""
    problem = PROBLEMS[number]
    source = KERNEL_FILE.read_text()
    return source + _FLAT_KERNEL if problem.flat_int_kernel else source


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("problem", type=int, choices=sorted(PROBLEMS))
    ap.add_argument("-o", "--output", help="write here instead of standard output")
    args = ap.parse_args(argv)
    text = model_source(args.problem)
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
