"""The kernel under test, named in configuration as ``module:attribute`` and imported from
the project, never by the plugin's own imports."""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from dataclasses import dataclass
from pathlib import Path

_SPEC = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*")


class TargetError(ValueError):
    """The configured kernel cannot be had; the message names the setting and why."""


@dataclass(frozen=True)
class Target:
    module: str
    attribute: str
    setting: str  # where it was named, for messages

    @classmethod
    def parse(cls, text: str, setting: str) -> Target:
        if not _SPEC.fullmatch(text.strip()):
            raise TargetError(f"{setting}: expected module:attribute, got {text!r}")
        module, _, attribute = text.strip().partition(":")
        return cls(module, attribute, setting)

    def __str__(self) -> str:
        return f"{self.module}:{self.attribute}"

    def load(self, root: Path) -> object:
        """Import the module with ``root`` on sys.path (as pytest's rootdir insertion
        does) and return the attribute."""
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        try:
            module = importlib.import_module(self.module)
        except ImportError as exc:
            raise TargetError(
                f"{self.setting} = {self}: cannot import {self.module}: {exc}"
            ) from None
        try:
            return getattr(module, self.attribute)
        except AttributeError:
            where = getattr(module, "__file__", None) or "?"
            raise TargetError(
                f"{self.setting} = {self}: {self.module} ({where}) has no {self.attribute!r}"
            ) from None


def source_file(obj: object) -> Path | None:
    """The file that defines ``obj``, where there is one."""
    try:
        name = inspect.getsourcefile(obj)  # type: ignore[arg-type]
    except TypeError:
        return None
    return Path(name) if name else None
