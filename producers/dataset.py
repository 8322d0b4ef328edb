"""Datasets on disk: our own Parquet, and foreign CSV/Parquet through a column mapping.

Our format (``fraudstream simulate-data``) is a folder with
``transactions.parquet`` (one row per transaction, ground truth included),
``labels.parquet`` (arrival order) and ``manifest.json``. Event times are
stored as UTC timestamps (milliseconds).

A foreign file has its own column names and types. A :class:`ColumnMapping`
(a small YAML/JSON file, or ``name=column`` pairs on the command line) says
which column is which. Every row is checked; a row that does not fit is
reported with its row number and reason and is not replayed, never dropped
silently. A missing required column is an error naming it.

Examples
--------
>>> m = ColumnMapping.from_pairs(["txn_id=id", "card_id=cc_num", "event_time=ts",
...                               "amount=amt", "is_fraud=fraud"])
>>> m.txn_id, m.time_format
('id', 'iso')
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from producers.generator import Simulation

TRANSACTIONS = "transactions.parquet"
LABELS = "labels.parquet"
MANIFEST = "manifest.json"
_ID = r"^[A-Za-z0-9_.:\-]{1,128}$"


class DatasetError(ValueError):
    """A dataset or mapping that cannot be used, with the reason."""


def write_dataset(simulation: Simulation, manifest: dict[str, Any], folder: Path) -> Path:
    """Write the transactions, labels and manifest into ``folder``; return ``folder``.

    Parameters
    ----------
    simulation
        The simulated transactions and labels (event times in epoch seconds, stored as
        UTC timestamps in milliseconds).
    manifest
        The scenario's ground truth, written as ``manifest.json``.
    folder
        The dataset folder (created if missing; existing files are overwritten).
    """
    folder.mkdir(parents=True, exist_ok=True)
    _with_datetimes(simulation.transactions).write_parquet(folder / TRANSACTIONS)
    _with_datetimes(simulation.labels).write_parquet(folder / LABELS)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return folder


def read_dataset(folder: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Transactions and labels of a dataset folder, times as epoch seconds."""
    if not (folder / TRANSACTIONS).is_file():
        raise DatasetError(f"{folder}: no {TRANSACTIONS} (write one with simulate-data)")
    transactions = _with_seconds(pl.read_parquet(folder / TRANSACTIONS))
    labels_path = folder / LABELS
    labels = (
        _with_seconds(pl.read_parquet(labels_path))
        if labels_path.is_file()
        else pl.DataFrame(
            schema={"txn_id": pl.Utf8, "is_fraud": pl.Boolean, "event_time": pl.Float64}
        )
    )
    return transactions, labels


