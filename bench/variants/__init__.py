"""Candidate changes to kernels/implicit_gemm.py, each a diff against today's file with
one change (notes/kernel.md, round 3), timed against today's with ``python3 -m
bench.kernel_ab --variant bench/variants/NAME.diff`` and static-read with ``python3 -m
bench.kernel_static --kernel bench/variants/NAME.diff``. A diff, not a copy, so that a
variant is today's kernel with its one change, and one that no longer applies says so.
Not imported by the package: the patched file is loaded into a module of its own."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path

from pytest_conv3d_perf.sides import git

ROOT = Path(__file__).resolve().parent.parent.parent
KERNEL = "kernels/implicit_gemm.py"


class VariantError(Exception):
    pass


def materialize(path: Path, kernel: Path = ROOT / KERNEL) -> Path:
    """The kernel file a variant names: a ``.py`` file as it is; a ``.diff`` applied to
    today's ``kernel``, written to a temporary folder under the diff's name."""
    path = Path(path)
    if not path.is_file():
        raise VariantError(f"no such variant file: {str(path)!r}")
    if path.suffix != ".diff":
        return path
    folder = Path(tempfile.mkdtemp(prefix="conv3d-variant-"))
    (folder / "kernels").mkdir()
    shutil.copy(kernel, folder / KERNEL)
    applied = git(folder, "apply", str(path.resolve()))
    if applied.returncode != 0:
        raise VariantError(
            f"{path} no longer applies to today's {KERNEL}: {applied.stderr.strip()[:300]}"
        )
    out = folder / f"{path.stem}.py"
    (folder / KERNEL).rename(out)
    return out


def load(path: Path, name: str, *, own_digest: bool = False):
    """The kernel file at ``path`` as a module ``name`` of its own."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise VariantError(f"cannot load {str(path)!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # triton.jit reads the defining module's globals
    spec.loader.exec_module(module)
    if own_digest and hasattr(module, "_package_digest"):
        # A kept pick is keyed by a digest of the kernel's folder (v23); copies loaded from
        # one folder would share it, so each is keyed by its own file and configs instead.
        text = Path(path).read_bytes()

        @functools.cache
        def digest() -> str:
            configs = repr([module._config_dict(c) for c in module.AUTOTUNE_CONFIGS])
            return hashlib.sha256(text + configs.encode()).hexdigest()

        module._package_digest = digest
    return module
