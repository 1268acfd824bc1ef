"""Wall time of a one-test pytest run in a project that does not use the plugin, with the
plugin installed and with it switched off (-p no:conv3d_perf), in fresh processes,
alternating. No GPU needed.

    python3 -m bench.plugin_overhead [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one_run(folder: Path, extra: list[str]) -> float:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"plugin_overhead: the run failed:\n{done.stdout[-2000:]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "test_one.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")
        times: dict[str, list[float]] = {"installed": [], "off": []}
        one_run(folder, [])  # warm the file cache
        for i in range(args.runs):
            order = ["installed", "off"] if i % 2 == 0 else ["off", "installed"]
            for kind in order:
                extra = ["-p", "no:conv3d_perf"] if kind == "off" else []
                times[kind].append(one_run(folder, extra))
    for kind, values in times.items():
        print(
            f"{kind:9s} median {statistics.median(values):.3f} s  "
            f"min {min(values):.3f}  max {max(values):.3f}  ({len(values)} runs)"
        )
    diff = statistics.median(times["installed"]) - statistics.median(times["off"])
    print(f"plugin installed but unused costs {diff * 1e3:+.0f} ms per run (median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
