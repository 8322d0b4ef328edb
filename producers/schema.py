"""Wire schemas: what travels on Kafka and over HTTP, validated at the edge.

Each record carries ``schema_version``. Decoding either returns a core event
(:mod:`features.events`) or raises :class:`RecordError`, whose message names
every offending field and why, so a dead letter explains itself.

Examples
--------
>>> raw = b'{"schema_version": 1, "txn_id": "t1", "card_id": "c1",'
>>> raw += b' "terminal_id": "p1", "amount": 9.5, "event_time": "2026-01-01T00:00:00Z"}'
>>> decode_transaction(raw).event_time
1767225600.0
>>> decode_transaction(b'{"schema_version": 1, "txn_id": "t1"}')
Traceback (most recent call last):
...
producers.schema.RecordError: card_id: Field required; terminal_id: Field required; ...
>>> decode_transaction(raw.replace(b"2026-01-01T00:00:00Z", b"9999-12-31T23:59:59-23:59"))
Traceback (most recent call last):
...
producers.schema.RecordError: event_time: Value error, must be from 1970-01-01 to before ...
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    model_validator,
)

from features.events import Label, Transaction

SCHEMA_VERSION: Literal[1] = 1

EntityId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")]
# Strict types, no coercion: "12.5", true or 1.0 where an amount, a flag or a version
# belongs are errors on the wire, not values.
#: Money, to the cent (stored as a 32-bit count of cents in card state).
Amount = Annotated[float, Strict(), Field(ge=0, le=1e7, allow_inf_nan=False)]
Latitude = Annotated[float, Strict(), Field(ge=-90, le=90, allow_inf_nan=False)]
Longitude = Annotated[float, Strict(), Field(ge=-180, le=180, allow_inf_nan=False)]
Flag = Annotated[bool, Strict()]


def _supported(version: int) -> int:
    if version != SCHEMA_VERSION:
        raise ValueError(f"version {version} is not supported (this build reads {SCHEMA_VERSION})")
    return version


#: Required on every record a producer sends.
SchemaVersion = Annotated[
    int, Strict(), AfterValidator(_supported), Field(json_schema_extra={"const": SCHEMA_VERSION})
]


#: Event times are accepted from the epoch to 2100 (UTC): every one converts back to a
#: datetime and fits the stores' encodings. (``9999-12-31T23:59:59-23:59`` is year 10000
#: in UTC: it passed the schema, then failed to serialize in the worker for good.)
EARLIEST_EVENT = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_EVENT = datetime(2100, 1, 1, tzinfo=UTC)


_EARLIEST, _LATEST = EARLIEST_EVENT.timestamp(), LATEST_EVENT.timestamp()


def _in_range(moment: datetime) -> datetime:
    if not _EARLIEST <= moment.timestamp() < _LATEST:
        raise ValueError(
            f"must be from {EARLIEST_EVENT:%Y-%m-%d} to before {LATEST_EVENT:%Y-%m-%d} UTC"
        )
    return moment


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")


def _rfc3339(value: object) -> object:
    """On the wire an event time is an RFC 3339 string with its offset (not a number, not
    a date with a space)."""
    if isinstance(value, datetime):  # built in Python (from_event)
        return value
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValueError("must be an RFC 3339 string with an offset, like 2026-01-01T00:00:00Z")
    return value


EventTime = Annotated[
    AwareDatetime,
    BeforeValidator(_rfc3339),
    AfterValidator(_in_range),
    # (documented for clients and generators: the years the range check takes)
    Field(
        json_schema_extra={
            "pattern": (
                r"^(19[7-9][0-9]|20[0-9][0-9])-[0-9]{2}-[0-9]{2}T"
                r"[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-]0[0-9]:"
                r"[0-9]{2})$"
            )
        }
    ),
]

R = TypeVar("R", bound="_Record")


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TransactionRecord(_Record):
    """A card transaction as producers publish it (topic ``transactions``)."""

    schema_version: SchemaVersion
    txn_id: EntityId
    card_id: EntityId
    terminal_id: EntityId
    amount: Amount
    event_time: EventTime
    #: The terminal's location, when known (both or neither).
    lat: Latitude | None = None
    lon: Longitude | None = None

    @model_validator(mode="after")
    def _location_is_whole(self) -> TransactionRecord:
        if (self.lat is None) != (self.lon is None):
            missing = "lon" if self.lon is None else "lat"
            raise ValueError(f"{missing} is required when the other coordinate is given")
        return self

    def to_event(self) -> Transaction:
        return Transaction(
            txn_id=self.txn_id,
            card_id=self.card_id,
            terminal_id=self.terminal_id,
            amount=self.amount,
            event_time=self.event_time.timestamp(),
            lat=self.lat,
            lon=self.lon,
        )

    @classmethod
    def from_event(cls, txn: Transaction) -> TransactionRecord:
        return cls(
            schema_version=SCHEMA_VERSION,
            txn_id=txn.txn_id,
            card_id=txn.card_id,
            terminal_id=txn.terminal_id,
            amount=txn.amount,
            event_time=to_datetime(txn.event_time),
            lat=txn.lat,
            lon=txn.lon,
        )


class LabelRecord(_Record):
    """A fraud label (chargeback or confirmation), topic ``labels``.

    ``event_time`` is when the label became known, not when the
    transaction happened.
    """

    schema_version: SchemaVersion
    txn_id: EntityId
    is_fraud: Flag
    event_time: EventTime
    #: The transaction's card, when the source knows it (optional): its record is then
    #: read from its card's state, else found through the transaction index.
    card_id: EntityId | None = None

    def to_event(self) -> Label:
        return Label(self.txn_id, self.is_fraud, self.event_time.timestamp(), self.card_id)

    @classmethod
    def from_event(cls, label: Label) -> LabelRecord:
        return cls(
            schema_version=SCHEMA_VERSION,
            txn_id=label.txn_id,
            is_fraud=label.is_fraud,
            event_time=to_datetime(label.event_time),
            card_id=label.card_id,
        )


class ScoreMessage(_Record):
    """A fraud score published on topic ``scores``, keyed by card id."""

    schema_version: Literal[1] = SCHEMA_VERSION
    txn_id: EntityId
    card_id: EntityId
    score: Annotated[float, Field(ge=0, le=1)]
    model_version: int
    event_time: AwareDatetime


class RecordError(ValueError):
    """A record that does not fit its schema; ``errors`` lists (field, reason)."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{field}: {reason}" for field, reason in errors))


