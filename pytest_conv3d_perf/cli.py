"""The conv3d-perf command: list the case suite, update baselines (and tune, see tune.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pytest_conv3d_perf import __version__
from pytest_conv3d_perf.cases import CaseError, load_suite, select
from pytest_conv3d_perf.report import text_table


def _cases(args: argparse.Namespace) -> int:
    try:
        cases = select(load_suite(Path(args.rootdir), args.cases_file), args.case)
    except CaseError as exc:
        print(f"conv3d-perf: {exc}", file=sys.stderr)
        return 2
    if args.small:
        cases = [c.scaled() for c in cases]
    if args.json:
        print(
            json.dumps(
                [{**c.to_dict(), "output": list(c.output), "flop": c.flop} for c in cases], indent=2
            )
        )
        return 0
    body = [
        [
            c.name,
            str(c.n),
            str(c.ic),
            str(c.oc),
            "x".join(map(str, c.kernel)),
            "x".join(map(str, c.input)),
            "x".join(map(str, c.output)),
            ",".join(map(str, c.stride)),
            ",".join(map(str, c.padding)),
            ",".join(map(str, c.dilation)),
            "yes" if c.bias else "no",
            f"{c.flop:.3e}",
        ]
        for c in cases
    ]
    print(
        text_table(
            [
                "case",
                "N",
                "IC",
                "OC",
                "kernel",
                "input",
                "output",
                "stride",
                "pad",
                "dil",
                "bias",
                "FLOP",
            ],
            body,
        )
    )
    print(f"{len(cases)} cases{' (scaled down for the interpreter)' if args.small else ''}")
    return 0


def process_argvs(
    args: argparse.Namespace, extra: list[str], reports: list[Path]
) -> list[list[str]]:
    """pytest's arguments for each process of an update: one measuring process per report,
    then the one that stores, per case, the process with the median time."""
    common = ["-p", "no:cacheprovider", "--conv3d-require-gpu"]
    common += [f"--conv3d-case={name}" for name in args.case]
    # --conv3d-perf-only: a measuring process times the cases and runs no other test;
    # --conv3d-no-ab: and leaves out the A/B against the recorded kernel, which settles a
    # verdict that a recording does not need (it doubled a re-recording's time).
    measuring = [
        [
            *common,
            "--conv3d-perf-only",
            "--conv3d-no-ab",
            "--conv3d-new=pass",
            "--conv3d-unstable=pass",
            f"--conv3d-json={report}",
            *extra,
        ]
        for report in reports
    ]
    storing = [*common, "--conv3d-update-baselines", *[f"--conv3d-prior-json={p}" for p in reports]]
    storing += ["--conv3d-dry-run"] * args.dry_run + ["--conv3d-force"] * args.force + extra
    return [*measuring, storing]


def _update(args: argparse.Namespace, extra: list[str]) -> int:
    import tempfile

    import pytest

    with tempfile.TemporaryDirectory(prefix="conv3d-perf-") as tmp:
        reports = [Path(tmp) / f"process{i}.json" for i in range(args.processes - 1)]
        argvs = process_argvs(args, extra, reports)
        total = len(argvs)
        for i, (argv, report) in enumerate(zip(argvs, reports), 1):
            print(f"conv3d-perf: process {i}/{total}: pytest {' '.join(argv)}", flush=True)
            code = _pytest_in_child(argv)
            if code not in (0, 1) or not report.exists():
                print(f"conv3d-perf: process {i} failed (exit {code})", file=sys.stderr)
                return code or 1
        last = argvs[-1]
        print(f"conv3d-perf: process {total}/{total}: pytest {' '.join(last)}", flush=True)
        return int(pytest.main(last)) if total == 1 else _pytest_in_child(last)


def _pytest_in_child(argv: list[str]) -> int:
    """A fresh process each time: process-to-process variation is what is being sampled."""
    import subprocess

    return subprocess.run([sys.executable, "-m", "pytest", *argv]).returncode


def configured_kernel(root: Path) -> str:
    """``conv3d_kernel`` from the project's pytest configuration, from the file pytest
    would read it from."""
    from pytest_conv3d_perf.pull_request import kernel_settings, pytest_ini

    def read(name: str) -> str | None:
        path = root / name
        return path.read_text() if path.is_file() else None

    return kernel_settings(pytest_ini(read)[1]).get("conv3d_kernel", "")


def _pull_request(args: argparse.Namespace, extra: list[str]) -> int:
    """Compose the pull-request gate's tree and say what the pull request changes among
    the rules."""
    from pytest_conv3d_perf.pull_request import PullRequestError, compose, markdown
    from pytest_conv3d_perf.sides import RevisionError

    root = Path.cwd()
    try:
        under_test, changes, head, merged_into = compose(root, args.base, args.head)
    except (PullRequestError, RevisionError, OSError) as exc:
        print(f"conv3d-perf pull-request: {exc}", file=sys.stderr)
        return 2
    text = markdown(changes, under_test, head, merged_into)
    if args.markdown:
        Path(args.markdown).write_text(text)
    print(text, end="")
    return 0


def _tune(args: argparse.Namespace, extra: list[str]) -> int:
    from pytest_conv3d_perf.pull_request import PullRequestError
    from pytest_conv3d_perf.runtime import DeviceError, select_runtime
    from pytest_conv3d_perf.target import Target, TargetError
    from pytest_conv3d_perf.tune_gpu import TuneError, run_tuning, writable_source

    root = Path.cwd()
    try:
        spec = args.kernel or configured_kernel(root)
        if not spec:
            raise TargetError(
                "no kernel to tune: pass --kernel module:function, or set conv3d_kernel in "
                "the pytest configuration"
            )
        target = Target.parse(spec, "--kernel" if args.kernel else "conv3d_kernel")
        select_runtime("cuda", [target.module])
        kernel = target.load(root)
        if args.write:
            writable_source(kernel, root)
        cases = select(load_suite(root, []), args.case)
    except (DeviceError, CaseError, TargetError, TuneError, PullRequestError) as exc:
        print(f"conv3d-perf tune: {exc}", file=sys.stderr)
        return 2
    return run_tuning(
        cases, kernel, min_gain_pct=args.min_gain, budget_s=args.budget, write=args.write
    )


def _check_baselines(args: argparse.Namespace, extra: list[str]) -> int:
    """Validate baseline files: one line per problem, exit 1 on any."""
    from pytest_conv3d_perf.baseline import read_file

    files = [Path(f) for f in args.files] or sorted(Path(args.baseline_dir).glob("*.json"))
    if not files:
        print(f"conv3d-perf check-baselines: no baseline files in {args.baseline_dir}")
        return 0
    problems = [line for path in files for line in read_file(path)[1]]
    for line in problems:
        print(line)
    count = f"{len(problems)} problem{'s' * (len(problems) != 1)}"
    print(f"conv3d-perf check-baselines: {len(files)} file(s), {count}")
    return 1 if problems else 0


def _diff_baselines(args: argparse.Namespace, extra: list[str]) -> int:
    """Markdown for a pull request that changes baselines/: the entries it changes. The
    gate judges the pull request against the base's files, never these."""
    from pytest_conv3d_perf.baseline import changed_entries, read_file
    from pytest_conv3d_perf.pull_request import plain

    base_dir, head_dir = Path(args.base), Path(args.head)
    names = sorted({p.name for d in (base_dir, head_dir) for p in d.glob("*.json")})
    lines = []
    for name in names:
        sides = []
        for folder in (base_dir, head_dir):
            path = folder / name
            entries, problems = read_file(path) if path.is_file() else ({}, [])
            lines += [f"- {plain(p)}" for p in problems]
            sides.append(entries)
        lines += [f"- {plain(name)}: {plain(change)}" for change in changed_entries(*sides)]
    print("### This pull request changes baselines/\n")
    print(
        "Its verdicts above were computed against the base commit's baseline files; these "
        "are the entries it changes (a reviewer approves them on purpose):\n"
    )
    print("\n".join(lines) if lines else "- (no entry changed; other fields only)")
    return 0


