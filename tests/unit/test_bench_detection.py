"""The drift bench's tally: recall, precision, delays and false alarms over many runs."""

from __future__ import annotations

from monitoring.judging import Alarm
from stream.bench.drift import Run, steady_days, table, tally

DAY = 86400.0


def test_tally_counts_each_detector_over_scenarios_and_steady_seeds() -> None:
    runs = [
        Run(
            "amount",
            None,
            [42 * DAY],
            [
                Alarm("psi", "x", 42.5 * DAY),
                Alarm("psi", "y", 43 * DAY),
                Alarm("ks", "x", 30 * DAY),
            ],
            0.0,
            56 * DAY,
            1.0,
        ),
        Run("pattern", None, [42 * DAY], [Alarm("missed", "fraud", 44 * DAY)], 0.0, 56 * DAY, 1.0),
        Run("baseline", 100, [], [Alarm("psi", "x", 20 * DAY)], 0.0, 56 * DAY, 1.0),
        Run("baseline", 101, [], [], 0.0, 56 * DAY, 1.0),
    ]
    tallies, days = tally(runs, 3 * DAY)
    assert days == 4 * 56
    psi, ks, missed, any_ = (tallies[n] for n in ("psi", "ks", "missed", "any"))
    assert (psi.changes, psi.detected, psi.alarms, psi.false) == (2, 1, 3, 1)
    assert psi.delays == [12.0]
    assert (ks.detected, ks.false) == (0, 1)
    assert (missed.detected, missed.delays) == (1, [48.0])
    assert (any_.changes, any_.detected, any_.false) == (2, 2, 2)
    assert (psi.steady, ks.steady, any_.steady) == (1, 1, 2)
    lines = table(tallies, days, steady_days(runs))
    assert steady_days(runs) == 42 + 42 + 56 + 56
    assert lines[-1].startswith("| any | 2/2 | 1.00 | 0.60 | 30.0 | 30.0 | 2 | 0.27 | 2 | 0.31 |")
    assert any(line.startswith("| psi | 1/2 | 0.50 | 0.67 | 12.0 |") for line in lines)
