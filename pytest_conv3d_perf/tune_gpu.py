"""`conv3d-perf tune` on the GPU: the configured kernel's chosen configs, their
neighbours, measured.

The kernel's module offers what tuning needs: ``AUTOTUNE_CONFIGS`` (a list of
``_config(BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages)`` lines), ``last_config()``,
``resources(*args, config=)``, and a function that takes ``config=`` to launch one config.
"""

from __future__ import annotations

import inspect
import subprocess
from pathlib import Path

from pytest_conv3d_perf import check, report
from pytest_conv3d_perf.cases import Conv3dCase
from pytest_conv3d_perf.measure import Plan
from pytest_conv3d_perf.timer import CudaTimer
from pytest_conv3d_perf.tune import (
    LaunchConfig,
    Resources,
    Trial,
    adopt,
    diff,
    edit_config_list,
    measure_candidates,
    neighbours,
)


class TuneError(RuntimeError):
    pass


def repository_root(start: Path) -> Path:
    """The git work tree holding ``start`` (the folder itself outside git)."""
    done = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], cwd=start, capture_output=True, text=True
    )
    return Path(done.stdout.strip()).resolve() if done.returncode == 0 else start.resolve()


def writable_source(fn: object, cwd: Path) -> Path:
    """The kernel's source file, if ``--write`` may edit it: inside the repository it runs
    in, never an installed copy in site-packages."""
    module = inspect.getmodule(fn)
    path = Path(getattr(module, "__file__", "") or "").resolve()
    root = repository_root(cwd)
    if not path.is_file() or not path.is_relative_to(root):
        raise TuneError(
            f"--write edits the kernel's source, and {path} is outside this repository "
            f"({root}); run it in the repository that holds the kernel"
        )
    # A virtual environment inside the work tree (.venv, ignored) holds installed copies.
    ignored = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=root)
    if ignored.returncode == 0:
        raise TuneError(
            f"--write edits the kernel's source, and {path} is outside this repository's "
            f"sources ({root}): git ignores it (an installed copy in a virtual environment?)"
        )
    return path


def _triton_config(cfg: LaunchConfig) -> object:
    import triton

    return triton.Config(cfg.kwargs(), num_warps=cfg.num_warps, num_stages=cfg.num_stages)


def run_tuning(
    cases: list[Conv3dCase],
    kernel: object,
    *,
    min_gain_pct: float,
    budget_s: float,
    write: bool,
) -> int:
    import torch

    ig = inspect.getmodule(kernel)
    path = writable_source(kernel, Path.cwd()) if write else None

    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    shared_per_sm = int(getattr(props, "shared_memory_per_multiprocessor", 228 * 1024))
    max_warps = int(getattr(props, "max_threads_per_multi_processor", 2048)) // 32
    timer = CudaTimer("flush")
    plan = Plan(budget_s=budget_s, target_halfwidth_pct=min_gain_pct / 4)
    by_config: dict[tuple[LaunchConfig, LaunchConfig], list[Trial]] = {}
    device = torch.device("cuda")
    for case in cases:
        inputs = check.random_inputs(case, device, 0)
        args = (inputs.x, inputs.weight, inputs.bias, case.stride, case.padding, case.dilation)
        kernel(*args)  # autotune
        chosen = LaunchConfig.from_dict(ig.last_config() or {})

        def make_call(cfg: LaunchConfig, args: tuple = args):
            tc = _triton_config(cfg)
            return lambda: kernel(*args, config=tc)

        res = ig.resources(*args, config=_triton_config(chosen))
        resources = Resources(res["registers"], res["shared_bytes"], shared_per_sm, max_warps)
        candidates = neighbours(chosen, resources)
        if len(candidates) == 1:
            print(
                f"conv3d-perf tune {case.name}: autotuner chose {chosen.label()}, a config "
                "whose warps and stages its kernel fixes; nothing to try",
                flush=True,
            )
            continue
        print(
            f"conv3d-perf tune {case.name}: autotuner chose {chosen.label()} "
            f"({res['registers']} registers, {res['shared_bytes']} B shared); trying "
            + ", ".join(c.label() for c in candidates[1:]),
            flush=True,
        )
        for trial in measure_candidates(
            timer,
            case.name,
            chosen,
            candidates,
            make_call,
            plan,
            max_halfwidth_pct=min_gain_pct / 2,
        ):
            by_config.setdefault((trial.original, trial.candidate), []).append(trial)
            g = trial.gain
            print(
                f"  {trial.candidate.label():22s} {trial.candidate_ms:.4f} ms vs "
                f"{trial.original_ms:.4f}: gain {g.pct:+.2f}% [{g.low_pct:+.2f}, "
                f"{g.high_pct:+.2f}]{'' if trial.stable else ' (unstable)'}",
                flush=True,
            )

    rows, adopted = [], []
    for (original, candidate), trials in sorted(by_config.items()):
        ok, why = adopt(trials, min_gain_pct)
        rows.append(
            [
                original.label(),
                candidate.label(),
                ", ".join(t.case for t in trials),
                "adopt" if ok else "revert",
                why,
            ]
        )
        if ok:
            adopted.append(candidate)
    print()
    print(report.text_table(["original", "candidate", "cases", "decision", "why"], rows))
    print(f"{len(adopted)} config(s) adopted; every original config stays in the list.")
    source = Path(ig.__file__)
    before = source.read_text()
    after = edit_config_list(before, adopted)
    if after != before:
        print(diff(before, after, source.name))
        if path is not None:
            path.write_text(after)
            print(f"wrote {path}")
        else:
            print("dry run: pass --write to apply")
    return 0
