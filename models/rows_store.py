"""A batch model's training rows in Redis, in parts, beside the snapshots.

A snapshot leaves a batch model's training rows out (37 MB at 200,000 rows; see
:mod:`models.batch`); the learner keeps them after each new fit, signed, for a
learner that starts again (:mod:`models.training_rows`).

They are written **in parts** of :data:`PART_BYTES`, one Redis command each, to
a staging hash of their own, then renamed over the kept one in one ``MULTI``:
a reader sees the old rows or the new, whole. One command carrying all 37 MB
was copied three times on its way to the socket (asyncio's ``writelines`` of
Python 3.11 joins its pieces, and the transport buffers what the socket did not
take), and those copies were the worker's peak memory (memray, on the 1.7 M
event run: 142 MB at its high-water mark). A staging hash left by a learner that
died mid-way expires on its own.

:class:`RowsStore` is the registry's training-rows half: it holds no state of
its own and works on the registry's Redis client, keys and fence.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Iterator
from typing import IO, Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT

from models.snapshots import TRAINING_ROWS, sign, signer

log = logging.getLogger(__name__)

#: The training rows are written in parts of this many bytes, one command each.
PART_BYTES = 1 << 20
#: A staging hash not renamed by then (its learner died while writing) is removed.
STAGING_TTL_SECONDS = 3600


def parts(raw: bytes | memoryview, size: int = PART_BYTES) -> list[memoryview]:
    """``raw`` cut into pieces of ``size`` bytes (the last one shorter), without copies.

    Parameters
    ----------
    raw
        The bytes to cut.
    size
        The largest piece (bytes).

    Examples
    --------
    >>> [bytes(p) for p in parts(b"abcdefg", 3)]
    [b'abc', b'def', b'g']
    >>> parts(b"", 3)
    []
    """
    view = memoryview(raw).cast("B")
    return [view[at : at + size] for at in range(0, len(view), size)]


def part_field(index: int) -> str:
    """The field of a training-rows hash holding part ``index`` (from 0)."""
    return f"blob:{index}"


def rows_fields(key: bytes, raw: bytes) -> dict[FieldT, EncodableT]:
    """The fields of a training-rows hash: the parts, their count and the signature.

    Parameters
    ----------
    key
        The signing key.
    raw
        The rows (the ``.npz`` bytes of :meth:`models.batch.BatchRetrained.export_rows`).

    Examples
    --------
    >>> fields = rows_fields(b"k", b"x" * 5)
    >>> sorted(fields), fields["parts"]
    (['blob:0', 'parts', 'sig'], 1)
    """
    pieces = parts(raw)
    fields: dict[FieldT, EncodableT] = {part_field(i): p for i, p in enumerate(pieces)}
    fields["parts"] = len(pieces)
    fields["sig"] = sign(key, TRAINING_ROWS, raw)
    return fields


def _pieces(raw: bytes | memoryview | IO[bytes]) -> Iterator[bytes | memoryview]:
    """``raw``'s parts: slices of bytes, or reads of a file from its start."""
    if isinstance(raw, bytes | memoryview):
        yield from parts(raw)
        return
    raw.seek(0)
    while piece := raw.read(PART_BYTES):
        yield piece


class RowsStore:
    """Save and read one lineage's training rows (a mixin of the registry)."""

    client: aioredis.Redis
    _base: str
    _key: bytes

    async def _check_fence(self) -> None:
        """Raise :class:`models.errors.FencedError` if the fence no longer holds (the
        journal's)."""
        raise NotImplementedError

    def _sound(self, meta: bytes, blob: bytes, sig: Any) -> bool:
        """Whether ``sig`` is this registry's signature of ``meta`` and ``blob`` (the
        registry's)."""
        raise NotImplementedError

    @property
    def _rows_key(self) -> str:
        return f"{self._base}:training"

    async def save_training_rows(self, raw: bytes | memoryview | IO[bytes]) -> None:
        """Keep a batch model's training rows, signed, for a learner that starts again:
        written in parts to a staging hash, then renamed over the kept rows at once.

        Parameters
        ----------
        raw
            The rows (:meth:`models.batch.BatchRetrained.export_rows`), or a file they were
            written to, read from its start a part at a time (37 MB need not be in memory).
        """
        await self._check_fence()
        mac = signer(self._key, TRAINING_ROWS)
        staging = f"{self._base}:training:new:{secrets.token_hex(8)}"  # (the lineage's slot)
        count = 0
        try:
            for piece in _pieces(raw):
                mac.update(piece)
                async with self.client.pipeline(transaction=False) as pipe:
                    pipe.hset(staging, part_field(count), piece)
                    pipe.expire(staging, STAGING_TTL_SECONDS)
                    await pipe.execute()
                count += 1
            await self._check_fence()
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(staging, mapping={"parts": count, "sig": mac.hexdigest()})
                pipe.rename(staging, self._rows_key)
                pipe.persist(self._rows_key)  # (a rename keeps the staging TTL)
                await pipe.execute()
        except BaseException:
            with contextlib.suppress(RedisError):  # (else it expires: STAGING_TTL_SECONDS)
                await self.client.delete(staging)
            raise

    async def training_rows(self) -> bytes | None:
        """The rows :meth:`save_training_rows` kept (None: none, or parts missing or a
        signature that does not match, which is logged: the model then gathers its rows
        again). Rows kept whole, in one ``blob`` field, before they were kept in parts
        are read too."""
        fields: dict[Any, Any] = await self.client.hgetall(self._rows_key)
        sig, count = fields.get(b"sig"), fields.get(b"parts")
        if count is None:
            blob = fields.get(b"blob")
        else:
            pieces = [fields.get(part_field(i).encode()) for i in range(int(count))]
            blob = None if None in pieces else b"".join(p for p in pieces if p is not None)
        if blob is None or sig is None:
            if fields:
                log.error("%s: the training rows are incomplete; not using them", self._rows_key)
            return None
        if not self._sound(TRAINING_ROWS, bytes(blob), sig):
            log.error(
                "%s: the training rows' signature does not match; not using them",
                self._rows_key,
            )
            return None
        return bytes(blob)
