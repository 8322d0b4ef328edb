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

Keys (``p`` is the configured prefix), all under the hash tag ``{p:models}``
(one slot of a Redis Cluster: the transactions and scripts here span them,
and the lease's fence): ``{p:models}:latest``, ``{p:models}:counter``,
``{p:models}:snap:<version>`` (hash of ``meta``, ``blob``, ``sig``),
``{p:models}:journal``, ``{p:models}:learned:<txn_id>``; a challenger's under
``{p:models}:challenger:<name>:``.
"""

from __future__ import annotations

import hmac
import json
import logging
import pickle
from dataclasses import asdict, replace
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import WatchError
from river import base

from features.keys import models_tag
from models.champion_changes import ChampionChanges
from models.errors import ChampionChangedError, NoModelError, SnapshotIntegrityError
from models.journal import LearnJournal
from models.rows_store import RowsStore, rows_fields
from models.snapshots import (
    APPEND_LUA,
    META_FIELDS,
    AuditEntry,
    Fence,
    SnapshotMeta,
    sign,
)

log = logging.getLogger(__name__)


class ModelRegistry(LearnJournal, ChampionChanges, RowsStore):
    """Snapshots, the champion, the audit log and the learn journal over ``redis.asyncio``.

    The **champion** is the version the stream and the API score with. Each
    publish makes the new snapshot champion, but only if the champion is
    still the version the learner built on; after a promote or rollback the
    learner reloads the new champion first (:class:`ChampionChangedError`).
    Retention keeps the newest ``keep_versions`` snapshots (and always the
    champion).

    Parameters
    ----------
    client
        The Redis client.
    key_prefix
        The configured key prefix (``p`` in the keys above).
    signing_key
        The HMAC-SHA256 key snapshots and training rows are signed with (not empty).
    learned_ttl_seconds
        How long (seconds) a transaction's "learned" marker lives.
    keep_versions
        How many of the newest snapshots retention keeps.
    lineage
        A challenger's name (its keys under ``challenger:<name>:``; None: the champion's
        lineage).
    fence
        The learner's fence: writes are refused once it no longer holds (None: the caller
        is the only writer).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        key_prefix: str,
        signing_key: bytes,
        learned_ttl_seconds: int = 90 * 86400,
        keep_versions: int = 20,
        lineage: str | None = None,
        fence: Fence | None = None,
    ) -> None:
        if not signing_key:
            raise ValueError("signing_key: must not be empty")
        self.client = client
        self.key_prefix = key_prefix
        self._key = signing_key
        self.learned_ttl_seconds = learned_ttl_seconds
        self.keep_versions = keep_versions
        self.lineage = lineage
        #: Without a fence the caller promises it is the only writer (one process).
        self.fence = fence
        self._base = models_tag(key_prefix) + (f":challenger:{lineage}" if lineage else "")
        self._append = client.register_script(APPEND_LUA)

    def key(self, name: str) -> str:
        """The Redis key of this lineage's ``name`` (``champion``, ``snap:3``, ...)."""
        return f"{self._base}:{name}"

    def challenger(self, name: str) -> ModelRegistry:
        """The registry of the challenger ``name``: its own versions, journal and markers."""
        return ModelRegistry(
            self.client,
            self.key_prefix,
            self._key,
            self.learned_ttl_seconds,
            self.keep_versions,
            lineage=name,
            fence=self.fence,
        )

    def with_fence(self, fence: Fence | None) -> ModelRegistry:
        """This registry, writing only while ``fence`` holds."""
        return ModelRegistry(
            self.client,
            self.key_prefix,
            self._key,
            self.learned_ttl_seconds,
            self.keep_versions,
            lineage=self.lineage,
            fence=fence,
        )

    async def adopt(self, other: ModelRegistry, who: str, why: str, at: str) -> AuditEntry:
        """Make ``other``'s champion (a challenger's model) this lineage's new champion.

        Its snapshot is verified, republished here as a new version whose
        parent is the current champion, and the change is audited in the same
        transaction (redone if the champion moved meanwhile). The challenger's
        training rows (a batch model's, which its snapshot leaves out) replace
        this lineage's in that transaction too; without any, this lineage's are
        removed, as they belong to the model that served before.

        Parameters
        ----------
        other
            The challenger's registry.
        who, why, at
            The audit entry's author, reason and time (ISO 8601 text).
        """
        version = await other.champion_version()
        if version is None:
            raise NoModelError(f"challenger {other.lineage!r} has no published model")
        meta, model = await other.load(version)
        rows = await other.training_rows()
        while True:
            previous = await self.champion_version()
            entry = AuditEntry(f"promote challenger {other.lineage}", previous, 0, who, at, why)
            try:
                adopted = await self.publish(
                    model,
                    replace(meta, version=0, parent=previous),
                    audit=entry,
                    training_rows=rows or b"",
                )
            except ChampionChangedError:
                continue
            return replace(entry, to_version=adopted.version)

    async def latest_version(self) -> int | None:
        raw = await self.client.get(f"{self._base}:latest")
        return None if raw is None else int(raw)

    async def champion_version(self) -> int | None:
        """The version to score with (the latest until someone promotes another)."""
        raw = await self.client.get(f"{self._base}:champion")
        return int(raw) if raw is not None else await self.latest_version()

    async def publish(
        self,
        model: base.Classifier,
        meta: SnapshotMeta,
        audit: AuditEntry | None = None,
        over: int | None = None,
        training_rows: bytes | None = None,
    ) -> SnapshotMeta:
        """Store ``model`` as the next version and make it champion; clear the journal.

        Raises :class:`ChampionChangedError` (storing nothing) if the champion
        is no longer ``meta.parent``, the version the model was built on. An
        operator's change is appended to the audit log with it (``audit``, its
        ``to_version`` set to the new version). A champion ``over`` (one whose
        signature failed) may be replaced too. ``training_rows`` replace the
        kept ones in the same transaction (empty: removed; None: left as they are).
        Returns ``meta`` with its new version.

        Parameters
        ----------
        model
            The model to pickle and sign.
        meta
            Its metadata (its ``version`` is replaced by the new one).
        audit
            An operator's change logged with it (None: none).
        over
            A refused champion version, which it may replace too.
        training_rows
            A batch model's training rows (:meth:`save_training_rows`).
        """
        version = int(await self.client.incr(f"{self._base}:counter"))
        meta = replace(meta, version=version)
        meta_bytes = json.dumps(
            {f: getattr(meta, f) for f in META_FIELDS},  # (not asdict:
            separators=(",", ":"),
        ).encode()  # no deep copy to dump)
        blob = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
        champion_key = f"{self._base}:champion"
        watched = [champion_key, *([self.fence.key] if self.fence is not None else [])]
        async with self.client.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(*watched)  # the fence and the champion, in one round trip
                values: Any = await pipe.execute_command("MGET", *watched)  # (one slot)
                raw, *fence = values
                if fence:
                    self._hold_fence(fence[0])
                if raw is not None and int(raw) not in (meta.parent, over):
                    raise ChampionChangedError(
                        f"champion is now version {int(raw)}, not {meta.parent}"
                    )
                pipe.multi()
                pipe.hset(
                    f"{self._base}:snap:{version}",
                    mapping={
                        "meta": meta_bytes,
                        "blob": blob,
                        "sig": sign(self._key, meta_bytes, blob),
                    },
                )
                pipe.zadd(f"{self._base}:versions", {str(version): version})
                pipe.set(f"{self._base}:latest", version)
                pipe.set(champion_key, version)
                pipe.delete(f"{self._base}:journal")
                if training_rows is not None:  # (the kept hash may hold more parts)
                    pipe.delete(self._rows_key)
                if training_rows:
                    pipe.hset(self._rows_key, mapping=rows_fields(self._key, training_rows))
                if audit is not None:
                    pipe.rpush(
                        f"{self._base}:audit",
                        json.dumps(
                            asdict(replace(audit, to_version=version)), separators=(",", ":")
                        ),
                    )
                await pipe.execute()
            except WatchError:
                await self._check_fence()
                raise ChampionChangedError("champion changed while publishing") from None
        await self._retain()
        return meta

    async def _retain(self) -> None:
        async with self.client.pipeline(transaction=False) as pipe:  # one round trip
            pipe.zrange(f"{self._base}:versions", 0, -(self.keep_versions + 1))
            pipe.get(f"{self._base}:champion")
            pipe.get(f"{self._base}:latest")
            old, champion, latest = await pipe.execute()
        champion = champion if champion is not None else latest
        doomed = [int(v) for v in old if champion is None or int(v) != int(champion)]
        if doomed:
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(*(f"{self._base}:snap:{v}" for v in doomed))
            pipe.zrem(f"{self._base}:versions", *(str(v) for v in doomed))
            await pipe.execute()

    async def versions(self) -> list[SnapshotMeta]:
        """Metadata of every kept snapshot whose signature holds, oldest first."""
        return [meta for meta in (await self.kept()).values() if meta is not None]

    async def kept(self) -> dict[int, SnapshotMeta | None]:
        """Every kept version, oldest first: its metadata, or None if its signature fails."""
        kept: list[Any] = await self.client.zrange(f"{self._base}:versions", 0, -1)
        metas: dict[int, SnapshotMeta | None] = {}
        for version in map(int, kept):
            try:
                metas[version] = (await self._verified(version))[0]
            except NoModelError:  # retention removed it since the listing (a learner publishes)
                continue
            except SnapshotIntegrityError:
                metas[version] = None
        return metas

    async def load(self, version: int | None = None) -> tuple[SnapshotMeta, base.Classifier]:
        """The snapshot ``version`` (default: the champion), verified, then unpickled."""
        if version is None:
            version = await self.champion_version()
            if version is None:
                raise NoModelError("no model snapshot has been published yet")
        meta, blob = await self._verified(version)
        return meta, pickle.loads(blob)

    def _sound(self, meta: bytes, blob: bytes, sig: Any) -> bool:
        """Whether ``sig`` is this registry's signature of ``meta`` and ``blob``."""
        return hmac.compare_digest(sign(self._key, meta, blob).encode(), bytes(sig))

    async def _verified(self, version: int) -> tuple[SnapshotMeta, bytes]:
        """Metadata and bytes of ``version``, after checking the signature (no unpickling)."""
        fields: dict[Any, Any] = await self.client.hgetall(f"{self._base}:snap:{version}")
        if not fields:
            raise NoModelError(f"model version {version} does not exist")
        meta_bytes, blob, sig = (fields.get(k) for k in (b"meta", b"blob", b"sig"))
        if meta_bytes is None or blob is None or sig is None:
            raise SnapshotIntegrityError(f"model version {version}: snapshot is unsigned")
        if not self._sound(meta_bytes, blob, sig):
            raise SnapshotIntegrityError(
                f"model version {version}: signature does not match; refusing to load"
            )
        return SnapshotMeta(**json.loads(meta_bytes)), bytes(blob)
