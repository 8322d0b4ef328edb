"""Following a lineage's champion read-only: what every scorer and the API do."""

from __future__ import annotations

from models.registry import ModelRegistry, SnapshotMeta
from models.scoring import ModelHolder, ServingModel


async def follow(registry: ModelRegistry, holder: ModelHolder) -> SnapshotMeta | None:
    """Load ``registry``'s champion into ``holder`` if it is not the one held already.

    Returns the loaded snapshot's metadata, None if nothing changed. Raises
    :class:`~models.errors.NoModelError` while nothing is published, and
    :class:`~models.errors.SnapshotIntegrityError` for a snapshot that fails
    its signature (the holder keeps its model).
    """
    champion = await registry.champion_version()
    current = holder.current
    if champion is None or (current is not None and current.version == champion):
        return None
    meta, model = await registry.load(champion)
    holder.swap(ServingModel(meta.version, model))
    return meta
