"""The micro-tuning stage with its keep-or-revert rule enforced by the gate's measurement.

Rules: vary only num_warps (2, 4, 8, 16; only where occupancy allows) and num_stages (2-4,
one step from the current value); never the grid or the block sizes; 3 to 6 nearby configs,
the original always among them; adopt only a gain above the threshold, with confidence, from
a stable measurement on every case that uses the config.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from pytest_conv3d_perf.measure import Plan, measure
from pytest_conv3d_perf.stats import Change, relative_change
from pytest_conv3d_perf.timer import Timer

WARPS = (2, 4, 8, 16)
STAGES = (2, 3, 4)
REGISTERS_PER_SM = 65536
MAX_CANDIDATES = 6


@dataclass(frozen=True, order=True)
class LaunchConfig:
    block_m: int
    block_n: int
    block_k: int
    num_warps: int
    num_stages: int
    # The config's other keys, sorted (the kernel's v29: GLUON, which launches its Gluon
    # kernel), kept so that a config read back from a baseline launches what it named.
    extra: tuple[tuple[str, object], ...] = ()

    @classmethod
    def from_dict(cls, cfg: dict) -> LaunchConfig:
        """From the dict the kernel module reports (``BLOCK_*``, ``num_warps``, ...)."""
        extra = tuple(sorted((k, v) for k, v in cfg.items() if k not in _KNOWN_KEYS))
        return cls(
            cfg["BLOCK_M"],
            cfg["BLOCK_N"],
            cfg["BLOCK_K"],
            cfg["num_warps"],
            cfg["num_stages"],
            extra,
        )

    def kwargs(self) -> dict:
        """The config's keyword arguments, as ``triton.Config`` takes them."""
        return {
            "BLOCK_M": self.block_m,
            "BLOCK_N": self.block_n,
            "BLOCK_K": self.block_k,
            **dict(self.extra),
        }

    def label(self) -> str:
        more = "".join(f" {k}={v}" for k, v in self.extra)
        return (
            f"{self.block_m}x{self.block_n}x{self.block_k} w{self.num_warps} "
            f"s{self.num_stages}{more}"
        )

    def source(self) -> str:
        """The line the kernel's AUTOTUNE_CONFIGS list holds for this config."""
        if self.extra:
            return (
                f"triton.Config({self.kwargs()!r}, num_warps={self.num_warps}, "
                f"num_stages={self.num_stages})"
            )
        return (
            f"_config({self.block_m}, {self.block_n}, {self.block_k}, "
            f"{self.num_warps}, {self.num_stages})"
        )


_KNOWN_KEYS = frozenset({"BLOCK_M", "BLOCK_N", "BLOCK_K", "num_warps", "num_stages"})


@dataclass(frozen=True)
class Resources:
    """What the compiled kernel needs per thread and per block, on this GPU."""

    registers: int  # per thread
    shared_bytes: int  # per block
    shared_per_sm: int
    max_warps_per_sm: int


def blocks_per_sm(cfg: LaunchConfig, res: Resources) -> int:
    by_regs = REGISTERS_PER_SM // max(1, res.registers * 32 * cfg.num_warps)
    by_smem = res.shared_per_sm // max(1, res.shared_bytes)
    by_warps = res.max_warps_per_sm // cfg.num_warps
    return max(0, min(by_regs, by_smem, by_warps))