def _percent(text: str) -> float:
    from pytest_conv3d_perf.verdict import parse_percent

    try:
        return parse_percent(text, "--min-gain")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="conv3d-perf",
        description="Correctness and noise-aware performance gating of a conv3d kernel. "
        "`pytest` checks correctness, `pytest --conv3d-perf` also times and compares with "
        "the baseline; this command lists cases and writes baselines.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True

    cases = verbs.add_parser("cases", help="list the case suite with sizes and FLOP counts")
    cases.add_argument(
        "--small",
        action="store_true",
        help="show the scaled-down variants the CPU interpreter runs",
    )
    cases.add_argument("--json", action="store_true", help="print JSON instead of a table")
    cases.add_argument(
        "--case", action="append", default=[], metavar="NAME", help="only this case (repeatable)"
    )
    cases.add_argument(
        "--cases-file",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help="a TOML or JSON file of extra cases (repeatable)",
    )
    cases.add_argument(
        "--rootdir",
        default=".",
        help="project folder whose pyproject.toml may add cases (default: .)",
    )
    cases.set_defaults(run=lambda a, extra: _cases(a))

    update = verbs.add_parser(
        "update-baselines",
        help="measure on this GPU and write baselines/<gpu>.json",
        description="Measure the cases on this GPU (through pytest --conv3d-perf "
        "--conv3d-update-baselines) and write this GPU's baseline file: atomically, under a "
        "lock, touching only the measured cases, rewriting only entries that moved by more "
        "than a third of the warn threshold or that are named with --case. Arguments after "
        "`--` go to pytest.",
    )
    update.add_argument(
        "--case",
        action="append",
        default=[],
        metavar="NAME",
        help="measure and rewrite this case (repeatable; default: all)",
    )
    update.add_argument(
        "--dry-run", action="store_true", help="show what would change, write nothing"
    )
    update.add_argument(
        "--processes",
        type=_positive_int,
        default=3,
        help="measure in this many fresh processes and store, per case, the process with "
        "the median time (default: 3)",
    )
    update.add_argument(
        "--force",
        action="store_true",
        help="store unstable measurements and rewrite unmoved entries",
    )
    update.set_defaults(run=_update)

    check = verbs.add_parser(
        "check-baselines",
        help="validate baseline files (bounded values, intervals holding their median, "
        "safe names, no duplicate keys)",
        description="Validate baseline files by the rules the gate reads them with: finite "
        "numbers within what a recording can hold (times, clocks, spreads, counts), intervals "
        "that hold their median and are no wider than the bound, a 40-hex commit, a "
        "kernel_file inside the repository, case names of [A-Za-z0-9_.-], no duplicate or "
        "unknown top-level keys, an integer schema, UTF-8, no deep nesting, at most 4 MB. "
        "One line per problem naming the file, the case and the field; exit 1 on any.",
    )
    check.add_argument("files", nargs="*", help="files to check (default: every baselines/*.json)")
    check.add_argument(
        "--baseline-dir", default="baselines", help="folder checked when no file is named"
    )
    check.set_defaults(run=_check_baselines)

    diff = verbs.add_parser(
        "diff-baselines",
        help="Markdown list of the entries a change to baselines/ makes (BASE_DIR HEAD_DIR)",
    )
    diff.add_argument("base", help="baseline folder at the base commit")
    diff.add_argument("head", help="baseline folder of the change")
    diff.set_defaults(run=_diff_baselines)

    pr = verbs.add_parser(
        "pull-request",
        help="the pull-request gate's tree: the base's tests, plugin and settings with the "
        "head's kernel package; lists the rules the pull request changes",
        description="Run in a clean checkout of the base commit. Replaces the package that "
        "holds the configured kernel (conv3d_kernel and conv3d_model, as the base configures "
        "them) with the head's, so that `pytest --conv3d-perf --conv3d-against BASE` judges "
        "the head's code by the base's rules. Prints, as Markdown, every change the pull "
        "request makes outside that package (pytest configuration values, cases, tests and "
        "conftest files, the plugin, workflows): they take effect after merge.",
    )
    pr.add_argument("--base", required=True, help="the base commit (checked out here)")
    pr.add_argument("--head", required=True, help="the pull request's head commit")
    pr.add_argument("--markdown", metavar="PATH", help="also write the Markdown to this file")
    pr.set_defaults(run=_pull_request)

    tune = verbs.add_parser(
        "tune",
        help="micro-tune num_warps and num_stages of the kernel's configs, keep only real gains",
        description="For each case, take the config the autotuner chose and try 3 to 6 nearby "
        "configs (num_warps in 2-16 where occupancy allows, num_stages one step away; block "
        "sizes and grid never change; the original always included), each measured "
        "interleaved with the original by the gate's engine. A config is adopted only when "
        "its gain exceeds --min-gain with confidence, stably, on every case that uses the "
        "original. A dry run unless --write, which adds the adopted configs to the kernel's "
        "AUTOTUNE_CONFIGS (keeping the originals) and prints the diff. Needs a CUDA GPU.",
    )
    tune.add_argument(
        "--case",
        action="append",
        default=[],
        metavar="NAME",
        help="tune on this case (repeatable; default: all)",
    )
    tune.add_argument(
        "--min-gain",
        type=_percent,
        default=1.0,
        metavar="PCT",
        help="smallest gain worth keeping, in percent (default: 1)",
    )
    tune.add_argument(
        "--budget",
        type=float,
        default=5.0,
        metavar="S",
        help="sampling budget per candidate in seconds (default: 5)",
    )
    tune.add_argument(
        "--kernel",
        default="",
        metavar="MODULE:FUNCTION",
        help="the kernel to tune (default: conv3d_kernel from the pytest configuration)",
    )
    tune.add_argument(
        "--write",
        action="store_true",
        help="edit the kernel module's config list in place (only a file inside this repository)",
    )
    tune.set_defaults(run=_tune)
    return parser


def split_at_dashes(argv: list[str] | None) -> tuple[list[str], list[str]]:
    """The command's own arguments and those after ``--`` (handed on to pytest)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1 :]


def main(argv: list[str] | None = None) -> int:
    argv, extra = split_at_dashes(argv)
    args = build_parser().parse_args(argv)
    return args.run(args, extra)


if __name__ == "__main__":
    sys.exit(main())
