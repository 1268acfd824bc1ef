"""The GPU job's virtual environment: the runner's CUDA torch and Triton, and nothing else of
the runner's Python on top of the job's own packages.

Run with the runner's Python (the one that holds CUDA torch and Triton), before any of the
pull request's code, standard library only:

    python3 -I job_venv.py VENV

It checks that the runner's Python holds torch and Triton and that the job cannot write
into it (a package or `.pth` file planted there would run in every later job; under act the
runner is your own machine, so there it is a warning), then makes a plain venv at VENV whose
`runner.pth` puts the runner's package folders after the venv's own, and writes
VENV/constraints.txt pinning torch and Triton at the runner's versions. `pip install -c
VENV/constraints.txt -e .` then installs what the plugin needs (pytest, pytest-benchmark,
nvidia-ml-py, filelock...) into the venv, and can neither replace torch nor Triton nor
touch the runner's Python. `--system-site-packages` would do neither: it sees the base
interpreter only, so a runner whose torch lives in a venv looks empty.
"""

from __future__ import annotations

import os
import site
import sys
import sysconfig
import venv
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path

KEPT = ("torch", "triton")


def runner_folders() -> list[str]:
    """Where the running interpreter keeps its packages (a venv's own, if it is one)."""
    found = [*site.getsitepackages(), sysconfig.get_paths()["purelib"]]
    return [p for p in dict.fromkeys(found) if os.path.isdir(p)]


def kept_versions(version: Callable[[str], str] = metadata.version) -> dict[str, str]:
    """The runner's torch and Triton versions; a missing one raises LookupError."""
    out = {}
    for name in KEPT:
        try:
            out[name] = version(name)
        except metadata.PackageNotFoundError:
            raise LookupError(name) from None
    return out


def writable(folders: Iterable[str], can_write: Callable[[str], bool]) -> list[str]:
    return [f for f in folders if can_write(f)]


def constraints(versions: dict[str, str]) -> str:
    return "".join(f"{name}=={v}\n" for name, v in sorted(versions.items()))


def make(target: Path, folders: list[str], versions: dict[str, str]) -> None:
    venv.EnvBuilder(with_pip=True, clear=True).create(target)
    # The venv scheme, not the runner's: Debian's python3 would name local/.../dist-packages.
    purelib = sysconfig.get_path(
        "purelib", "venv", vars={"base": str(target), "platbase": str(target)}
    )
    # Plain folder lines: the runner's own .pth files (an editable install, say) do not run.
    Path(purelib, "runner.pth").write_text("".join(f"{f}\n" for f in folders))
    (target / "constraints.txt").write_text(constraints(versions))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: job_venv.py VENV", file=sys.stderr)
        return 2
    folders = runner_folders()
    try:
        versions = kept_versions()
    except LookupError as exc:
        print(
            f"::error::the runner's Python ({sys.executable}) has no {exc.args[0]}: install "
            "CUDA torch and Triton into it (README, 'Setting up the runner')"
        )
        return 1
    exposed = writable(folders, lambda f: os.access(f, os.W_OK))
    if exposed:
        level = "warning" if os.environ.get("ACT") else "error"
        print(
            f"::{level}::the job can write into the runner's Python ({', '.join(exposed)}): "
            "code planted there would run in later jobs; install torch and Triton as another "
            "user (README, 'Setting up the runner')"
        )
        if level == "error":
            return 1
    make(Path(argv[0]), folders, versions)
    shown = ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
    print(f"job venv {argv[0]}: the runner's {shown} from {', '.join(folders)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
