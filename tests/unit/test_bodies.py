"""The scoring routes' bodies and flags, read once (stream.serving.bodies)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.exceptions import RequestValidationError

from features.events import Transaction
from producers.schema import TransactionRecord, encode
from stream.serving.bodies import read_body, read_flag
from stream.serving.schemas import ScoreBatch

TXNS = [
    Transaction(f"t{i}", f"c{i}", "p1", 10.0 + i, 1.767e9 + i, lat=45.0, lon=5.0) for i in range(3)
]


def _errors(raw: bytes, model: Any) -> list[dict[str, Any]]:
    with pytest.raises(RequestValidationError) as caught:
        read_body(raw, model)
    return list(caught.value.errors())


def test_a_valid_body_reads_as_its_model_whatever_the_spacing() -> None:
    raw = encode(TransactionRecord.from_event(TXNS[0]))
    assert read_body(raw, TransactionRecord).to_event() == TXNS[0]
    spaced = json.dumps(json.loads(raw), indent=2).encode()  # '"key" :' never, ': ' and newlines
    assert read_body(spaced, TransactionRecord).to_event() == TXNS[0]
    batch = json.dumps(
        {"transactions": [json.loads(encode(TransactionRecord.from_event(t))) for t in TXNS]}
    ).encode()
    assert [t.to_event() for t in read_body(batch, ScoreBatch).transactions] == TXNS


def test_a_key_given_twice_is_refused_in_any_object_of_a_batch() -> None:
    items = [json.loads(encode(TransactionRecord.from_event(t))) for t in TXNS]
    text = json.dumps({"transactions": items})
    # the third transaction's amount twice (the last one would win silently)
    at = text.rindex('"amount"')
    twice = text[:at] + '"amount": 1.0, ' + text[at:]
    errors = _errors(twice.encode(), ScoreBatch)
    assert errors == [
        {"loc": ("body", "amount"), "msg": "given more than once", "type": "duplicate_key"}
    ]
    # spaced before the colon: the count cannot tell, the objects are looked at one by one
    spaced = text.replace('": ', '" : ')
    assert len(read_body(spaced.encode(), ScoreBatch).transactions) == 3
    assert _errors(
        spaced.replace('"card_id" :', '"card_id" : "x", "card_id" :', 1).encode(), ScoreBatch
    )


def test_invalid_bodies_name_the_field_and_never_echo_the_input() -> None:
    item = json.loads(encode(TransactionRecord.from_event(TXNS[0])))
    errors = _errors(json.dumps({**item, "amount": "12.5"}).encode(), TransactionRecord)
    assert [e["loc"] for e in errors] == [("body", "amount")]
    assert all(set(e) == {"loc", "msg", "type"} for e in errors)
    nested = _errors(
        json.dumps({"transactions": [item, {**item, "lat": None}]}).encode(), ScoreBatch
    )
    assert nested[0]["loc"][:3] == ("body", "transactions", 1)
    assert _errors(b"not json", TransactionRecord)[0]["type"] == "json_invalid"
    assert _errors(b"", TransactionRecord)[0]["loc"] == ("body",)


def test_flags_read_as_fastapi_reads_a_bool_and_refuse_anything_else() -> None:
    for text, value in [("true", True), ("1", True), ("on", True), ("false", False), ("0", False)]:
        assert read_flag({"features": text}, "features") is value
    assert read_flag({}, "features") is False
    with pytest.raises(RequestValidationError) as caught:
        read_flag({"explain": "maybe"}, "explain")
    assert caught.value.errors()[0]["loc"] == ("query", "explain")
