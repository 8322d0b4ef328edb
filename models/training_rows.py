"""A batch part's training rows, kept in the registry beside the snapshots.

A snapshot leaves a batch model's training rows out (37 MB at 200,000 rows,
published every hundred labels; see :mod:`models.batch`). The learner keeps
them in the registry after each new fit instead, and a learner that starts
again gives them back to its model.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass

from river import base

from models.batch import batch_part, in_background
from models.registry import ModelRegistry

log = logging.getLogger(__name__)


@dataclass
class TrainingRows:
    """Saves a model's batch part's rows after each new fit, and restores them."""

    #: The batch part's fit whose training rows were last saved (its ``fits``).
    saved: int = 0

    async def restore(self, registry: ModelRegistry, model: base.Classifier, replayed: int) -> None:
        """A model with a batch part: fit it in the background (a refit must not stall the
        worker's event loop), and give it back the training rows its snapshot left out.

        Parameters
        ----------
        registry
            The lineage's registry, where the rows are kept.
        model
            The model just loaded (one without a batch part is left as it is).
        replayed
            How many labels of the journal are about to be taught again.
        """
        part = batch_part(model)
        if part is None:
            return
        in_background(model)
        self.saved = part.fits
        raw = await registry.training_rows()
        if raw is None:
            return
        try:
            part.import_rows(raw, replayed)
        except (ValueError, KeyError, OSError) as exc:  # a blob of other features: start over
            log.error("batch model: not taking the saved training rows back: %s", exc)

    async def save(self, registry: ModelRegistry, model: base.Classifier) -> None:
        """After each new fit of ``model``'s batch part, keep its training rows.

        Parameters
        ----------
        registry
            The lineage's registry, where the rows are kept.
        model
            The model (without a batch part or a new fit, nothing is saved).
        """
        part = batch_part(model)
        if part is None or part.fits == self.saved:
            return
        with tempfile.TemporaryFile() as rows:  # (37 MB at 200,000 rows: not in memory)
            await registry.save_training_rows(part.export_rows(rows))
        self.saved = part.fits
