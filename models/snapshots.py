"""What the model registry stores, as values: a snapshot's metadata, an entry of the
learner's journal (its packing, and the script that appends entries), an audit entry,
the learner's fence, and the signature that guards every stored blob (see
:mod:`models.registry` for the keys and the guarantees).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from dataclasses import dataclass, fields
from typing import Any

from features.vector import FEATURE_NAMES, VECTOR_SIZE, pack_vector, unpack_vector


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
    #: Prequential metrics of the lineage when this version was published.
    metrics: dict[str, float] | None = None
    #: The model's parameters (River's ``_get_params``), as JSON.
    params: dict[str, Any] | None = None
    #: Event time the scoring stream had reached when this version was published
    #: (the newest transaction scored); no label it learned arrived after it,
    #: except those learned once no older transaction was left to come.
    stream_time: float | None = None


#: The fields a snapshot's metadata is stored with.
META_FIELDS = tuple(f.name for f in fields(SnapshotMeta))


@dataclass(frozen=True, slots=True)
class Fence:
    """The proof that a learner is still the active one: the fencing ``token`` it got
    with its lease, which must still be the value of the Redis key ``key``.

    A takeover writes a higher token there, so every write a registry makes
    with a stale fence is refused (:class:`~models.errors.FencedError`).
    """

    key: str
    token: int


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One learned label: the transaction, its truth and the vector used, and when the
    transaction was scored and the label arrived (a model that waits for its transactions
    to mature needs them to be replayed alike; None in an entry written without them)."""

    txn_id: str
    is_fraud: bool
    features: dict[str, float]
    scored_at: float | None = None
    known_at: float | None = None

    def to_bytes(self) -> bytes:
        """Compact bytes: a marker, the truth, the id and, for a vector of the current
        feature set, its packed floats (JSON otherwise; a JSON object is read back too).

        >>> from features.vector import FEATURE_NAMES
        >>> entry = JournalEntry("t1", True, {name: 0.5 for name in FEATURE_NAMES})
        >>> JournalEntry.from_bytes(entry.to_bytes()) == entry
        True
        >>> JournalEntry.from_bytes(JournalEntry("t2", False, {"x": 1.0}).to_bytes()).features
        {'x': 1.0}
        >>> timed = JournalEntry("t3", True, entry.features, 100.0, 7200.5)
        >>> JournalEntry.from_bytes(timed.to_bytes()) == timed
        True
        """
        timed = self.scored_at is not None and self.known_at is not None
        if self.features.keys() == _FEATURES:
            txn_id = self.txn_id.encode()
            if timed:
                return b"%c%c%s%s%s" % (
                    _TIMED,
                    self.is_fraud,
                    _TIMES.pack(self.scored_at, self.known_at),
                    txn_id,
                    pack_vector(self.features),
                )
            return b"%c%c%s%s" % (_PACKED, self.is_fraud, txn_id, pack_vector(self.features))
        fields: dict[str, object] = {
            "txn_id": self.txn_id,
            "is_fraud": self.is_fraud,
            "features": self.features,
        }
        if timed:
            fields.update(scored_at=self.scored_at, known_at=self.known_at)
        return json.dumps(fields, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> JournalEntry:
        end = len(raw) - VECTOR_SIZE
        if raw[0] == _PACKED:
            return cls(raw[2:end].decode(), bool(raw[1]), unpack_vector(raw[end:]))
        if raw[0] == _TIMED:
            scored_at, known_at = _TIMES.unpack_from(raw, 2)
            return cls(
                raw[2 + _TIMES.size : end].decode(),
                bool(raw[1]),
                unpack_vector(raw[end:]),
                scored_at,
                known_at,
            )
        return cls(**json.loads(raw))


#: The first byte of a packed journal entry (a JSON one starts with ``{``), and of one
#: with its two times (scored, known) packed after the truth.

_PACKED = 0x01
#: What a training-rows blob is signed with, in place of a snapshot's metadata.
TRAINING_ROWS = b"training-rows"
_TIMED = 0x02
_TIMES = struct.Struct("<dd")
_FEATURES = frozenset(FEATURE_NAMES)


def sign(key: bytes, meta: bytes, blob: bytes) -> str:
    """The HMAC-SHA256 of a snapshot's metadata and bytes, hex-encoded.

    Parameters
    ----------
    key
        The signing key.
    meta
        The snapshot's metadata (JSON), or :data:`TRAINING_ROWS` for training rows.
    blob
        The pickled model, or the training rows.

    Examples
    --------
    >>> sign(b"k", b"{}", b"x") == sign(b"k", b"{}", b"x") != sign(b"k2", b"{}", b"x")
    True
    """
    mac = signer(key, meta)
    mac.update(blob)
    return mac.hexdigest()


def signer(key: bytes, meta: bytes) -> hmac.HMAC:
    """What :func:`sign` signs with, before the blob: update it with the blob in parts.

    Parameters
    ----------
    key
        The signing key.
    meta
        As for :func:`sign`.

    Examples
    --------
    >>> mac = signer(b"k", b"{}")
    >>> mac.update(b"x"); mac.update(b"y")
    >>> mac.hexdigest() == sign(b"k", b"{}", b"xy")
    True
    """
    mac = hmac.new(key, meta, hashlib.sha256)
    mac.update(b"\n")
    return mac


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One change of champion: what, from which version to which, who, when, why."""

    action: str
    from_version: int | None
    to_version: int
    who: str
    at: str
    why: str


#: Journal append (see :meth:`ModelRegistry.record_learned_many`). KEYS: the journal, the
#: fence key (the journal itself when unfenced), then one marker per entry; ARGV: the
#: journal length expected, the fencing token ('' when unfenced), the markers' TTL, then
#: the entries. Returns {status, value}: {0, new length} (also when exactly these entries
#: end the journal already), {1, actual length} or {2, the fence's value}.
APPEND_LUA = """
if ARGV[2] ~= '' then
  local holder = redis.call('GET', KEYS[2])
  if holder ~= ARGV[2] then return {2, holder or ''} end
end
local length = redis.call('LLEN', KEYS[1])
local expected = tonumber(ARGV[1])
if length == expected + #ARGV - 3 then  -- applied already? (a resend after a lost reply)
  for i = 4, #ARGV do
    if redis.call('LINDEX', KEYS[1], expected + i - 4) ~= ARGV[i] then return {1, length} end
  end
  return {0, length}
end
if length ~= expected then return {1, length} end
for i = 3, #KEYS do redis.call('SET', KEYS[i], 1, 'EX', ARGV[3]) end
for i = 4, #ARGV, 1000 do  -- (unpack has a limit of some thousands)
  redis.call('RPUSH', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
return {0, redis.call('LLEN', KEYS[1])}
"""
APPENDED, MISMATCH, FENCED = 0, 1, 2
