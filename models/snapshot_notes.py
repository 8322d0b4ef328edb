"""What a published snapshot carries besides the model: its parameters and its quality.

Both are cached: a learner publishes a snapshot every hundred labels (dozens a
second when it catches up), and reading the parameters for each is 9 % of
the publishing cost, remaking the quality report 17 % of a learner's time at
30 snapshots a second (py-spy).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

from models.evaluation import Prequential

#: A snapshot's quality report is made again at most this often (seconds).
REPORT_EVERY_SECONDS = 1.0


@dataclass
class SnapshotNotes:
    """The parameters and quality report of the snapshots one learner publishes."""

    #: The last quality report a snapshot carried, and when (monotonic seconds) it was made.
    _report: tuple[float, dict[str, float]] | None = None
    #: The model whose parameters were last read, and them (they do not change as it learns).
    _params: tuple[object, dict[str, Any] | None] | None = None

    def params(self, model: object) -> dict[str, Any] | None:
        """``model``'s constructor parameters as JSON (what River reports), read again only
        when the model is another object (a promote or rollback)."""
        if self._params is None or self._params[0] is not model:
            get = getattr(model, "_get_params", None)
            found = None if get is None else json.loads(json.dumps(get(), default=repr))
            self._params = (model, found)
        return self._params[1]

    def metrics(self, quality: Prequential) -> dict[str, float] | None:
        """``quality``'s recent report without undefined values (JSON has no NaN), made
        again at most every :data:`REPORT_EVERY_SECONDS`; None before any label."""
        if not len(quality):
            return None
        now = time.monotonic()
        if self._report is None or now - self._report[0] >= REPORT_EVERY_SECONDS:
            report = quality.recent_report()
            self._report = (now, {k: v for k, v in report.items() if not math.isnan(v)})
        return self._report[1]
