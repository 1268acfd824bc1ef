"""Numbers only: the median and a distribution-free confidence interval for it.

Written here rather than taken from SciPy (not a dependency): the order-statistic
interval of the median needs only the normal approximation of Binomial(n, 1/2), which is
accurate for the n >= 30 samples the engine always takes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z_95 = 1.959963984540054


@dataclass(frozen=True)
class Summary:
    median: float
    low: float
    high: float
    n: int
    q1: float
    q3: float
    minimum: float
    maximum: float
    mean: float
    stddev: float

    @property
    def rel_halfwidth(self) -> float:
        """Half the interval's width over the median: the resolution reached."""
        return (self.high - self.low) / 2 / self.median if self.median else math.inf


def quantile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between order statistics of sorted values."""
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    return quantile(sorted(values), 0.5)


def median_interval(ordered: Sequence[float], z: float = Z_95) -> tuple[float, float]:
    """The order statistics that bracket the median with the given coverage."""
    n = len(ordered)
    half = z * math.sqrt(n) / 2
    lo = max(0, math.floor(n / 2 - half) - 1)
    hi = min(n - 1, math.ceil(n / 2 + half))
    return ordered[lo], ordered[hi]


def summarize(samples: Sequence[float], z: float = Z_95) -> Summary:
    if not samples:
        raise ValueError("no samples to summarize")
    ordered = sorted(samples)
    n = len(ordered)
    mean = sum(ordered) / n
    var = sum((x - mean) ** 2 for x in ordered) / (n - 1) if n > 1 else 0.0
    low, high = median_interval(ordered, z)
    return Summary(
        median=quantile(ordered, 0.5),
        low=low,
        high=high,
        n=n,
        q1=quantile(ordered, 0.25),
        q3=quantile(ordered, 0.75),
        minimum=ordered[0],
        maximum=ordered[-1],
        mean=mean,
        stddev=math.sqrt(var),
    )


@dataclass(frozen=True)
class Change:
    """Relative change of a median against a baseline, in percent, with its interval."""

    pct: float
    low_pct: float
    high_pct: float

    @property
    def halfwidth_pct(self) -> float:
        return (self.high_pct - self.low_pct) / 2


def relative_change(
    now: float, now_halfwidth: float, base: float, base_halfwidth: float, spread: float = 0.0
) -> Change:
    """``now / base - 1`` with the two relative half-widths added in quadrature, the
    first-order interval of a ratio of independent estimates. ``spread`` is the relative
    standard deviation that neither half-width sees (the offsets of the processes that
    measured the two medians); it widens the interval by ``Z_95 * spread`` in quadrature."""
    ratio = now / base
    half = ratio * math.sqrt(now_halfwidth**2 + base_halfwidth**2 + (Z_95 * spread) ** 2)
    return Change(100 * (ratio - 1), 100 * (ratio - 1 - half), 100 * (ratio - 1 + half))