class ColumnMapping(BaseModel):
    """Which foreign column holds each field we need (optional ones may be absent)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    txn_id: str
    card_id: str
    event_time: str
    amount: str
    terminal_id: str | None = None
    lat: str | None = None
    lon: str | None = None
    #: A fraud flag column: labels are then replayed ``label_delay_days`` later.
    is_fraud: str | None = None
    #: ``iso``, ``epoch_s``, ``epoch_ms`` or a strftime pattern (read as UTC).
    time_format: str = "iso"
    label_delay_days: float = Field(7.0, ge=0)

    @classmethod
    def from_file(cls, path: Path) -> ColumnMapping:
        try:
            return cls._validated(yaml.safe_load(path.read_text()), str(path))
        except (OSError, yaml.YAMLError) as exc:
            raise DatasetError(f"{path}: cannot read the mapping: {exc}") from None

    @classmethod
    def from_pairs(cls, pairs: list[str]) -> ColumnMapping:
        raw = {}
        for pair in pairs:
            name, sep, column = pair.partition("=")
            if not sep or not name or not column:
                raise DatasetError(f"--map {pair!r}: expected field=column")
            raw[name.strip()] = column.strip()
        return cls._validated(raw, "--map")

    @classmethod
    def _validated(cls, raw: Any, where: str) -> ColumnMapping:
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            reasons = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '<mapping>'}: {e['msg']}"
                for e in exc.errors()
            )
            raise DatasetError(f"{where}: {reasons}") from None


@dataclass(frozen=True)
class Foreign:
    """A foreign file, mapped: good rows, their labels, and the rows left out (and why)."""

    transactions: pl.DataFrame
    labels: pl.DataFrame
    rejected: list[tuple[int, str]]


def read_foreign(path: Path, mapping: ColumnMapping) -> Foreign:
    """Read ``path`` (CSV or Parquet) through ``mapping``; check every row.

    Parameters
    ----------
    path
        The foreign file: Parquet if it ends in ``.parquet``, else CSV.
    mapping
        Which of its columns holds each field, and how its times are written.
    """
    frame = _read_any(path)
    used = {
        k: v
        for k, v in mapping.model_dump().items()
        if k not in ("time_format", "label_delay_days") and v is not None
    }
    missing = sorted({c for c in used.values() if c not in frame.columns})
    if missing:
        raise DatasetError(
            f"{path}: column(s) {', '.join(missing)} named in the mapping are not "
            f"in the file (it has: {', '.join(frame.columns)})"
        )
    if (mapping.lat is None) != (mapping.lon is None):
        raise DatasetError("mapping: lat and lon are mapped together or not at all")
    data = frame.select(
        pl.int_range(1, frame.height + 1).alias("row"),
        *(pl.col(column).cast(pl.Utf8).alias(name) for name, column in used.items()),
    )
    checked = data.with_columns(
        pl.col("amount").str.strip_chars().cast(pl.Float64, strict=False).alias("amount_value"),
        _parse_time(mapping.time_format).alias("time_value"),
        *(
            [
                pl.col("lat").cast(pl.Float64, strict=False).alias("lat_value"),
                pl.col("lon").cast(pl.Float64, strict=False).alias("lon_value"),
            ]
            if mapping.lat
            else []
        ),
    ).with_columns(_reason(mapping).alias("reason"))
    rejected = [
        (int(r), str(why))
        for r, why in checked.filter(pl.col("reason") != "").select("row", "reason").iter_rows()
    ]
    good = checked.filter(pl.col("reason") == "")
    transactions = good.select(
        "txn_id",
        "card_id",
        (pl.col("terminal_id") if mapping.terminal_id else pl.lit("unknown")).alias("terminal_id"),
        pl.col("amount_value").round(2).alias("amount"),
        pl.col("time_value").alias("event_time"),
        *(
            [pl.col("lat_value").round(5).alias("lat"), pl.col("lon_value").round(5).alias("lon")]
            if mapping.lat
            else []
        ),
    ).sort("event_time", maintain_order=True)
    labels = pl.DataFrame(
        schema={"txn_id": pl.Utf8, "is_fraud": pl.Boolean, "event_time": pl.Float64}
    )
    if mapping.is_fraud:
        labels = good.select(
            "txn_id",
            _truth("is_fraud").alias("is_fraud"),
            (pl.col("time_value") + mapping.label_delay_days * 86400).alias("event_time"),
        ).sort("event_time", maintain_order=True)
    return Foreign(transactions, labels, rejected)


def _read_any(path: Path) -> pl.DataFrame:
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    if path.suffix == ".parquet":
        return pl.read_parquet(path)
    try:
        return pl.read_csv(path, infer_schema=False)
    except pl.exceptions.PolarsError as exc:
        raise DatasetError(f"{path}: not a readable CSV: {exc}") from None


def _parse_time(time_format: str) -> pl.Expr:
    text = pl.col("event_time").str.strip_chars()
    if time_format in ("epoch_s", "epoch_ms"):
        scale = 1.0 if time_format == "epoch_s" else 1e-3
        return (text.cast(pl.Float64, strict=False) * scale).round(3)
    if time_format == "iso":
        parsed = text.str.to_datetime(time_zone="UTC", strict=False, time_unit="ms")
    else:
        parsed = text.str.to_datetime(
            time_format, strict=False, time_unit="ms"
        ).dt.replace_time_zone("UTC")
    exact = parsed.dt.epoch("ms").map_batches(  # ms / 1000 in numpy: correctly rounded
        lambda s: pl.Series(s.cast(pl.Float64).to_numpy() / 1000), return_dtype=pl.Float64
    )
    return exact.fill_nan(None)


def _truth(column: str) -> pl.Expr:
    return pl.col(column).str.strip_chars().str.to_lowercase().is_in(["1", "true", "yes", "t"])


def _reason(mapping: ColumnMapping) -> pl.Expr:
    """Why a row is left out (empty if it is fine): the first problem found, by field."""
    checks: list[tuple[pl.Expr, str]] = [
        (~pl.col("txn_id").fill_null("").str.contains(_ID), "txn_id: missing or not a valid id"),
        (~pl.col("card_id").fill_null("").str.contains(_ID), "card_id: missing or not a valid id"),
        (pl.col("time_value").is_null(), f"event_time: not a time in format {mapping.time_format}"),
        (pl.col("amount_value").is_null(), "amount: not a number"),
        (~pl.col("amount_value").is_between(0, 1e7), "amount: must be between 0 and 10,000,000"),
    ]
    if mapping.terminal_id:
        checks.append(
            (
                ~pl.col("terminal_id").fill_null("").str.contains(_ID),
                "terminal_id: missing or not a valid id",
            )
        )
    if mapping.lat:
        checks.append(
            (
                ~pl.col("lat_value").is_between(-90, 90) & pl.col("lat").is_not_null(),
                "lat: not a latitude",
            )
        )
        checks.append(
            (
                ~pl.col("lon_value").is_between(-180, 180) & pl.col("lon").is_not_null(),
                "lon: not a longitude",
            )
        )
    if mapping.is_fraud:
        known = ["1", "0", "true", "false", "yes", "no", "t", "f"]
        checks.append(
            (
                ~pl.col("is_fraud").fill_null("").str.strip_chars().str.to_lowercase().is_in(known),
                "is_fraud: not a boolean (1/0, true/false, yes/no)",
            )
        )
    reason: pl.Expr = pl.lit("")
    for failed, why in reversed(checks):
        reason = pl.when(failed.fill_null(True)).then(pl.lit(why)).otherwise(reason)
    return reason


def _with_datetimes(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        pl.from_epoch((pl.col("event_time") * 1000).round().cast(pl.Int64), time_unit="ms")
        .dt.replace_time_zone("UTC")
        .alias("event_time")
    )


def _with_seconds(frame: pl.DataFrame) -> pl.DataFrame:
    if frame.schema["event_time"] == pl.Float64:
        return frame
    millis = frame["event_time"].dt.epoch("ms").to_numpy()
    return frame.with_columns(pl.Series("event_time", millis / 1000))  # exact: ms / 1000
