"""Where the kernel runs: a CUDA GPU, or the CPU under Triton's interpreter."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

DEVICE_CHOICES = ("auto", "cuda", "cpu")


class DeviceError(RuntimeError):
    """The requested device cannot be had; the message says why in one sentence."""


@dataclass(frozen=True)
class Runtime:
    device: str  # "cuda" or "cpu"
    interpreter: bool
    gpu_name: str = ""

    def describe(self) -> str:
        if self.interpreter:
            return "CPU, Triton interpreter (TRITON_INTERPRET=1)"
        return f"CUDA GPU {self.gpu_name}"


def _interpreter_requested() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def select_runtime(requested: str = "auto") -> Runtime:
    """Pick the device and, for the CPU, switch Triton to its interpreter.

    Must run before the kernel module is imported: Triton decides at decoration time
    whether a ``@triton.jit`` function is compiled or interpreted.
    """
    if requested not in DEVICE_CHOICES:
        raise DeviceError(
            f"unknown device {requested!r}; choose one of {', '.join(DEVICE_CHOICES)}"
        )
    import torch

    has_gpu = torch.cuda.is_available()
    if requested == "cuda" and not has_gpu:
        raise DeviceError("a CUDA GPU was required but torch.cuda.is_available() is False")
    if requested == "cuda" and _interpreter_requested():
        raise DeviceError("a CUDA GPU was required but TRITON_INTERPRET is set in the environment")
    if has_gpu and requested != "cpu" and not _interpreter_requested():
        return Runtime("cuda", False, torch.cuda.get_device_name())
    already = [m for m in ("kernels.implicit_gemm",) if m in sys.modules]
    if already and not _interpreter_requested():
        raise DeviceError(
            f"{already[0]} was imported before the plugin could set TRITON_INTERPRET=1; "
            "import it inside tests, not at the top of a conftest.py, or set TRITON_INTERPRET=1"
        )
    os.environ["TRITON_INTERPRET"] = "1"
    return Runtime("cpu", True)
