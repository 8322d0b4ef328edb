"""Concept drift: ADWIN and Page-Hinkley (River) on the champion's prequential log loss."""

from __future__ import annotations

import math
from collections import deque

from river import drift

from monitoring.drift import ert
from monitoring.drift.base import DriftEvent, LabelObservation
from monitoring.drift.config import DriftConfig

#: River's Page-Hinkley defaults, named: the ERT simulation must run the same test.
PAGE_HINKLEY_DELTA = 0.005
PAGE_HINKLEY_ALPHA = 1 - 0.0001


class ConceptDrift:
    """ADWIN and Page-Hinkley on the champion's prequential log loss.

    ADWIN takes the mean loss of each block of ``adwin_block`` labels:
    its bound assumes independent values, and frauds come in bursts (a
    stolen card is used several times in an hour), so fed label by label it
    pages on steady traffic.

    Only a *rise* of the loss is concept drift: a model getting better as it
    learns also changes its loss, and must not page anyone. Page-Hinkley runs
    in ``up`` mode; an ADWIN detection counts when the mean of the window it
    keeps is above the mean before the cut. The probabilities are clipped to
    ``[loss_clip, 1 - loss_clip]`` first, so that one confidently missed
    fraud weighs a few genuine mistakes, not a whole burst of them.

    Page-Hinkley's threshold is derived from its share of the expected run-time
    between false alarms (``ert_days * ert_detectors``, :mod:`monitoring.drift.ert`): the
    losses of the first
    ``reference_days`` (and ``reference_size`` labels) are its reference, and
    it runs from then on; unless ``page_hinkley_threshold`` fixes it by hand.

    Parameters
    ----------
    config
        The windows and thresholds: ``adwin_delta``, ``adwin_block``, ``loss_clip``,
        ``page_hinkley_threshold`` (0: derived), and the reference and ERT settings.
    model
        The model whose losses are watched: the subject of the alarms.
    """

    def __init__(self, config: DriftConfig, model: str = "champion") -> None:
        self.config = config
        self.model = model
        self.adwin = drift.ADWIN(delta=config.adwin_delta)
        #: Page-Hinkley, once its threshold is known: set by hand, or derived from the
        #: ERT on the losses of the reference (collected first, in ``_reference``).
        self.page_hinkley: drift.PageHinkley | None = None
        self.threshold: float | None = None
        self._reference: list[tuple[float, float]] = []
        if config.page_hinkley_threshold > 0:
            self._start_page_hinkley(config.page_hinkley_threshold)
        self.seen = 0
        self.times: deque[float] = deque(maxlen=config.window_size)
        self._block: list[float] = []

    def _start_page_hinkley(self, threshold: float) -> None:
        self.threshold = threshold
        self.page_hinkley = drift.PageHinkley(
            threshold=threshold, mode="up", delta=PAGE_HINKLEY_DELTA, alpha=PAGE_HINKLEY_ALPHA
        )

    def _calibrate_if_complete(self) -> None:
        """Derive Page-Hinkley's threshold once the reference spans ``reference_days``
        and holds ``reference_size`` losses."""
        first, last = self._reference[0][1], self._reference[-1][1]
        if (
            len(self._reference) < self.config.reference_size
            or last - first < self.config.reference_days * 86400
        ):
            return
        losses, times = zip(*self._reference, strict=True)
        self._start_page_hinkley(
            ert.page_hinkley_threshold(
                losses,
                times,
                self.config.ert_days * self.config.ert_detectors,
                PAGE_HINKLEY_DELTA,
                PAGE_HINKLEY_ALPHA,
                runs=self.config.ert_runs,
                block_seconds=self.config.ert_block_hours * 3600,
            )
        )
        self._reference = []

    def alarm_keys(self) -> list[tuple[str, str]]:
        """Every (detector, subject) this can raise."""
        return [("adwin", self.model), ("page_hinkley", self.model)]

    def update(self, observation: LabelObservation) -> list[DriftEvent]:
        """A label and the score its transaction was given: one prequential loss."""
        at, clip = observation.at, self.config.loss_clip
        p = min(max(observation.score, clip), 1 - clip)
        loss = -math.log(p if observation.is_fraud else 1 - p)
        self.seen += 1
        self.times.append(at)
        if self.page_hinkley is not None:
            self.page_hinkley.update(loss)
        else:
            self._reference.append((loss, at))
            self._calibrate_if_complete()
        events = []
        self._block.append(loss)
        if len(self._block) >= self.config.adwin_block:
            before = self.adwin.estimation
            self.adwin.update(sum(self._block) / len(self._block))
            self._block.clear()
        else:
            before = math.inf  # no new block: ADWIN did not move
        if self.adwin.drift_detected and self.adwin.estimation > before:
            events.append(
                DriftEvent("adwin", self.model, self.adwin.estimation, self.seen, self.times[0], at)
            )
        if self.page_hinkley is not None and self.page_hinkley.drift_detected:
            events.append(
                DriftEvent("page_hinkley", self.model, loss, self.seen, self.times[0], at)
            )
        return events

    def refresh(self) -> None:
        """Nothing to do: only a rise of the loss alarms, and a promoted model is the better
        one, so the running tests go on across a promote."""
