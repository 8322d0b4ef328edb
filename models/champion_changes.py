"""Who is champion, changed by an operator and logged: promote, roll back, and the audit log.

The champion is the version the stream and the API score with
(``{p:models}:champion``); every change an operator makes is appended to the
audit log (``{p:models}:audit``) in the same transaction, so each entry's
``from_version`` is the champion it replaced. :class:`ChampionChanges` is the
registry's half for this: it holds no state of its own and works on the
registry's Redis client and keys.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import WatchError

from models.errors import NoModelError
from models.snapshots import AuditEntry, SnapshotMeta


class ChampionChanges:
    """Promote, roll back and read the audit log of one lineage (a mixin of the registry)."""

    client: aioredis.Redis
    _base: str

    async def _verified(self, version: int) -> tuple[SnapshotMeta, bytes]:
        """Metadata and bytes of ``version``, its signature checked (the registry's)."""
        raise NotImplementedError

    async def promote(
        self, version: int, who: str, why: str, at: str, action: str = "promote"
    ) -> AuditEntry:
        """Make ``version`` (which must load and verify) the champion, and log it.

        Parameters
        ----------
        version
            The version made champion.
        who, why, at
            The audit entry's author, reason and time (ISO 8601 text).
        action
            The audit entry's action.
        """
        await self._verified(version)

        async def to_version(current: int | None, pipe: Any) -> int:
            return version

        return await self._change_champion(action, who, why, at, to_version)

    async def rollback(self, who: str, why: str, at: str, to: int | None = None) -> AuditEntry:
        """Back to ``to``, or to the champion before the last change, or to its parent.

        Parameters
        ----------
        who, why, at
            The audit entry's author, reason and time (ISO 8601 text).
        to
            The version to go back to (None: the one before, as above).
        """
        if to is not None:
            return await self.promote(to, who, why, at, action="rollback")

        async def previous(current: int | None, pipe: Any) -> int:
            last = await pipe.lindex(f"{self._base}:audit", -1)
            before = None if last is None else json.loads(last)["from_version"]
            if before is None and current is not None:
                before = (await self._verified(current))[0].parent
            if before is None:
                raise NoModelError("nothing to roll back to")
            await self._verified(before)
            return int(before)

        return await self._change_champion("rollback", who, why, at, previous)

    async def _change_champion(
        self,
        action: str,
        who: str,
        why: str,
        at: str,
        choose: Callable[[int | None, Any], Awaitable[int]],
    ) -> AuditEntry:
        """Set the champion to ``choose(current champion, pipe)`` and append the audit entry,
        atomically: the champion and the audit log are watched, and the change is redone
        if another one came between, so every entry's ``from_version`` is the champion it
        replaced."""
        champion, audit = f"{self._base}:champion", f"{self._base}:audit"
        async with self.client.pipeline(transaction=True) as pipe:
            while True:
                sent = None
                try:
                    await pipe.watch(champion, f"{self._base}:latest", audit)
                    raw = await pipe.get(champion)
                    if raw is None:
                        raw = await pipe.get(f"{self._base}:latest")
                    current = None if raw is None else int(raw)
                    entry = AuditEntry(action, current, await choose(current, pipe), who, at, why)
                    sent = json.dumps(asdict(entry), separators=(",", ":"))
                    pipe.multi()
                    pipe.set(champion, entry.to_version)
                    pipe.rpush(audit, sent)
                    await pipe.execute()
                    return entry
                except WatchError:
                    # redis-py reports a connection lost at EXEC as WatchError too: if the
                    # change was applied, its entry ends the audit (a retry would redo it)
                    if sent is not None and await self._audit_ends_with(sent):
                        return entry
                    continue

    async def _audit_ends_with(self, sent: str) -> bool:
        last: Any = await self.client.lindex(f"{self._base}:audit", -1)
        return last is not None and (last if isinstance(last, str) else last.decode()) == sent

    async def audit_length(self) -> int:
        """How many operator changes the audit log holds (cheap to poll)."""
        return int(await self.client.llen(f"{self._base}:audit"))

    async def audit(self) -> list[AuditEntry]:
        raw: list[Any] = await self.client.lrange(f"{self._base}:audit", 0, -1)
        return [AuditEntry(**json.loads(item)) for item in raw]
