"""Kernels under test: a Triton implicit-GEMM conv3d with KernelBench's ModelNew interface."""

from kernels.implicit_gemm import ModelNew, conv3d

__all__ = ["ModelNew", "conv3d"]