def to_datetime(seconds: float) -> datetime:
    """Event time in epoch seconds as an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, tz=UTC)


def decode_transaction(raw: bytes | str) -> Transaction:
    """Validate a JSON transaction record and return the event."""
    return _decode(TransactionRecord, raw).to_event()


def decode_label(raw: bytes | str) -> Label:
    """Validate a JSON label record and return the event."""
    return _decode(LabelRecord, raw).to_event()


def _decode(schema: type[R], raw: bytes | str) -> R:
    try:
        record = schema.model_validate_json(raw)
    except ValidationError as exc:
        raise RecordError(validation_errors(exc)) from None
    repeated = repeated_in(raw, record)
    if repeated:
        raise RecordError([(key, "given more than once") for key in repeated])
    return record


#: What may stand between a key's closing quote and its colon (one regex scan: four
#: substring searches cost three times as much, a quote being everywhere in JSON).
_QUOTE_SPACE = re.compile(rb'"[ \t\n\r]')


def repeated_in(raw: bytes | str, record: BaseModel) -> list[str]:
    """The keys given more than once in any object of ``raw``, the JSON ``record`` was
    validated from (JSON parsers let the last one win): counted cheaply first
    (:func:`_keys_plainly_unique`), looked for object by object only when that cannot tell.

    Parameters
    ----------
    raw
        The JSON.
    record
        What it validated as.
    """
    return [] if _keys_plainly_unique(raw, keys_given(record)) else repeated_keys(raw)


def keys_given(record: BaseModel) -> int:
    """How many keys the JSON of a validated ``record`` held: its fields given, and those of
    the models nested in them (in lists too)."""
    count = len(record.model_fields_set)
    for name in record.model_fields_set:
        value = getattr(record, name)
        if isinstance(value, BaseModel):
            count += keys_given(value)
        elif isinstance(value, list | tuple):
            count += sum(keys_given(item) for item in value if isinstance(item, BaseModel))
    return count


def _keys_plainly_unique(raw: bytes | str, fields: int) -> bool:
    """Whether a valid record's keys are surely all different, cheaply: with every key's
    quote right before its colon, each key is one ``":`` (a string may add more); as many
    as the keys it gave means none came twice. False: look closer (:func:`repeated_keys`).

    >>> _keys_plainly_unique(b'{"a":1,"b":"x"}', 2)
    True
    >>> _keys_plainly_unique(b'{"a":1,"b":2,"a":3}', 2), _keys_plainly_unique(b'{"a" :1}', 1)
    (False, False)
    """
    data = raw.encode() if isinstance(raw, str) else raw
    return data.count(b'":') == fields and _QUOTE_SPACE.search(data) is None


def repeated_keys(raw: bytes | str) -> list[str]:
    """The keys given more than once in any one object of ``raw`` (JSON), sorted.

    Examples
    --------
    >>> repeated_keys(b'{"a": 1, "b": "x", "a": 2}')
    ['a']
    >>> repeated_keys(b'{"a": 1, "\\\\u0061": 2}')
    ['a']
    >>> repeated_keys('{"a": 1, "b": 2}')
    []
    >>> repeated_keys(b'{"a": [{"b": 1, "b": 2}, {"b": 3}], "c": {"d": 1}}')
    ['b']
    >>> repeated_keys(b'{"\\\\q": 1, "\\xff": 2}')  # broken escapes or bytes: no error
    []
    """
    repeated: set[str] = set()

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        counts = Counter(key for key, _ in items)
        repeated.update(key for key, n in counts.items() if n > 1)
        return dict(items)

    try:
        json.loads(raw, object_pairs_hook=pairs)
    except ValueError:  # (UnicodeDecodeError is one)
        return []
    return sorted(repeated)


def validation_errors(exc: ValidationError) -> list[tuple[str, str]]:
    """(field, reason) pairs of a pydantic error; ``<record>`` for the whole."""
    pairs = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"]) or "<record>"
        pairs.append((field, error["msg"]))
    return pairs


def encode(record: BaseModel) -> bytes:
    """Compact JSON bytes of a record (pydantic's own serializer: half the cost of
    ``json.dumps`` of ``model_dump``, the same bytes for our records)."""
    return record.model_dump_json(exclude_none=True).encode()
