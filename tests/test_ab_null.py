"""bench/ab_null's table: the call time's A/B beside the device time's (its numbers come
from the device: notes/gate-quality.md)."""

from bench.ab_null import _call_cells


def test_the_call_time_cells_say_whether_the_interval_holds_zero():
    row = {"call_pct": -3.5, "call_interval": [-4.1, -2.9], "call_covers_0": False}
    assert _call_cells(row) == "-3.50 [-4.10, -2.90] | NO"
    row = {"call_pct": 0.2, "call_interval": [-0.3, 0.7], "call_covers_0": True}
    assert _call_cells(row) == "+0.20 [-0.30, +0.70] | yes"
    # A measurement without call times (a timer that takes none).
    assert _call_cells({"call_pct": None}) == "- | -"
