"""The pull-request gate on a GPU: every case an A/B against a base revision, as
``pytest --conv3d-perf --conv3d-against REV`` runs it in CI. Needs a CUDA GPU and a git
checkout; prints a table last.

    python3 -m bench.ab_gate null --runs 4 --out DIR          # unchanged code against HEAD
    python3 -m bench.ab_gate power --slowdowns 0.02,0.05 --runs 2 --out DIR
    python3 -m bench.ab_gate placed --out DIR -- -k "kb54 or kb66"

null: the code unchanged, each run a fresh process (the base loaded beside it from git):
counts regressions and what CI would fail (a regression, or `unstable` under
--conv3d-unstable=fail), and the wall time of each run. power: the kernel slowed by the
calibrated delay kernel of bench/inject_slowdown.py (in the process's own kernel only; the
base comes from git). placed: a 5% delay put into a commit, once in the kernel's file, once
in another module of its package, once in the package's __init__ (each a worktree of its
own), and the gate run there against the commit before it. Arguments after `--` go to
pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from pytest_conv3d_perf.cli import split_at_dashes

ROOT = Path(__file__).resolve().parent.parent
SPEED_TEST = "tests/test_suite.py::test_conv3d_speed"
CI = ("--conv3d-perf", "--conv3d-require-gpu", "--conv3d-unstable=fail")

# What each placement adds (file, text appended); each wraps the configured kernel in the
# calibrated 5% delay of bench/inject_slowdown.py, keeping its name.
PLACEMENTS = {
    "kernel-file": {
        "kernels/implicit_gemm.py": "\nfrom bench.inject_slowdown import make_slowed as _ms\n\n"
        "conv3d = _ms(conv3d, 0.05, {})\n",
    },
    "package-module": {
        "kernels/_delay.py": "from bench.inject_slowdown import make_slowed\n\n\n"
        "def slow(fn):\n    return make_slowed(fn, 0.05, {})\n",
        "kernels/implicit_gemm.py": "\nfrom kernels._delay import slow as _slow\n\n"
        "conv3d = _slow(conv3d)\n",
    },
    "package-init": {
        "kernels/__init__.py": "\nfrom bench.inject_slowdown import make_slowed as _ms\n"
        "from kernels import implicit_gemm as _ig\n\n"
        "_ig.conv3d = _ms(_ig.conv3d, 0.05, {})\n",
    },
}


def gate(cwd: Path, against: str, out: Path, tag: str, extra: list[str], env=None) -> dict:
    out = out.resolve()  # pytest runs in ``cwd``, which may be a placed worktree
    report = out / f"{tag}.json"
    args = [sys.executable, "-m", "pytest", SPEED_TEST, "-q", "-p", "no:cacheprovider", *CI]
    args += [f"--conv3d-against={against}", f"--conv3d-json={report}", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(
        args,
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    (out / f"{tag}.log").write_text(proc.stdout + proc.stderr)
    data = json.loads(report.read_text()) if report.exists() else {"results": []}
    print(f"# {tag}: rc={proc.returncode} {wall:.1f} s", flush=True)
    if not data["results"]:
        print(proc.stdout[-2000:] + proc.stderr[-2000:])
    return {"tag": tag, "rc": proc.returncode, "wall_s": wall, "results": data["results"]}


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def placed_tree(name: str, base: str, into: Path) -> Path:
    """A worktree at ``base`` plus one commit that puts the delay at ``name``'s place."""
    tree = into / f"placed-{name}"
    if not tree.exists():
        _git(ROOT, "worktree", "add", "-q", "--detach", str(tree), base)
        for path, text in PLACEMENTS[name].items():
            target = tree / path
            target.write_text((target.read_text() if target.exists() else "") + text)
        _git(tree, "add", "-A")
        _git(
            tree,
            "-c",
            "user.name=bench",
            "-c",
            "user.email=b@example.com",
            "commit",
            "-qm",
            f"bench: a 5% delay in {name}",
        )
    return tree


def table(runs: list[dict]) -> str:
    cases = sorted({r["case"] for run in runs for r in run["results"]})
    head = ["case", *[run["tag"] for run in runs]]
    body = []
    for case in cases:
        row = [case]
        for run in runs:
            found = [r for r in run["results"] if r["case"] == case]
            row.append(
                f"{found[0]['verdict']} {found[0]['change_pct']:+.2f}%"
                if found and found[0]["change_pct"] is not None
                else (found[0]["verdict"] if found else "-")
            )
        body.append(row)
    body.append(["wall s", *[f"{run['wall_s']:.0f}" for run in runs]])
    body.append(["exit", *[str(run["rc"]) for run in runs]])
    widths = [max(len(str(r[i])) for r in [head, *body]) for i in range(len(head))]
    fmt = lambda row: "  ".join(str(c).ljust(w) for c, w in zip(row, widths))  # noqa: E731
    return "\n".join([fmt(head), *(fmt(r) for r in body)])


def summary(runs: list[dict]) -> str:
    verdicts = [r["verdict"] for run in runs for r in run["results"]]
    ci_fail = sum(
        r["verdict"] in ("regression", "unstable") for run in runs for r in run["results"]
    )
    big = [r["verdict"] for run in runs for r in run["results"] if r["median_ms"] >= 0.05]
    return (
        f"case runs {len(verdicts)}: regression {verdicts.count('regression')}, "
        f"warning {verdicts.count('warning')}, unstable {verdicts.count('unstable')}, "
        f"unchanged {verdicts.count('unchanged')}, improvement {verdicts.count('improvement')}; "
        f"CI would fail {ci_fail}; regression on cases >= 50 us "
        f"{big.count('regression')}/{len(big)}; wall s "
        + ", ".join(f"{run['wall_s']:.0f}" for run in runs)
    )


def main(argv: list[str] | None = None) -> int:
    argv, extra = split_at_dashes(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("null", "power", "placed"))
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--against", default="HEAD", help="the base revision (default HEAD)")
    parser.add_argument("--slowdowns", default="0.02,0.05")
    parser.add_argument("--places", default=",".join(PLACEMENTS))
    parser.add_argument("--deadline-s", type=float, default=540, help="start no run after this")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    runs: list[dict] = []

    def time_left() -> bool:
        return time.perf_counter() - started < args.deadline_s

    if args.what == "null":
        for i in range(args.runs):
            if time_left():
                runs.append(gate(ROOT, args.against, args.out, f"null{i}", extra))
    elif args.what == "power":
        for fraction in args.slowdowns.split(","):
            for i in range(args.runs):
                if not time_left():
                    break
                env = {"CONV3D_INJECT_SLOWDOWN": fraction, "CONV3D_INJECT_BY": "auto"}
                tag = f"slow{fraction}-{i}"
                more = ["-p", "bench.inject_slowdown", *extra]
                runs.append(gate(ROOT, args.against, args.out, tag, more, env))
    else:
        base = _git(ROOT, "rev-parse", args.against)
        for name in args.places.split(","):
            if time_left():
                tree = placed_tree(name, base, args.out.resolve())
                runs.append(gate(tree, base, args.out, f"placed-{name}", extra))
    (args.out / f"{args.what}.json").write_text(json.dumps(runs, indent=1))
    print(table(runs))
    print(summary(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
