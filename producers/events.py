"""Transactions and labels as Kafka records: key, value and time, encoded column-wise.

Events are interleaved by their own times (a transaction's event time, a
label's arrival time; a transaction first on a tie) and carry them in the
record. Transactions are keyed by card id, labels by transaction id.
Records are encoded column-wise with polars (the same JSON the wire schemas
accept).

Examples
--------
>>> import polars as pl
>>> txns = pl.DataFrame({"txn_id": ["t1"], "card_id": ["c1"], "terminal_id": ["p1"],
...                      "amount": [9.5], "event_time": [1767225600.0]})
>>> labels = pl.DataFrame({"txn_id": ["t1"], "is_fraud": [True], "event_time": [1767229200.0]})
>>> events = encode_events(txns, labels)
>>> events["value"][0]
'{"schema_version":1,"txn_id":"t1","card_id":"c1","terminal_id":"p1","amount":9.5,"event_time":"2026-01-01T00:00:00.000Z"}'
>>> from producers.schema import decode_label
>>> decode_label(events["value"][1]).card_id  # the label names its transaction's card
'c1'
>>> decode_label(events["value"][1]).is_fraud
True
"""

from __future__ import annotations

import polars as pl

from producers.schema import SCHEMA_VERSION


def _iso(column: str) -> pl.Expr:
    millis = (pl.col(column) * 1000).round().cast(pl.Int64)
    return (
        pl.from_epoch(millis, time_unit="ms")
        .dt.replace_time_zone("UTC")
        .dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
    )


def encode_events(transactions: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """Every event as (time, kind, topic index, key, value), in replay order.

    ``kind`` 0 is a transaction (topic 0), 1 a label (topic 1). The values are the wire
    JSON (polars encodes it: any id is escaped as JSON needs; a missing location or card
    is ``null``).

    Parameters
    ----------
    transactions
        Columns ``txn_id``, ``card_id``, ``terminal_id``, ``amount``, ``event_time``
        (epoch seconds) and optionally ``lat`` and ``lon`` (degrees).
    labels
        Columns ``txn_id``, ``is_fraud``, ``event_time`` (the arrival, epoch seconds) and
        optionally ``card_id`` (else taken from ``transactions``).
    """
    fields = [
        pl.lit(SCHEMA_VERSION).alias("schema_version"),
        "txn_id",
        "card_id",
        "terminal_id",
        pl.col("amount").cast(pl.Float64),
        _iso("event_time"),
    ]
    if "lat" in transactions.columns and "lon" in transactions.columns:
        located = pl.col("lat").is_not_null() & pl.col("lon").is_not_null()
        fields += [
            pl.when(located).then(pl.col(c).cast(pl.Float64)).alias(c) for c in ("lat", "lon")
        ]
    txn_events = transactions.select(
        pl.col("event_time").alias("time"),
        pl.lit(0, pl.Int8).alias("kind"),
        pl.col("card_id").alias("key"),
        pl.struct(fields).struct.json_encode().alias("value"),
    )
    if "card_id" not in labels.columns:  # a label names its card when it is known
        labels = labels.join(
            transactions.select("txn_id", "card_id"), on="txn_id", how="left", maintain_order="left"
        )
    label_events = labels.select(
        pl.col("event_time").alias("time"),
        pl.lit(1, pl.Int8).alias("kind"),
        pl.col("txn_id").alias("key"),
        pl.struct(
            pl.lit(SCHEMA_VERSION).alias("schema_version"),
            "txn_id",
            pl.col("is_fraud").cast(pl.Boolean),
            _iso("event_time"),
            "card_id",
        )
        .struct.json_encode()
        .alias("value"),
    )
    return pl.concat([txn_events, label_events]).sort(["time", "kind"], maintain_order=True)
