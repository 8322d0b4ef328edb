"""The API's model: the registry's champion followed, each newer verified snapshot swapped in."""

from __future__ import annotations

import asyncio
import logging
import time

from models.following import follow
from models.registry import ModelRegistry
from models.scoring import ModelHolder
from monitoring.metrics import ApiMetrics

log = logging.getLogger(__name__)


class ModelRefresher:
    """Keeps a :class:`ModelHolder` on the registry's latest version.

    Parameters
    ----------
    registry
        The registry whose champion is followed (:func:`models.following.follow`).
    holder
        The holder the API scores from; each newer verified snapshot is swapped in.
    metrics
        The API's metrics: the model version served, the snapshots refused.
    """

    def __init__(self, registry: ModelRegistry, holder: ModelHolder, metrics: ApiMetrics):
        self.registry = registry
        self.holder = holder
        self.metrics = metrics

        #: When (monotonic) the model held was loaded.
        self.loaded_at = time.monotonic()
        self._failing = False

    async def refresh(self) -> None:
        meta = await follow(self.registry, self.holder)
        self.metrics.models_refused.set(len(self.holder.refused))
        if meta is not None:
            self.loaded_at = time.monotonic()
            self.metrics.model_version.set(meta.version)
            log.info("serving model version %d", meta.version)

    async def run(self, every: float) -> None:
        while True:
            try:
                await self.refresh()
                if self._failing:
                    log.info("model refresh works again")
                self._failing = False
            except Exception as exc:  # Redis away: logged when it starts, not every second
                if not self._failing:
                    log.warning("model refresh failed: %r; keeping the current model", exc)
                self._failing = True
            await asyncio.sleep(every)
