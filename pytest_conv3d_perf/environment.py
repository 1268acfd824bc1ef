"""Facts stored with a baseline: the GPU, the software, the commit and the date."""

from __future__ import annotations

import datetime
import hashlib
import inspect
import os
import platform
import subprocess
from pathlib import Path
from typing import Any


def git_commit(root: Path) -> str:
    if os.environ.get("GITHUB_SHA"):
        return os.environ["GITHUB_SHA"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def now_utc() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def software() -> dict[str, Any]:
    import torch
    import triton

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "cuda": torch.version.cuda or "",
    }


# NVML clock-event reasons that mean the hardware slowed itself; a software power cap
# (0x4) is normal under load and is handled by comparing cycles as well as time.
_THROTTLE_BITS = {
    0x8: "hardware slowdown",
    0x20: "software thermal slowdown",
    0x40: "hardware thermal slowdown",
    0x80: "hardware power brake",
}


class Nvml:
    """The current GPU through NVML (nvidia-ml-py): driver, SM clock, throttle reasons."""

    def __init__(self) -> None:
        import pynvml
        import torch

        pynvml.nvmlInit()
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        bus = getattr(props, "pci_bus_id", None)
        if bus is not None:
            pci = f"{props.pci_domain_id:08x}:{bus:02x}:{props.pci_device_id:02x}.0"
            self.handle = pynvml.nvmlDeviceGetHandleByPciBusId(pci.encode())
        else:
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        self._nvml = pynvml
        self._reasons = getattr(
            pynvml,
            "nvmlDeviceGetCurrentClocksEventReasons",
            getattr(pynvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None),
        )

    def driver(self) -> str:
        version = self._nvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else str(version)

    def sm_mhz(self) -> float:
        return float(self._nvml.nvmlDeviceGetClockInfo(self.handle, self._nvml.NVML_CLOCK_SM))

    def throttle(self) -> tuple[str, ...]:
        bits = int(self._reasons(self.handle)) if self._reasons else 0
        return tuple(name for bit, name in _THROTTLE_BITS.items() if bits & bit)


def open_nvml() -> Nvml | None:
    try:
        return Nvml()
    except Exception:  # NVML is optional: clocks and the driver are then unknown
        return None


def cuda_device_info() -> dict[str, Any]:
    import torch

    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    nvml = open_nvml()
    info: dict[str, Any] = {
        "gpu": props.name,
        "sm_count": props.multi_processor_count,
        "memory_bytes": props.total_memory,
        "l2_bytes": int(getattr(props, "L2_cache_size", 0)),
        "capability": f"{props.major}.{props.minor}",
        "driver": nvml.driver() if nvml else "",
    }
    return {**software(), **info}


def source_hash(fn: object) -> str:
    """Hash of the source file that defines ``fn`` (the whole module: a kernel's helpers
    and configs matter as much as its body)."""
    try:
        path = inspect.getsourcefile(fn)  # type: ignore[arg-type]
        data = Path(path).read_bytes() if path else b""
    except (TypeError, OSError):
        data = b""
    if not data:
        try:
            data = inspect.getsource(fn).encode()  # type: ignore[arg-type]
        except (TypeError, OSError):
            return ""
    return "sha256:" + hashlib.sha256(data).hexdigest()[:16]


def autotune_config(fn: object) -> dict[str, Any] | None:
    """The config the kernel's autotuner used last, where its module offers
    ``last_config()``."""
    # The function's own globals first: another revision's kernel, loaded beside today's
    # under the same module name, is not the module sys.modules holds.
    module_globals = getattr(fn, "__globals__", None) or vars(inspect.getmodule(fn) or fn)
    getter = getattr(fn, "last_config", None) or module_globals.get("last_config")
    return getter() if callable(getter) else None


def config_note(
    today: dict[str, Any] | None, recorded: dict[str, Any] | None, label: str = "the recorded one"
) -> str | None:
    """A reason line when the two kernels of an A/B ran different autotune configs.

    An autotuner picks among near-equal configs by a timing of its own, so two modules of
    one kernel can pick differently in one process: on the H100 Triton's autotuner took
    configs 1.9% apart for KernelBench #54, and the gate flagged a change whose compiled
    code for that case, at either pick, was the same (notes/gate-quality.md, fifth
    session)."""
    if not today or not recorded or today == recorded:
        return None

    def text(cfg: dict[str, Any]) -> str:
        # Sorted: a config read back from a baseline file has its keys in JSON's order.
        return ", ".join(f"{k}={v}" for k, v in sorted(cfg.items()))

    return (
        f"the autotuner ran {text(today)} for today's kernel and {text(recorded)} for "
        f"{label}: part of the change may be its pick, not the code"
    )
