"""Versioned, signed model snapshots in Redis, and the learner's journal.

A snapshot is the pickled model plus its metadata, signed with HMAC-SHA256
under a key from the settings. :meth:`ModelRegistry.load` verifies the
signature *before* unpickling, so bytes someone else wrote are never run.

The learner's write-ahead journal lives beside the snapshots: every label
learned since the latest snapshot is appended (with the vector it was learned
from) together with a per-transaction "learned" marker, in one ``MULTI``.
Publishing a snapshot clears the journal in the same ``MULTI``, so
``latest snapshot + journal`` is always exactly the labels marked learned: a
crash at any point loses nothing and double counts nothing.

Keys (``{p}`` is the configured prefix): ``{p}:models:latest``,
``{p}:models:counter``, ``{p}:models:snap:{version}`` (hash of ``meta``,
``blob``, ``sig``), ``{p}:models:journal``, ``{p}:models:learned:{txn_id}``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import pickle
from dataclasses import asdict, dataclass, replace
from typing import Any

import redis.asyncio as aioredis
from river import base

from models.errors import NoModelError, SnapshotIntegrityError


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """What a snapshot is: version, lineage, and how much it has learned."""

    version: int
    parent: int | None
    model_name: str
    feature_set_version: int
    labels_learned: int
    #: Event time of the last label learned (seconds), not the wall clock.
    created_at: float | None


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One learned label: the transaction, its truth and the vector used."""

    txn_id: str
    is_fraud: bool
    features: dict[str, float]


def sign(key: bytes, meta: bytes, blob: bytes) -> str:
    """The HMAC-SHA256 of a snapshot's metadata and bytes, hex-encoded.

    Examples
    --------
    >>> sign(b"k", b"{}", b"x") == sign(b"k", b"{}", b"x") != sign(b"k2", b"{}", b"x")
    True
    """
    mac = hmac.new(key, meta, hashlib.sha256)
    mac.update(b"\n")
    mac.update(blob)
    return mac.hexdigest()


class ModelRegistry:
    """Snapshots and the learn journal over a ``redis.asyncio`` client."""

    def __init__(
        self, client: aioredis.Redis, key_prefix: str, signing_key: bytes,
        learned_ttl_seconds: int = 90 * 86400,
    ) -> None:
        if not signing_key:
            raise ValueError("signing_key: must not be empty")
        self.client = client
        self.key_prefix = key_prefix
        self._key = signing_key
        self.learned_ttl_seconds = learned_ttl_seconds
        self._base = f"{key_prefix}:models"

    async def latest_version(self) -> int | None:
        raw = await self.client.get(f"{self._base}:latest")
        return None if raw is None else int(raw)

    async def publish(self, model: base.Classifier, meta: SnapshotMeta) -> SnapshotMeta:
        """Store ``model`` as the next version; clear the journal atomically."""
        version = int(await self.client.incr(f"{self._base}:counter"))
        meta = replace(meta, version=version)
        meta_bytes = json.dumps(asdict(meta), separators=(",", ":")).encode()
        blob = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(
            f"{self._base}:snap:{version}",
            mapping={"meta": meta_bytes, "blob": blob, "sig": sign(self._key, meta_bytes, blob)},
        )
        pipe.set(f"{self._base}:latest", version)
        pipe.delete(f"{self._base}:journal")
        await pipe.execute()
        return meta

    async def load(self, version: int | None = None) -> tuple[SnapshotMeta, base.Classifier]:
        """The snapshot ``version`` (default: latest), verified, then unpickled."""
        if version is None:
            version = await self.latest_version()
            if version is None:
                raise NoModelError("no model snapshot has been published yet")
        fields: dict[Any, Any] = await self.client.hgetall(f"{self._base}:snap:{version}")
        if not fields:
            raise NoModelError(f"model version {version} does not exist")
        meta_bytes, blob, sig = (fields.get(k) for k in (b"meta", b"blob", b"sig"))
        if meta_bytes is None or blob is None or sig is None:
            raise SnapshotIntegrityError(f"model version {version}: snapshot is unsigned")
        if not hmac.compare_digest(sign(self._key, meta_bytes, blob), sig.decode()):
            raise SnapshotIntegrityError(
                f"model version {version}: signature does not match; refusing to load"
            )
        meta = SnapshotMeta(**json.loads(meta_bytes))
        return meta, pickle.loads(blob)

    async def record_learned(self, entry: JournalEntry) -> None:
        """Append ``entry`` to the journal and mark its transaction learned."""
        pipe = self.client.pipeline(transaction=True)
        pipe.set(f"{self._base}:learned:{entry.txn_id}", 1, ex=self.learned_ttl_seconds)
        pipe.rpush(f"{self._base}:journal", json.dumps(asdict(entry), separators=(",", ":")))
        await pipe.execute()

    async def was_learned(self, txn_id: str) -> bool:
        return bool(await self.client.exists(f"{self._base}:learned:{txn_id}"))

    async def journal(self) -> list[JournalEntry]:
        """Labels learned since the latest snapshot, in order."""
        raw: list[Any] = await self.client.lrange(f"{self._base}:journal", 0, -1)
        return [JournalEntry(**json.loads(item)) for item in raw]
