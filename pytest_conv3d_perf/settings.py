"""Command-line options and ini values, parsed once into a frozen Settings.

Every option that describes the project (thresholds, budget, where the kernel and the
baselines are, report files) has an ini value of the same name with ``_``. The options that
say what one run does (``--conv3d-perf``, ``--conv3d-perf-only``,
``--conv3d-update-baselines`` and its ``--conv3d-dry-run``, ``--conv3d-force``,
``--conv3d-prior-json``, ``--conv3d-case``, ``--conv3d-benchmark-save``,
``--conv3d-against``, ``--conv3d-no-ab``) have none, as
pytest's own ``-k`` or ``--lf`` have none: a configuration file that switched them on would
make every run of the project measure for minutes or rewrite its baselines.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

GROUP = "conv3d-perf"
DEVICES = ("auto", "cuda", "cpu")
POLICIES = ("fail", "pass")
SIZES = ("auto", "full", "small")
L2_MODES = ("flush", "warm")


class SettingsError(ValueError):
    pass


def _percent(text: str, what: str) -> float:
    # Imported here: the plugin imports this module in every pytest run, used or not.
    from pytest_conv3d_perf.verdict import parse_percent

    try:
        return parse_percent(text, what)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def _positive(text: str, what: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise SettingsError(f"{what}: expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise SettingsError(f"{what}: expected a positive number, got {text!r}")
    return value


def _integer(text: str, what: str, minimum: int) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise SettingsError(f"{what}: expected an integer, got {text!r}") from None
    if value < minimum:
        raise SettingsError(f"{what}: expected an integer >= {minimum}, got {text!r}")
    return value


def _choice(value: str, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise SettingsError(f"{what}: expected one of {', '.join(choices)}, got {value!r}")
    return value


# (option, default, help): each has an ini value named like the option, "-" -> "_".
_VALUED = [
    (
        "--conv3d-kernel",
        "",
        "the kernel under test as module:function, imported with the rootdir on sys.path; "
        "the conv3d_kernel fixture returns it. Example: kernels.implicit_gemm:conv3d.",
    ),
    (
        "--conv3d-model",
        "",
        "the kernel's KernelBench-style module class as module:Class; the conv3d_model "
        "fixture returns it. Example: kernels.implicit_gemm:ModelNew.",
    ),
    (
        "--conv3d-device",
        "auto",
        "where the kernel runs: auto (a CUDA GPU if there is one, else the CPU under Triton's "
        "interpreter), cuda or cpu. Default: auto.",
    ),
    (
        "--conv3d-size",
        "auto",
        "case sizes: full, small (scaled down for the interpreter) or auto (full on a GPU, "
        "small on the CPU). Default: auto.",
    ),
    (
        "--conv3d-trials",
        "5",
        "correctness trials per case, each with fresh random inputs. Default: 5 (KernelBench).",
    ),
    ("--conv3d-seed", "0", "base seed of the random inputs. Default: 0."),
    (
        "--conv3d-fail",
        "2",
        "fail threshold in percent: a slowdown above it, with confidence, is a regression. "
        "Decimals are fine. Default: 2.",
    ),
    (
        "--conv3d-warn",
        "1",
        "warn threshold in percent: a slowdown above it is a warning. Default: 1.",
    ),
    (
        "--conv3d-unstable",
        "pass",
        "what an unstable case does to the run (interval too wide to decide, or the GPU "
        "throttled): fail or pass. Default: pass, shown as unstable in every report: "
        "'cannot tell' is common for kernels of a few tens of microseconds, and a gate "
        "that fails on it is flaky. A throttled GPU is never called a regression.",
    ),
    (
        "--conv3d-new",
        "pass",
        "what a case with no baseline for this GPU does to the run: fail or pass. "
        "Default: pass, so adding a case does not block a pull request.",
    ),
    (
        "--conv3d-budget",
        "10",
        "time budget per case in seconds for adaptive sampling, warm-up excluded. Default: 10.",
    ),
    (
        "--conv3d-l2",
        "flush",
        "cache state for timing: flush (L2 flushed before every sample, cold) or warm. "
        "Default: flush.",
    ),
    (
        "--conv3d-baseline-dir",
        "baselines",
        "folder of the per-GPU baseline files. Default: baselines.",
    ),
    ("--conv3d-json", "", "write the results as JSON (this plugin's schema) to this path."),
    (
        "--conv3d-benchmark-json",
        "",
        "write the results as pytest-benchmark JSON (its own Stats, machine and commit "
        "info; `pytest-benchmark compare` reads it) to this path.",
    ),
    (
        "--conv3d-benchmark-storage",
        ".benchmarks",
        "pytest-benchmark's storage folder, where --conv3d-benchmark-save writes. "
        "Default: .benchmarks, pytest-benchmark's own default.",
    ),
    (
        "--conv3d-gab-json",
        "",
        "write github-action-benchmark's customSmallerIsBetter JSON to this path (always "
        "written when given, an empty list when nothing was timed).",
    ),
    (
        "--conv3d-markdown",
        "",
        "write a Markdown summary to this path; $GITHUB_STEP_SUMMARY gets it too when set.",
    ),
]
_PATHS = (
    "--conv3d-baseline-dir",
    "--conv3d-json",
    "--conv3d-benchmark-json",
    "--conv3d-benchmark-storage",
    "--conv3d-gab-json",
    "--conv3d-markdown",
)
_FLAGS = [
    (
        "--conv3d-perf",
        "also time every case on the GPU and compare it with the stored baseline; "
        "a confirmed regression fails the run.",
    ),
    (
        "--conv3d-perf-only",
        "time the cases and skip everything else: deselect the tests that do not use "
        "the conv3d_perf fixture (implies --conv3d-perf; --conv3d-update-baselines does "
        "the same).",
    ),
    (
        "--conv3d-update-baselines",
        "write the measured cases into this GPU's baseline file (implies --conv3d-perf).",
    ),
    ("--conv3d-dry-run", "with --conv3d-update-baselines: show what would change, write nothing."),
    (
        "--conv3d-no-ab",
        "judge each case by its stored number alone, without the A/B against the kernel at "
        "the baseline entry's commit that settles it (a recording's processes measure, they "
        "do not judge; --conv3d-update-baselines implies it); not with --conv3d-against.",
    ),
    (
        "--conv3d-force",
        "with --conv3d-update-baselines: store unstable measurements and rewrite entries "
        "that did not move.",
    ),
]


def ini_name(option: str) -> str:
    return option.lstrip("-").replace("-", "_")


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup(GROUP, "conv3d kernel correctness and performance gate")
    for option, text in _FLAGS:
        group.addoption(option, action="store_true", default=False, help=text)
    group.addoption(
        "--conv3d-require-gpu",
        action="store_true",
        default=None,
        help="fail, instead of skipping, when no CUDA GPU is visible (for CI GPU runners). "
        "ini: conv3d_require_gpu = true.",
    )
    parser.addini(
        "conv3d_require_gpu",
        type="bool",
        default=None,
        help="fail, instead of skipping, when no CUDA GPU is visible.",
    )
    group.addoption(
        "--conv3d-prior-json",
        action="append",
        default=[],
        metavar="PATH",
        help="with --conv3d-update-baselines: JSON reports (--conv3d-json) of earlier "
        "processes on this GPU; each case stores the process with the median time, so one "
        "odd process does not set the baseline (update-baselines --processes uses this).",
    )
    group.addoption(
        "--conv3d-case",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this case (repeatable).",
    )
    group.addoption(
        "--conv3d-cases-file",
        action="append",
        default=[],
        metavar="PATH",
        help="a TOML or JSON file of extra cases (repeatable; adds to the ini's list).",
    )
    parser.addini(
        "conv3d_cases_file",
        type="paths",
        default=None,
        help="TOML or JSON files of extra cases, relative to the ini file.",
    )
    group.addoption(
        "--conv3d-against",
        default=None,
        metavar="REV",
        help="decide every timed case by an A/B: the working tree's kernel against the "
        "kernel at git revision REV (a branch, tag or sha; each with its own package, "
        "helpers and data files), timed interleaved in this process. The stored baseline "
        "is reported beside it. The keep-or-revert test of one optimization step, and the "
        "pull-request gate (REV: the base commit).",
    )
    group.addoption(
        "--conv3d-benchmark-save",
        default=None,
        metavar="NAME",
        help="also save the results into pytest-benchmark's storage as NNNN_NAME.json, so "
        "`pytest-benchmark list` and `pytest-benchmark compare 0001 0002` find them.",
    )
    # ini defaults are None so that "set in the configuration" can be told from "not set"
    # (requested() below); Settings applies the real defaults.
    for option, _, text in _VALUED:
        group.addoption(option, default=None, metavar="VALUE", help=text)
        parser.addini(ini_name(option), default=None, help=text)


_INI_NAMES = [
    "conv3d_require_gpu",
    "conv3d_cases_file",
    *(ini_name(option) for option, _, _ in _VALUED),
]
_DEFAULTS = {option: default for option, default, _ in _VALUED}


def requested(config: pytest.Config) -> bool:
    """Whether this run or this project asked for the plugin: one of its options on the
    command line, or one of its ini values in the configuration file."""
    for option, _ in _FLAGS:
        if config.getoption(option):
            return True
    for option in ("--conv3d-require-gpu", "--conv3d-benchmark-save", "--conv3d-against"):
        if config.getoption(option) is not None:
            return True
    for option in ("--conv3d-prior-json", "--conv3d-case", "--conv3d-cases-file"):
        if config.getoption(option):
            return True
    if any(config.getoption(option) is not None for option, _, _ in _VALUED):
        return True
    return any(config.getini(name) for name in _INI_NAMES)


@dataclass(frozen=True)
class Settings:
    kernel: str
    model: str
    device: str
    size: str
    trials: int
    seed: int
    perf: bool
    perf_only: bool
    require_gpu: bool
    against: str
    update: bool
    stored_ab: bool
    dry_run: bool
    force: bool
    fail_pct: float
    warn_pct: float
    # Whether the run's thresholds were asked for (option or ini value): then they stand over
    # a case file's per-case values, which only replace the defaults.
    thresholds_given: bool
    unstable_policy: str
    new_policy: str
    budget_s: float
    l2: str
    baseline_dir: Path
    case_names: tuple[str, ...]
    case_files: tuple[Path, ...]
    prior_json: tuple[Path, ...]
    json_path: Path | None
    benchmark_json_path: Path | None
    benchmark_storage: Path
    benchmark_save: str | None
    gab_json_path: Path | None
    markdown_path: Path | None

    @classmethod
    def from_config(cls, config: pytest.Config) -> Settings:
        # Paths given on the command line are relative to where pytest was invoked, as
        # --junitxml's are; paths in the ini file are relative to that file.
        here = Path(config.invocation_params.dir)
        ini_dir = Path(config.inipath).parent if config.inipath else Path(config.rootpath)

        def get(option: str) -> str:
            value = config.getoption(option)
            if value is not None:
                return str(value)
            return str(config.getini(ini_name(option)) or _DEFAULTS[option])

        def path(option: str) -> Path | None:
            value = config.getoption(option)
            base = here if value is not None else ini_dir
            text = get(option)
            return (base / text) if text else None

        fail = _percent(get("--conv3d-fail"), "--conv3d-fail")
        warn = _percent(get("--conv3d-warn"), "--conv3d-warn")
        if warn > fail:
            raise SettingsError(
                f"--conv3d-warn ({warn:g}%) must not be above --conv3d-fail ({fail:g}%)"
            )
        update = bool(config.getoption("--conv3d-update-baselines"))
        perf_only = bool(config.getoption("--conv3d-perf-only")) or update
        require_gpu = config.getoption("--conv3d-require-gpu")
        files = [Path(p) for p in config.getini("conv3d_cases_file") or []]
        files += [here / p for p in config.getoption("--conv3d-cases-file")]
        save = config.getoption("--conv3d-benchmark-save")
        if save is not None and (not save or "/" in save or save.startswith(".")):
            raise SettingsError(
                f"--conv3d-benchmark-save: expected a plain name for NNNN_NAME.json, got {save!r}"
            )
        return cls(
            kernel=get("--conv3d-kernel"),
            model=get("--conv3d-model"),
            device=_choice(get("--conv3d-device"), DEVICES, "--conv3d-device"),
            size=_choice(get("--conv3d-size"), SIZES, "--conv3d-size"),
            trials=_integer(get("--conv3d-trials"), "--conv3d-trials", 1),
            seed=_integer(get("--conv3d-seed"), "--conv3d-seed", 0),
            perf=bool(config.getoption("--conv3d-perf"))
            or perf_only
            or bool(config.getoption("--conv3d-against")),
            perf_only=perf_only,
            against=str(config.getoption("--conv3d-against") or ""),
            require_gpu=bool(
                require_gpu if require_gpu is not None else config.getini("conv3d_require_gpu")
            ),
            update=update,
            stored_ab=not (update or config.getoption("--conv3d-no-ab")),
            dry_run=bool(config.getoption("--conv3d-dry-run")),
            force=bool(config.getoption("--conv3d-force")),
            fail_pct=fail,
            warn_pct=warn,
            thresholds_given=any(
                config.getoption(o) is not None or bool(config.getini(ini_name(o)))
                for o in ("--conv3d-fail", "--conv3d-warn")
            ),
            unstable_policy=_choice(get("--conv3d-unstable"), POLICIES, "--conv3d-unstable"),
            new_policy=_choice(get("--conv3d-new"), POLICIES, "--conv3d-new"),
            budget_s=_positive(get("--conv3d-budget"), "--conv3d-budget"),
            l2=_choice(get("--conv3d-l2"), L2_MODES, "--conv3d-l2"),
            baseline_dir=path("--conv3d-baseline-dir") or ini_dir / "baselines",
            case_names=tuple(config.getoption("--conv3d-case")),
            case_files=tuple(files),
            prior_json=tuple(here / p for p in config.getoption("--conv3d-prior-json")),
            json_path=path("--conv3d-json"),
            benchmark_json_path=path("--conv3d-benchmark-json"),
            benchmark_storage=path("--conv3d-benchmark-storage") or here / ".benchmarks",
            benchmark_save=save,
            gab_json_path=path("--conv3d-gab-json"),
            markdown_path=path("--conv3d-markdown"),
        )
