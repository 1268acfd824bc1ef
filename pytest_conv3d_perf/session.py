"""What one pytest run holds: settings, the device, the case suite (and the perf results)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_conv3d_perf.cases import Conv3dCase, case_from_mapping, load_suite, select
from pytest_conv3d_perf.runtime import Runtime, select_runtime
from pytest_conv3d_perf.settings import Settings


@dataclass
class Conv3dSession:
    settings: Settings
    runtime: Runtime
    scaled: bool
    cases: list[Conv3dCase]
    suite: dict[str, Conv3dCase] = field(default_factory=dict)

    @classmethod
    def start(cls, settings: Settings, rootdir: Path) -> Conv3dSession:
        # A CI GPU runner passes --conv3d-require-gpu so a missing GPU fails, never skips.
        runtime = select_runtime("cuda" if settings.require_gpu else settings.device)
        scaled = settings.size == "small" or (settings.size == "auto" and runtime.interpreter)
        suite = load_suite(rootdir, settings.case_files)
        chosen = select(suite, settings.case_names)
        return cls(
            settings=settings,
            runtime=runtime,
            scaled=scaled,
            cases=[c.scaled() if scaled else c for c in chosen],
            suite={c.name: c for c in suite},
        )

    @property
    def device(self) -> Any:
        import torch

        return torch.device(self.runtime.device)

    def header(self) -> list[str]:
        sizes = "scaled-down cases" if self.scaled else "full-size cases"
        lines = [f"conv3d-perf: {self.runtime.describe()}, {sizes}, {len(self.cases)} cases"]
        if self.settings.perf:
            if self.runtime.device == "cuda":
                lines.append(
                    f"conv3d-perf: timing on; fail above {self.settings.fail_pct:g}%, "
                    f"warn above {self.settings.warn_pct:g}%, L2 {self.settings.l2}"
                )
            else:
                lines.append("conv3d-perf: timing skipped: no CUDA GPU is visible")
        return lines

    def resolve_case(self, case: Conv3dCase | str | Mapping[str, Any]) -> Conv3dCase:
        """A suite case by name (scaled like the run), a user's own table, or a case."""
        if isinstance(case, Conv3dCase):
            return case
        if isinstance(case, str):
            found = select(list(self.suite.values()), [case])[0]
            return found.scaled() if self.scaled else found
        return case_from_mapping(case)
