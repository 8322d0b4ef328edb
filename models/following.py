"""Following a lineage's champion read-only: what every scorer and the API do."""

from __future__ import annotations

import logging

from models.errors import SnapshotIntegrityError
from models.registry import ModelRegistry
from models.scoring import ModelHolder, ServingModel
from models.snapshots import SnapshotMeta

log = logging.getLogger(__name__)


async def follow(registry: ModelRegistry, holder: ModelHolder) -> SnapshotMeta | None:
    """Load ``registry``'s champion into ``holder`` if it is not the one held already.

    Returns the loaded snapshot's metadata, None if nothing changed. Raises
    :class:`~models.errors.NoModelError` while nothing is published. A champion
    whose signature fails is refused: logged once, added to ``holder.refused``
    (which the metrics count) and not tried again while it is champion; the holder keeps
    its model.

    Parameters
    ----------
    registry
        The lineage followed: the champion's registry or a challenger's.
    holder
        The holder the loaded snapshot is swapped into.
    """
    champion = await registry.champion_version()
    current = holder.current
    if champion is None or champion in holder.refused:
        return None
    holder.refused.clear()  # the refused ones are champion no more (the metric drops)
    if current is not None and current.version == champion:
        return None
    try:
        meta, model = await registry.load(champion)
    except SnapshotIntegrityError as exc:
        holder.refused.add(champion)
        log.error(
            "refusing the champion: %s; still serving version %s",
            exc,
            None if current is None else current.version,
        )
        return None
    holder.swap(ServingModel(meta.version, model))
    return meta