def neighbours(cfg: LaunchConfig, res: Resources) -> list[LaunchConfig]:
    """The original first, then configs one warp step or one stage step away.

    More warps only where a block of that size still fits an SM (registers, shared memory,
    warps), and fewer only where each thread's share of the accumulator stays under 128
    registers; both keep the block sizes, so the grid never changes. A config with keys
    of its own (``extra``: the kernel's Gluon config, whose warps and stages its kernel
    fixes) has no neighbours."""
    out = [cfg]
    if cfg.extra:
        return out
    i = WARPS.index(cfg.num_warps) if cfg.num_warps in WARPS else None
    if i is not None and i + 1 < len(WARPS):
        more = replace(cfg, num_warps=WARPS[i + 1])
        if blocks_per_sm(more, res) >= 1:
            out.append(more)
    if i is not None and i > 0:
        fewer = replace(cfg, num_warps=WARPS[i - 1])
        if cfg.block_m * cfg.block_n // (32 * fewer.num_warps) <= 128:
            out.append(fewer)
    for step in (-1, 1):
        stages = cfg.num_stages + step
        if stages in STAGES:
            out.append(replace(cfg, num_stages=stages))
    if len(out) < 3 and cfg.num_stages not in STAGES:
        out += [replace(cfg, num_stages=s) for s in STAGES if s != cfg.num_stages]
    return out[:MAX_CANDIDATES]


@dataclass(frozen=True)
class Trial:
    case: str
    original: LaunchConfig
    candidate: LaunchConfig
    candidate_ms: float
    original_ms: float
    gain: Change  # percent faster than the original; positive is better
    stable: bool


def gain_of(
    candidate_ms: float, candidate_hw: float, original_ms: float, original_hw: float
) -> Change:
    """How much faster the candidate is, in percent, with its interval."""
    slowdown = relative_change(candidate_ms, candidate_hw, original_ms, original_hw)
    return Change(-slowdown.pct, -slowdown.high_pct, -slowdown.low_pct)


def adopt(trials: Sequence[Trial], min_gain_pct: float) -> tuple[bool, str]:
    """Adopt only if every case that uses the config gains more than the threshold with
    confidence, each measured stably."""
    if not trials:
        return False, "not measured"
    unstable = [t.case for t in trials if not t.stable]
    if unstable:
        return False, f"reverted: unstable on {', '.join(unstable)}"
    short = [t for t in trials if t.gain.low_pct <= min_gain_pct]
    if short:
        t = short[0]
        return False, (
            f"reverted: gain {t.gain.pct:+.2f}% [{t.gain.low_pct:+.2f}, "
            f"{t.gain.high_pct:+.2f}] on {t.case} is not above {min_gain_pct:g}%"
        )
    worst = min(trials, key=lambda t: t.gain.low_pct)
    return True, f"adopted: at least {worst.gain.low_pct:+.2f}% on every case ({worst.case})"


def measure_candidates(
    timer: Timer,
    case: str,
    original: LaunchConfig,
    candidates: Sequence[LaunchConfig],
    make_call: Callable[[LaunchConfig], Callable[[], object]],
    plan: Plan,
    max_halfwidth_pct: float,
) -> list[Trial]:
    """Each candidate interleaved with the original, in this process, by the gate's engine."""
    trials = []
    base = make_call(original)
    for cand in candidates:
        if cand == original:
            continue
        m = measure(timer, make_call(cand), base, plan)
        assert m.reference is not None
        hw_c, hw_o = m.kernel.rel_halfwidth, m.reference.rel_halfwidth
        stable = not m.throttle and 100 * max(hw_c, hw_o) <= max_halfwidth_pct
        trials.append(
            Trial(
                case,
                original,
                cand,
                m.kernel.median,
                m.reference.median,
                gain_of(m.kernel.median, hw_c, m.reference.median, hw_o),
                stable,
            )
        )
    return trials


_LIST = re.compile(r"(AUTOTUNE_CONFIGS = \[\n)(.*?)(^\])", re.S | re.M)


def edit_config_list(source: str, adopted: Sequence[LaunchConfig]) -> str:
    """Add the adopted configs to the kernel's list, keeping every original entry."""
    match = _LIST.search(source)
    if not match:
        raise ValueError("no `AUTOTUNE_CONFIGS = [` list found in the kernel's source")
    body = match.group(2)
    new = [c for c in adopted if c.source() not in body]
    if not new:
        return source
    lines = "".join(f"    {c.source()},  # conv3d-perf tune\n" for c in new)
    return source[: match.end(2)] + lines + source[match.end(2) :]


def diff(before: str, after: str, path: str) -> str:
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=f"a/{path}",
            tofile=f"b/{path}",
        )
    )
