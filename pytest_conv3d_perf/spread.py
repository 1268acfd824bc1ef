"""How far a median moves from one process to the next, beyond its own interval.

A median measured in one process has an interval that sees the noise inside that process;
a fresh process lands somewhere else (placement, clocks, allocation, the host's state).
Measured on an H100 (notes/gate-quality.md, "Process spread"): the suite's medians moved
0.01-0.24% (standard deviation over 7 fresh processes of one day) on cases of 50 us and
more, 0.3-0.8% below; against a number stored on another day, two fresh processes of
unchanged code sat 0.7% and 0.0% (video_c64) and 0.8% and 0.3% (unet3d_n1) off the A/B
truth, a spread of about 0.4% a process; the call time of the small cases, mostly host
work, moved 10-45%. A change against a stored
number compares two processes, so its interval must carry both processes' spread, or "95%"
covers the truth about half the time (issue 12). An A/B inside one process shares the
offset of its process and needs only a small allowance.

The priors are deliberately at the high end of what was measured: a baseline recorded in
several processes replaces them where it measured more, never where it measured less
(three processes estimate a spread too poorly to narrow it).
"""

from __future__ import annotations

import math

SMALL_MS = 0.05  # below this, a kernel's time moves more between processes
DEVICE_SD_SMALL = 0.0075
DEVICE_SD = 0.004
# Relative spread of the host's share of a call (launch path, Python, allocator), and
# the least host work a call is assumed to hide (this project's launch path: 38-46 us on the
# H100 before kernel v9's call plans, 27-43 us after; the prior stays on the safe side).
HOST_SD = 0.3
HOST_MS = 0.04
# Two callables interleaved in one process, as in the A/B against the recorded code.
AB_SD = 0.001


def device_sd(median_ms: float) -> float:
    """Prior spread of one process's device-time median."""
    return DEVICE_SD_SMALL if median_ms < SMALL_MS else DEVICE_SD


def call_sd(call_ms: float, device_ms: float) -> float:
    """Prior spread of one process's call-time median: the device part moves like a
    device time, the host part much more. The host part is at least ``HOST_MS``: where
    a call's device time hides its host work (device 40 us, call 38-46 us on the H100's
    mixed_stride), the host work surfaces in some processes and not in others."""
    if call_ms <= 0:
        return device_sd(device_ms)
    host_share = min(1.0, max(call_ms - device_ms, HOST_MS) / call_ms)
    return math.hypot(device_sd(device_ms), HOST_SD * host_share)


def stored_sd(prior: float, measured: float | None) -> float:
    """Spread of a stored median from processes whose medians spread by ``measured``
    (relative standard deviation). Not divided by the number of processes: they ran on
    one day, and the day's offset, shared by all of them, is most of the spread."""
    return max(prior, measured or 0.0)


def process_sd(medians: list[float]) -> float | None:
    """Relative standard deviation of several processes' medians; None for fewer than two."""
    if len(medians) < 2:
        return None
    mean = sum(medians) / len(medians)
    var = sum((m - mean) ** 2 for m in medians) / (len(medians) - 1)
    return math.sqrt(var) / mean
