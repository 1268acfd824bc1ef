"""Command-line options and ini values, parsed once into a frozen Settings."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_conv3d_perf.runtime import DEVICE_CHOICES

GROUP = "conv3d-perf"
POLICIES = ("fail", "pass")
SIZES = ("auto", "full", "small")
L2_MODES = ("flush", "warm")


class SettingsError(ValueError):
    pass


def parse_percent(text: str | float, what: str) -> float:
    """'1.5', '1.5%' or 1.5 -> 1.5; decimals are fine (pytest-benchmark takes integers only)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*%?\s*", str(text))
        if not match:
            raise SettingsError(f"{what}: expected a percentage such as 2 or 1.5%, got {text!r}")
        value = float(match.group(1))
    if not 0 < value < 100:
        raise SettingsError(f"{what}: expected a percentage between 0 and 100, got {text!r}")
    return value


def parse_positive(text: str | float, what: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise SettingsError(f"{what}: expected a positive number, got {text!r}") from None
    if not value > 0:
        raise SettingsError(f"{what}: expected a positive number, got {text!r}")
    return value


def parse_int(text: str, what: str, minimum: int) -> int:
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


# (option, ini name, default, help). Each ini value mirrors its option; the option wins.
_VALUED = [
    (
        "--conv3d-device",
        "conv3d_device",
        "auto",
        "where the kernel runs: auto (a CUDA GPU if there is one, else the CPU under Triton's "
        "interpreter), cuda or cpu. Default: auto.",
    ),
    (
        "--conv3d-size",
        "conv3d_size",
        "auto",
        "case sizes: full, small (scaled down for the interpreter) or auto (full on a GPU, "
        "small on the CPU). Default: auto.",
    ),
    (
        "--conv3d-trials",
        "conv3d_trials",
        "5",
        "correctness trials per case, each with fresh random inputs. Default: 5 (KernelBench).",
    ),
    ("--conv3d-seed", "conv3d_seed", "0", "base seed of the random inputs. Default: 0."),
    (
        "--conv3d-fail",
        "conv3d_fail",
        "2",
        "fail threshold in percent: a slowdown above it, with confidence, is a regression. "
        "Decimals are fine. Default: 2.",
    ),
    (
        "--conv3d-warn",
        "conv3d_warn",
        "1",
        "warn threshold in percent: a slowdown above it is a warning. Default: 1.",
    ),
    (
        "--conv3d-unstable",
        "conv3d_unstable",
        "pass",
        "what an unstable case does to the run (interval too wide to decide, or the GPU "
        "throttled): fail or pass. Default: pass, shown as unstable in every report: "
        "'cannot tell' is common for kernels of a few tens of microseconds, and a gate "
        "that fails on it is flaky. A throttled GPU is never called a regression.",
    ),
    (
        "--conv3d-new",
        "conv3d_new",
        "pass",
        "what a case with no baseline for this GPU does to the run: fail or pass. "
        "Default: pass, so adding a case does not block a pull request.",
    ),
    (
        "--conv3d-budget",
        "conv3d_budget",
        "10",
        "time budget per case in seconds for adaptive sampling, warm-up excluded. Default: 10.",
    ),
    (
        "--conv3d-l2",
        "conv3d_l2",
        "flush",
        "cache state for timing: flush (L2 flushed before every sample, cold) or warm. "
        "Default: flush.",
    ),
    (
        "--conv3d-baseline-dir",
        "conv3d_baseline_dir",
        "baselines",
        "folder of the per-GPU baseline files, relative to the rootdir. Default: baselines.",
    ),
    (
        "--conv3d-json",
        "conv3d_json",
        "",
        "write the results as JSON (this plugin's schema) to this path.",
    ),
    (
        "--conv3d-benchmark-json",
        "conv3d_benchmark_json",
        "",
        "write the results in pytest-benchmark's JSON layout (readable by "
        "`pytest-benchmark compare`) to this path.",
    ),
    (
        "--conv3d-gab-json",
        "conv3d_gab_json",
        "",
        "write github-action-benchmark's customSmallerIsBetter JSON to this path.",
    ),
    (
        "--conv3d-markdown",
        "conv3d_markdown",
        "",
        "write a Markdown summary to this path; $GITHUB_STEP_SUMMARY gets it too when set.",
    ),
]


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup(GROUP, "conv3d kernel correctness and performance gate")
    group.addoption(
        "--conv3d-perf",
        action="store_true",
        default=False,
        help="also time every case on the GPU and compare it with the stored baseline; "
        "a confirmed regression fails the run.",
    )
    group.addoption(
        "--conv3d-require-gpu",
        action="store_true",
        default=False,
        help="fail, instead of skipping, when no CUDA GPU is visible (for CI GPU runners).",
    )
    group.addoption(
        "--conv3d-perf-only",
        action="store_true",
        default=False,
        help="time the cases and skip everything else: deselect the tests that do not use "
        "the conv3d_perf fixture (implies --conv3d-perf; --conv3d-update-baselines does "
        "the same).",
    )
    group.addoption(
        "--conv3d-update-baselines",
        action="store_true",
        default=False,
        help="write the measured cases into this GPU's baseline file (implies --conv3d-perf).",
    )
    group.addoption(
        "--conv3d-dry-run",
        action="store_true",
        default=False,
        help="with --conv3d-update-baselines: show what would change, write nothing.",
    )
    group.addoption(
        "--conv3d-force",
        action="store_true",
        default=False,
        help="with --conv3d-update-baselines: store unstable measurements and rewrite "
        "entries that did not move.",
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
        "conv3d_cases_files",
        type="paths",
        default=[],
        help="TOML or JSON files of extra cases, relative to the ini file.",
    )
    for option, ini, default, text in _VALUED:
        group.addoption(option, default=None, metavar="VALUE", help=text)
        parser.addini(ini, default=default, help=text)


def _get(config: pytest.Config, option: str, ini: str) -> str:
    value = config.getoption(option)
    return str(value) if value is not None else str(config.getini(ini))


@dataclass(frozen=True)
class Settings:
    device: str
    size: str
    trials: int
    seed: int
    perf: bool
    perf_only: bool
    require_gpu: bool
    update: bool
    dry_run: bool
    force: bool
    fail_pct: float
    warn_pct: float
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
    gab_json_path: Path | None
    markdown_path: Path | None

    @classmethod
    def from_config(cls, config: pytest.Config) -> Settings:
        get = lambda opt, ini: _get(config, opt, ini)  # noqa: E731
        root = Path(config.rootpath)

        def path(opt: str, ini: str) -> Path | None:
            text = get(opt, ini)
            return (root / text) if text else None

        fail = parse_percent(get("--conv3d-fail", "conv3d_fail"), "--conv3d-fail")
        warn = parse_percent(get("--conv3d-warn", "conv3d_warn"), "--conv3d-warn")
        if warn > fail:
            raise SettingsError(
                f"--conv3d-warn ({warn:g}%) must not be above --conv3d-fail ({fail:g}%)"
            )
        update = bool(config.getoption("--conv3d-update-baselines"))
        perf_only = bool(config.getoption("--conv3d-perf-only")) or update
        files = [Path(p) for p in config.getini("conv3d_cases_files")]
        files += [Path(p) for p in config.getoption("--conv3d-cases-file")]
        return cls(
            device=_choice(
                get("--conv3d-device", "conv3d_device"), DEVICE_CHOICES, "--conv3d-device"
            ),
            size=_choice(get("--conv3d-size", "conv3d_size"), SIZES, "--conv3d-size"),
            trials=parse_int(get("--conv3d-trials", "conv3d_trials"), "--conv3d-trials", 1),
            seed=parse_int(get("--conv3d-seed", "conv3d_seed"), "--conv3d-seed", 0),
            perf=bool(config.getoption("--conv3d-perf")) or perf_only,
            perf_only=perf_only,
            require_gpu=bool(config.getoption("--conv3d-require-gpu")),
            update=update,
            dry_run=bool(config.getoption("--conv3d-dry-run")),
            force=bool(config.getoption("--conv3d-force")),
            fail_pct=fail,
            warn_pct=warn,
            unstable_policy=_choice(
                get("--conv3d-unstable", "conv3d_unstable"), POLICIES, "--conv3d-unstable"
            ),
            new_policy=_choice(get("--conv3d-new", "conv3d_new"), POLICIES, "--conv3d-new"),
            budget_s=parse_positive(get("--conv3d-budget", "conv3d_budget"), "--conv3d-budget"),
            l2=_choice(get("--conv3d-l2", "conv3d_l2"), L2_MODES, "--conv3d-l2"),
            baseline_dir=root / get("--conv3d-baseline-dir", "conv3d_baseline_dir"),
            case_names=tuple(config.getoption("--conv3d-case")),
            case_files=tuple(root / p if not p.is_absolute() else p for p in files),
            prior_json=tuple(root / p for p in config.getoption("--conv3d-prior-json")),
            json_path=path("--conv3d-json", "conv3d_json"),
            benchmark_json_path=path("--conv3d-benchmark-json", "conv3d_benchmark_json"),
            gab_json_path=path("--conv3d-gab-json", "conv3d_gab_json"),
            markdown_path=path("--conv3d-markdown", "conv3d_markdown"),
        )
