"""`conv3d-perf tune` on the GPU: the kernel's chosen configs, their neighbours, measured."""

from __future__ import annotations

from dataclasses import astuple
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


def run_tuning(
    cases: list[Conv3dCase], *, min_gain_pct: float, budget_s: float, write: bool
) -> int:
    import torch

    from kernels import implicit_gemm as ig

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
        ig.conv3d(*args)  # autotune
        chosen = LaunchConfig.from_dict(ig.last_config() or {})

        def make_call(cfg: LaunchConfig, args: tuple = args):
            tc = ig._config(*astuple(cfg))
            return lambda: ig.conv3d(*args, config=tc)

        res = ig.resources(*args, config=ig._config(*astuple(chosen)))
        resources = Resources(res["registers"], res["shared_bytes"], shared_per_sm, max_warps)
        candidates = neighbours(chosen, resources)
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
    path = Path(ig.__file__)
    before = path.read_text()
    after = edit_config_list(before, adopted)
    if after != before:
        print(diff(before, after, "kernels/implicit_gemm.py"))
        if write:
            path.write_text(after)
            print(f"wrote {path}")
        else:
            print("dry run: pass --write to apply")
    return 0
