"""The FeatureStore protocol: where feature state and scored vectors live.

Two implementations honour it, :class:`features.memory.MemoryFeatureStore`
and :class:`features.redis_store.RedisFeatureStore`; one contract test suite
runs against both. Scoring a batch of transactions is two calls:

1. :meth:`FeatureStore.apply` folds each transaction into its card's and its
   terminal's state, atomically and at most once per transaction id, and
   returns the state *before* it (one round trip for the whole batch). A
   transaction applied before comes back ``DONE`` with its saved record, or,
   if it was never saved, ``PENDING`` with a state that gives exactly the
   vector it was applied with. One older than its card's newest event by
   more than the allowed lateness comes back ``LATE`` and changes nothing.
   An unsaved transaction never holds its card's history back: should
   compaction drop a record it could see (only possible once it is later
   than allowed behind its card's newest event), its redelivery comes back
   ``LATE`` too (it stays counted once, from when it was first applied).
   A transaction id belongs to the first card it came with: the same id on
   another card comes back ``CONFLICT`` (naming that card) and changes nothing.
2. :meth:`FeatureStore.save` stores each :class:`ScoredRecord` (the exact
   vector, score and model version), which the learner later joins with the
   transaction's label.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from features import card_bytes, terminal
from features.events import Label, Transaction
from features.terminal import TerminalState
from features.vector import VECTOR_SIZE, EntityState, pack_vector, unpack_vector

_HEADER = struct.Struct("<ddi")
_SCORE = struct.Struct("<d")


@dataclass(frozen=True, slots=True)
class ScoredRecord:
    """A transaction as it was scored: its vector, score and model version.

    Examples
    --------
    >>> from features.vector import EntityState, view
    >>> t = Transaction("t1", "c1", "p1", 10.0, 5.0)
    >>> r = ScoredRecord("t1", "c1", "p1", 5.0, view(EntityState(), t), 0.25, 3)
    >>> ScoredRecord.from_bytes(r.to_bytes()) == r
    True
    >>> r = ScoredRecord("t1", "c1", "p1", 5.0, view(EntityState(), t), 0.25, 3, {"arf": 0.5})
    >>> ScoredRecord.from_bytes(r.to_bytes()).shadow
    {'arf': 0.5}
    """

    txn_id: str
    card_id: str
    terminal_id: str
    event_time: float
    features: dict[str, float]
    score: float
    model_version: int
    #: Challenger name -> its score, recorded in shadow (never returned to the caller).
    shadow: dict[str, float] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """Compact bytes: times and score, the three ids, the packed vector, shadow scores."""
        txn_id, card_id, terminal_id = (_id(self.txn_id), _id(self.card_id), _id(self.terminal_id))
        raw = b"%s%c%s%c%s%c%s%s%c" % (
            _HEADER.pack(self.event_time, self.score, self.model_version),
            len(txn_id),
            txn_id,
            len(card_id),
            card_id,
            len(terminal_id),
            terminal_id,
            pack_vector(self.features),
            len(self.shadow),
        )
        if not self.shadow:
            return raw
        parts = [raw]
        for name, score in self.shadow.items():
            parts += (_short(name), _SCORE.pack(score))
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, raw: bytes) -> ScoredRecord:
        """The record encoded by :meth:`to_bytes`."""
        event_time, score, version = _HEADER.unpack_from(raw)
        at = _HEADER.size
        ids = []
        for _ in range(3):
            size = raw[at]
            ids.append(raw[at + 1 : at + 1 + size].decode())
            at += 1 + size
        end = at + VECTOR_SIZE
        features = unpack_vector(raw[at:end])
        shadow: dict[str, float] = {}
        if end < len(raw):
            at = end + 1
            for _ in range(raw[end]):
                size = raw[at]
                name = raw[at + 1 : at + 1 + size].decode()
                shadow[name] = _SCORE.unpack_from(raw, at + 1 + size)[0]
                at += 1 + size + _SCORE.size
        return cls(ids[0], ids[1], ids[2], event_time, features, score, version, shadow)


def _id(text: str) -> bytes:
    """``text`` encoded, at most 255 bytes (its length is stored in one byte)."""
    raw = text.encode()
    if len(raw) > 255:
        raise ValueError(f"id longer than 255 bytes: {text[:40]!r}...")
    return raw


def _short(text: str) -> bytes:
    raw = _id(text)
    return bytes((len(raw),)) + raw


class Status(enum.Enum):
    """What :meth:`FeatureStore.apply` did with one transaction."""

    NEW = "new"
    PENDING = "pending"
    DONE = "done"
    LATE = "late"
    CONFLICT = "conflict"


@dataclass(frozen=True, slots=True)
class Applied:
    """The outcome of applying one transaction.

    ``state`` is the state before the transaction (``NEW``; for ``PENDING``
    a state giving the same vector: records it could not see may be gone),
    ``record`` its saved record (``DONE``), ``newest`` the card's newest
    event time (``LATE``), ``owner`` the card its id belongs to (``CONFLICT``).
    """

    txn: Transaction
    status: Status
    state: EntityState | None = None
    record: ScoredRecord | None = None
    newest: float | None = None
    owner: str | None = None


class FeatureStore(Protocol):
    """Feature state and scored records; see the module docs for the protocol."""

    allowed_lateness: float

    async def apply(self, txns: Sequence[Transaction]) -> list[Applied]:
        """Fold each transaction in, in order, at most once; the state before each."""
        ...

    def apply_parts(self, parts: Sequence[Sequence[Transaction]]) -> AsyncIterator[list[Applied]]:
        """:meth:`apply` part by part, each yielded as soon as it is applied.

        The stores may apply later parts while the caller works on earlier ones.
        """
        ...

    async def save(self, scored: Sequence[tuple[Applied, ScoredRecord]]) -> None:
        """Store the records of applied transactions (and tidy their cards' state)."""
        ...

    async def peek(self, txn: Transaction) -> EntityState:
        """The state ``txn`` would be scored from now; read-only."""
        ...

    async def peek_many(self, txns: Sequence[Transaction]) -> list[EntityState]:
        """:meth:`peek` for many transactions at once (one round trip), each from the
        state as it is now (none sees the others)."""
        ...

    async def record_fraud(self, record: ScoredRecord, label: Label) -> None:
        """Count a fraud label for the record's terminal, from ``label.event_time`` on.

        Idempotent: the same transaction's label counts once.

        Parameters
        ----------
        record
            The saved record of the fraudulent transaction (its id, terminal and time).
        label
            Its fraud label; ``label.event_time`` is when it arrived.
        """
        ...

    async def record_frauds(self, frauds: Sequence[tuple[ScoredRecord, Label]]) -> None:
        """:meth:`record_fraud` for each (record, label), in one round trip."""
        ...

    async def scored(self, txn_id: str, card_id: str | None = None) -> ScoredRecord | None:
        """The record ``txn_id`` was saved with, if known and not expired.

        With ``card_id`` (the label knows the card) it is read from the card's side;
        without it, found through the transaction index. A ``card_id`` that is not the
        transaction's finds nothing.

        Parameters
        ----------
        txn_id
            The transaction's id.
        card_id
            The transaction's card, if known (None: found through the transaction index).
        """
        ...

    async def scored_many(
        self,
        txn_ids: Sequence[str],
        card_ids: Sequence[str | None] | None = None,
    ) -> list[ScoredRecord | None]:
        """:meth:`scored` for many transactions at once (one or two round trips).

        Parameters
        ----------
        txn_ids
            The transactions' ids.
        card_ids
            Per id, its card or None, as ``card_id`` of :meth:`scored` (as long as
            ``txn_ids``); None: no card known for any.
        """
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def decode_state(
    card_blob: bytes | memoryview | None, counts: Sequence[int], fraud_values: Sequence[bytes]
) -> EntityState:
    """The :class:`EntityState` from what a store keeps: card bytes, window counts, frauds.

    Parameters
    ----------
    card_blob
        The card's stored bytes (:func:`features.card_bytes.append`'s); empty or None for none.
    counts
        The terminal's window counts: the :data:`features.terminal.WINDOWS`, then the
        :data:`features.terminal.DELAYED` ones.
    fraud_values
        The terminal's fraud entries, each packed as :data:`features.terminal.FRAUD`.
    """
    frauds = terminal.unpack_frauds(fraud_values) if fraud_values else ()
    return EntityState(card_bytes.decode(card_blob), TerminalState(tuple(counts), frauds))
