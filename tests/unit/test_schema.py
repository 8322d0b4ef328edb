"""Wire schemas reject bad records naming the field and the reason."""

from __future__ import annotations

import json

import pytest

from features.events import Transaction
from producers.schema import (
    RecordError,
    TransactionRecord,
    decode_label,
    decode_transaction,
    encode,
)

GOOD = {
    "schema_version": 1,
    "txn_id": "t1",
    "card_id": "c1",
    "terminal_id": "p1",
    "amount": 12.5,
    "event_time": "2026-01-01T00:00:00+00:00",
}


def raw(**changes: object) -> bytes:
    return json.dumps({**GOOD, **changes}).encode()


def test_a_valid_transaction_decodes_to_the_core_event() -> None:
    assert decode_transaction(raw()) == Transaction("t1", "c1", "p1", 12.5, 1767225600.0)


def test_encode_then_decode_gives_the_same_event() -> None:
    event = Transaction("t9", "c9", "p9", 3.25, 1767225600.5)
    assert decode_transaction(encode(TransactionRecord.from_event(event))) == event


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"amount": -1}, "amount", "greater than or equal to 0"),
        ({"amount": "NaN"}, "amount", "valid number"),
        ({"amount": float("inf")}, "amount", "finite number"),
        # strict types: nothing is coerced (issue 17, item 9)
        ({"amount": "12.5"}, "amount", "valid number"),
        ({"amount": True}, "amount", "valid number"),
        ({"schema_version": True}, "schema_version", "valid integer"),
        ({"schema_version": 1.0}, "schema_version", "valid integer"),
        ({"event_time": 1767225600}, "event_time", "RFC 3339"),
        ({"event_time": "2026-01-01 00:00:00Z"}, "event_time", "RFC 3339"),
        ({"lat": 10.0, "lon": False}, "lon", "valid number"),
        ({"card_id": ""}, "card_id", "at least 1 character"),
        ({"card_id": "has space"}, "card_id", "pattern"),
        ({"event_time": "2026-01-01T00:00:00"}, "event_time", "timezone"),
        ({"schema_version": 2}, "schema_version", "1"),
        ({"surprise": 1}, "surprise", "Extra inputs are not permitted"),
        ({"amount": 2e7}, "amount", "less than or equal to 10000000"),
        ({"lat": 91.0, "lon": 0.0}, "lat", "less than or equal to 90"),
        ({"lat": 10.0, "lon": -181.0}, "lon", "greater than or equal to -180"),
    ],
)
def test_a_bad_field_is_rejected_with_its_name_and_reason(
    change: dict[str, object], field: str, reason: str
) -> None:
    with pytest.raises(RecordError) as caught:
        decode_transaction(raw(**change))
    assert [f for f, _ in caught.value.errors] == [field]
    assert reason in caught.value.errors[0][1]


def test_a_missing_field_and_non_json_are_named() -> None:
    with pytest.raises(RecordError, match="amount: Field required"):
        decode_transaction(json.dumps({k: v for k, v in GOOD.items() if k != "amount"}))
    with pytest.raises(RecordError, match="schema_version: Field required"):
        decode_transaction(json.dumps({k: v for k, v in GOOD.items() if k != "schema_version"}))
    with pytest.raises(RecordError, match="Invalid JSON"):
        decode_transaction(b"not json")


def test_a_label_requires_a_boolean_truth() -> None:
    label = {"schema_version": 1, "txn_id": "t1", "event_time": "2026-01-02T00:00:00Z"}
    assert decode_label(json.dumps({**label, "is_fraud": True})).is_fraud is True
    with pytest.raises(RecordError, match="is_fraud"):
        decode_label(json.dumps({**label, "is_fraud": "perhaps"}))
    with pytest.raises(RecordError, match="is_fraud: Input should be a valid boolean"):
        decode_label(json.dumps({**label, "is_fraud": 1}))


def test_a_key_given_twice_is_refused_not_last_one_wins() -> None:
    twice = raw()[:-1] + b', "card_id": "c2"}'
    with pytest.raises(RecordError, match="card_id: given more than once"):
        decode_transaction(twice)
    escaped = raw()[:-1] + b', "\\u0063ard_id": "c2"}'  # the same key, spelled with an escape
    with pytest.raises(RecordError, match="card_id: given more than once"):
        decode_transaction(escaped)


def test_a_location_comes_whole_and_rounded_to_a_metre() -> None:
    with pytest.raises(RecordError, match="lon is required when the other coordinate is given"):
        decode_transaction(raw(lat=48.85))
    txn = decode_transaction(raw(lat=48.8566141, lon=2.3522219))
    assert (txn.lat, txn.lon) == (48.85661, 2.35222)
    assert decode_transaction(encode(TransactionRecord.from_event(txn))) == txn
