"""The scorecard: a stream replayed embedded, through the worker's own scoring, learning and
drift code without any server, and judged.

- :mod:`~stream.scorecard.embedded`: the run (memory store, labels at their arrival time,
  challengers in shadow, a frozen baseline, the promotion rule);
- :mod:`~stream.scorecard.options`: what a run takes and gives;
- :mod:`~stream.scorecard.judge`: the scorecard of a run: metrics per day and week, alarms
  against change points, recovery;
- :mod:`~stream.scorecard.report`: its plots and ``report.html``.

``fraudstream scorecard`` (:mod:`stream.cli.scorecard`) runs all four; ``make demo`` judges
what the stream did with the same :mod:`~stream.scorecard.judge`.
"""
