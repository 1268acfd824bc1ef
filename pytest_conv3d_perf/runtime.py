"""Where the kernel runs: a CUDA GPU, or the CPU under Triton's interpreter."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass


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


def interpreter_requested() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def select_runtime(requested: str = "auto", kernel_modules: Iterable[str] = ()) -> Runtime:
    """Pick the device and, for the CPU, switch Triton to its interpreter.

    Runs when a project enables the plugin, before the configured kernel is imported:
    Triton decides at decoration time whether a ``@triton.jit`` function is compiled or
    interpreted, so a kernel imported earlier cannot be switched.
    """
    import torch

    has_gpu = torch.cuda.is_available()
    if requested == "cuda" and not has_gpu:
        raise DeviceError("a CUDA GPU was required but torch.cuda.is_available() is False")
    if requested == "cuda" and interpreter_requested():
        raise DeviceError("a CUDA GPU was required but TRITON_INTERPRET is set in the environment")
    if has_gpu and requested != "cpu" and not interpreter_requested():
        return Runtime("cuda", False, torch.cuda.get_device_name())
    if importlib.util.find_spec("numpy") is None:
        raise DeviceError(
            "no CUDA GPU, and Triton's interpreter (the CPU path) needs numpy: "
            "pip install numpy, or pytest-conv3d-perf[interpreter]"
        )
    already = [m for m in kernel_modules if m in sys.modules]
    if already and not interpreter_requested():
        raise DeviceError(
            f"{already[0]} was imported before the plugin could set TRITON_INTERPRET=1; "
            "import it inside tests or through the conv3d_kernel fixture, not at the top of "
            "a conftest.py, or set TRITON_INTERPRET=1 yourself"
        )
    os.environ["TRITON_INTERPRET"] = "1"
    return Runtime("cpu", True)
