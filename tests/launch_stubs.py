"""Stand-ins for the GPU launch path's parts, for tests that run it on the CPU: the jitted
kernel, the compiled kernel a launch returns, the tuner and the weight's split."""

from __future__ import annotations

import torch


def split_on_the_host(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    big = (t.contiguous().view(torch.int32) & ~0x1FFF).view(torch.float32)
    return big, t - big


class Recorder:
    """Stands for the jitted kernel: records each launch's grid, arguments and keywords,
    launches nothing."""

    def __init__(self, seen: list) -> None:
        self.seen = seen

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.seen.append(kwargs)
            self.launches.append((grid, args, kwargs))
            return Compiled(self.direct)

        return launch

    @property
    def direct(self) -> list:
        """The launches made through the compiled kernel's own launcher."""
        return self.__dict__.setdefault("_direct", [])

    @property
    def launches(self) -> list:
        return self.__dict__.setdefault("_launches", [])


class Compiled:
    """Stands for the compiled kernel a launch returns: ``[grid]`` gives its launcher,
    which takes every argument by position."""

    def __init__(self, seen: list) -> None:
        self.seen = seen

    def __getitem__(self, grid):
        def launch(*args):
            self.seen.append((grid, args))

        return launch


class TunerStub:
    """Stands for the tuner: records each tuning's resolved flags, picks ``config``."""

    def __init__(self, config) -> None:
        self.config = config
        self.seen: list[dict] = []

    def __call__(self, args, resolved, grid_of, key):
        self.seen.append(resolved)
        return self.config
