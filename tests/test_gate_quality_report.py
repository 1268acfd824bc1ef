"""bench/gate_quality.py's target lines: what counts as a decision of the gate."""

from bench.gate_quality import target_lines


def _row(verdict, truth, interval, median_ms=1.0, slowed=True):
    return {
        "verdict": verdict,
        "truth": truth,
        "interval": interval,
        "median_ms": median_ms,
        "slowed": slowed,
    }


def test_runs_without_a_baseline_and_runs_the_ab_measured_lower_are_told_apart():
    rows = [
        _row("regression", 2.1, [1.9, 2.5]),
        _row("regression", 2.0, [2.0, 2.6]),
        _row("warning", 2.0, [0.8, 1.4]),  # the harness slowed it by about 1%
        _row("new", 2.0, None),  # no baseline: no decision to count
        _row("regression", 2.0, [1.8, 2.4], median_ms=0.01),  # under 50 us
        _row("unchanged", 0.0, [-0.3, 0.3], slowed=False),
    ]
    lines = target_lines({0.02: {"rows": rows}})
    assert lines[0].startswith("target: 2% on cases >= 50 us regression in >= 95%: 2/3 (67%")
    assert lines[0].endswith("NOT met")
    assert lines[1] == "  judged by the A/B (runs it measured at >= 2%): 2/2 met"


def test_a_target_without_case_runs_prints_nothing():
    assert target_lines({0.02: {"rows": [_row("new", 2.0, None)]}}) == []
