"""Foreign CSV/Parquet through a column mapping: good rows in, bad rows named, never dropped."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from producers.dataset import ColumnMapping, DatasetError, read_foreign
from producers.events import encode_events
from producers.schema import RecordError, decode_label, decode_transaction

CSV = """id,cc_num,merchant,amt,trans_date,is_fraud,merch_lat,merch_long
a1,4000111,m_1,12.50,2026-03-01 10:00:00,0,48.85,2.35
a2,4000111,m_2,99.99,2026-03-01 09:00:00,1,48.86,2.36
a3,4000222,m_1,lots,2026-03-01 11:00:00,0,48.85,2.35
a4,4000222,m_1,5.00,yesterday,0,48.85,2.35
a5,,m_3,7.00,2026-03-01 12:00:00,0,48.85,2.35
a6,4000333,m_3,8.00,2026-03-01 12:30:00,maybe,48.85,2.35
a7,4000333,m_3,9.00,2026-03-01 13:00:00,0,95.0,2.35
"""

MAPPING = """
txn_id: id
card_id: cc_num
terminal_id: merchant
amount: amt
event_time: trans_date
time_format: "%Y-%m-%d %H:%M:%S"
is_fraud: is_fraud
lat: merch_lat
lon: merch_long
label_delay_days: 3
"""


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "data.csv").write_text(CSV)
    (tmp_path / "mapping.yaml").write_text(MAPPING)
    return tmp_path / "data.csv", tmp_path / "mapping.yaml"


def test_good_rows_are_mapped_and_bad_rows_reported_by_number(files: tuple[Path, Path]) -> None:
    data, mapping = files
    foreign = read_foreign(data, ColumnMapping.from_file(mapping))
    assert foreign.transactions["txn_id"].to_list() == ["a2", "a1"]  # in time order
    assert foreign.rejected == [
        (3, "amount: not a number"),
        (4, "event_time: not a time in format %Y-%m-%d %H:%M:%S"),
        (5, "card_id: missing or not a valid id"),
        (6, "is_fraud: not a boolean (1/0, true/false, yes/no)"),
        (7, "lat: not a latitude"),
    ]
    labels = foreign.labels
    assert labels["txn_id"].to_list() == ["a2", "a1"] and labels["is_fraud"].to_list() == [
        True,
        False,
    ]
    times = dict(
        zip(foreign.transactions["txn_id"], foreign.transactions["event_time"], strict=True)
    )
    assert labels["event_time"][0] - times["a2"] == 3 * 86400


def test_mapped_rows_encode_to_records_the_worker_accepts(files: tuple[Path, Path]) -> None:
    data, mapping = files
    foreign = read_foreign(data, ColumnMapping.from_file(mapping))
    events = encode_events(foreign.transactions, foreign.labels)
    first = decode_transaction(events["value"][0])
    assert (first.txn_id, first.card_id, first.terminal_id, first.amount) == (
        "a2",
        "4000111",
        "m_2",
        99.99,
    )
    assert (first.lat, first.lon) == (48.86, 2.36)
    assert decode_label(events.filter(pl.col("kind") == 1)["value"][0]).txn_id == "a2"


def test_ids_that_need_escaping_are_valid_json_and_rejected_by_the_schema_by_name() -> None:
    """The wire JSON is encoded, not concatenated: a quote in an id cannot break the
    record; the worker's decoder then names the field."""
    transactions = pl.DataFrame(
        {
            "txn_id": ['t"1'],
            "card_id": ["c\\1"],
            "terminal_id": ["p1"],
            "amount": [5.0],
            "event_time": [1_767_225_600.0],
        }
    )
    labels = pl.DataFrame({"txn_id": ['t"1'], "is_fraud": [True], "event_time": [1_767_312_000.0]})
    events = encode_events(transactions, labels)
    values = [json.loads(v) for v in events["value"]]
    assert values[0]["txn_id"] == 't"1' and values[0]["card_id"] == "c\\1"
    assert values[1] == {
        "schema_version": 1,
        "txn_id": 't"1',
        "is_fraud": True,
        "event_time": "2026-01-02T00:00:00.000Z",
        "card_id": "c\\1",
    }
    with pytest.raises(RecordError, match="txn_id"):
        decode_transaction(events["value"][0])


def test_a_missing_column_is_named(files: tuple[Path, Path]) -> None:
    data, _ = files
    mapping = ColumnMapping.from_pairs(
        ["txn_id=id", "card_id=card", "event_time=trans_date", "amount=amt"]
    )
    with pytest.raises(DatasetError, match="column\\(s\\) card named in the mapping"):
        read_foreign(data, mapping)


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["txn_id=id"], "card_id: Field required"),
        (["txn_id"], "expected field=column"),
        (["txn_id=id", "card_id=c", "event_time=t", "amount=a", "colour=x"], "colour"),
    ],
)
def test_a_bad_mapping_says_what_is_wrong(pairs: list[str], message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        ColumnMapping.from_pairs(pairs)


def test_epoch_times_and_parquet_files_work(tmp_path: Path) -> None:
    pl.DataFrame(
        {
            "i": ["x1", "x2"],
            "c": ["k1", "k1"],
            "v": [1.5, 2.5],
            "ts": [1767225600000, 1767225601000],
        }
    ).write_parquet(tmp_path / "d.parquet")
    mapping = ColumnMapping.from_pairs(
        ["txn_id=i", "card_id=c", "amount=v", "event_time=ts", "time_format=epoch_ms"]
    )
    foreign = read_foreign(tmp_path / "d.parquet", mapping)
    assert foreign.rejected == []
    assert foreign.transactions["event_time"].to_list() == [1767225600.0, 1767225601.0]
    assert foreign.transactions["terminal_id"].to_list() == ["unknown", "unknown"]
