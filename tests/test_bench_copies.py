"""bench.copies without a GPU: its arguments and its two pure pieces."""

import pytest

from bench import copies


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--copies", "1"], "--copies: 2 to 16"),
        (["--repeats", "0"], "must be positive"),
        (["--cases", "kb54,nope"], "unknown case 'nope'"),
        (["--recorded", "nope.json"], "no such baseline file"),
    ],
)
def test_bad_arguments_exit_2_before_a_gpu_is_asked_for(argv, message, capsys):
    assert copies.main(argv) == 2
    assert message in capsys.readouterr().err


def test_rounds_fill_the_time_asked_within_bounds():
    assert copies.rounds_for(0.5, 4, 3.0) == int(3.0 / (4 * 0.65e-3))
    assert copies.rounds_for(20.0, 4, 3.0) == 50
    assert copies.rounds_for(0.0001, 2, 100.0) == 4000


def test_offsets_are_each_copy_against_the_first():
    base = [1.0 + 0.001 * (i % 7) for i in range(700)]
    found = copies.offsets([base, [t * 1.02 for t in base], list(base)])
    assert found[0][0] == pytest.approx(0.0)
    pct, low, high = found[1]
    assert pct == pytest.approx(2.0, abs=1e-9) and low <= pct <= high and low > 1.5
    assert found[2][1] <= 0.0 <= found[2][2]
