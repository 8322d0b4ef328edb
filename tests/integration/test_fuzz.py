"""A Kafka fuzz run on the real broker: hypothesis draws a few thousand records, good
transactions interleaved with every kind of bad one the hardening issue found (poison
timestamps, lax types, repeated keys, huge binary values, far-future events, a txn id
reused on another card...), all sent to the transactions and labels topics, then one real
worker reads them.

The worker must not stall or crash; each bad record must be on the dead-letter topic
exactly once, naming its field (or reason); the worker's dead-letter metric must equal
the topic; and every good transaction must be scored.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka import KafkaProducer

from stream.runtime.topics import ensure_topics
from stream.settings import Settings
from tests.support import (
    Processes,
    RealServers,
    isolated_settings,
    read_metric,
    read_topic,
    scored_ids,
    wait_for,
)

pytestmark = pytest.mark.integration

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
REQUIRED = ("schema_version", "txn_id", "card_id", "terminal_id", "amount", "event_time")


def iso(seconds: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Sent:
    """A record to send, and what the worker must make of it."""

    topic: str  # "transactions" or "labels"
    key: bytes
    value: bytes
    #: None: a good record (scored, or learned); else (reason, what the detail names).
    expect: tuple[str, str] | None


@dataclass
class Corpus:
    records: list[Sent] = field(default_factory=list)
    good: dict[str, dict[str, Any]] = field(default_factory=dict)
    clock: int = 0

    def good_txn(self, card: int, terminal: int, amount: float) -> dict[str, Any]:
        self.clock += 37
        txn: dict[str, Any] = {
            "schema_version": 1,
            "txn_id": f"g{len(self.good)}",
            "card_id": f"c{card}",
            "terminal_id": f"p{terminal}",
            "amount": round(amount, 2),
            "event_time": iso(T0 + self.clock),
        }
        self.good[txn["txn_id"]] = txn
        self.records.append(
            Sent("transactions", txn["card_id"].encode(), json.dumps(txn).encode(), None)
        )
        return txn


def _dump(record: dict[str, Any]) -> bytes:
    return json.dumps(record).encode()


#: Mutations of a good transaction: (name, how, reason, field the detail names).
def _mutations() -> st.SearchStrategy[tuple[bytes, tuple[str, str]]]:
    def base(extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "txn_id": "b",
            "card_id": "cb",
            "terminal_id": "pb",
            "amount": 10.0,
            "event_time": iso(T0 + 60),
            **(extra or {}),
        }

    def dropped(key: str) -> tuple[bytes, tuple[str, str]]:
        record = base()
        del record[key]
        return _dump(record), ("invalid_record", f"{key}: Field required")

    def changed(key: str, value: Any) -> tuple[bytes, tuple[str, str]]:
        return _dump(base({key: value})), ("invalid_record", f"{key}:")

    def repeated(key: str) -> tuple[bytes, tuple[str, str]]:
        text = json.dumps(base())[:-1] + f', "{key}": ' + json.dumps(base()[key]) + "}"
        return text.encode(), ("invalid_record", f"{key}: given more than once")

    not_json = (
        st.binary(max_size=300)
        .filter(lambda b: not _is_object(b))
        .map(lambda b: (b, ("invalid_record", "<record>")))
    )
    lax = st.sampled_from(
        [
            ("amount", "12.5"),
            ("amount", True),
            ("amount", None),
            ("amount", -1),
            ("amount", 2e7),
            ("schema_version", True),
            ("schema_version", 1.0),
            ("schema_version", "1"),
            ("schema_version", 2),
            ("event_time", T0),
            ("event_time", "2026-01-01 00:00:00Z"),
            ("event_time", "2026-01-01T00:00:00"),
            ("event_time", "9999-12-31T23:59:59-23:59"),
            ("event_time", "0001-01-01T00:00:00+01:00"),
            ("event_time", "2099-01-01T00:00:00Z"),
            ("event_time", "yesterday"),
            ("card_id", ""),
            ("card_id", "has space"),
            ("card_id", "x" * 200),
            ("txn_id", "\u0000"),
            ("terminal_id", 7),
            ("lat", 91.0),
        ]
    ).map(lambda kv: changed(*kv))
    texts = (
        st.tuples(st.sampled_from(["amount", "card_id", "event_time"]), st.text(max_size=40))
        .filter(
            lambda kv: (
                kv[0] == "amount" or not re.fullmatch(r"[A-Za-z0-9_.:\-]{1,128}|\d{4}-.*", kv[1])
            )
        )
        .map(lambda kv: changed(*kv))
    )
    extra = (
        st.from_regex(r"\A[a-z]{3,12}\Z")
        .filter(lambda k: k not in (*REQUIRED, "lat", "lon"))
        .map(lambda k: (_dump(base({k: 1})), ("invalid_record", f"{k}: Extra inputs")))
    )
    return st.one_of(
        not_json,
        lax,
        texts,
        extra,
        st.sampled_from(REQUIRED).map(dropped),
        st.sampled_from(REQUIRED[1:]).map(repeated),
    )


def _is_object(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except ValueError:
        return False


#: Bad labels, with the field their dead letter names.
BAD_LABELS = [
    (
        b'{"schema_version":1,"txn_id":"x","is_fraud":1,"event_time":"2026-01-02T00:00:00Z"}',
        "is_fraud:",
    ),
    (
        b'{"schema_version":1,"txn_id":"x","is_fraud":"true","event_time":"2026-01-02T00:00:00Z"}',
        "is_fraud:",
    ),
    (
        b'{"txn_id":"x","is_fraud":true,"event_time":"2026-01-02T00:00:00Z"}',
        "schema_version: Field required",
    ),
    (b"\xff\xfe not json", "<record>"),
]


def _draw_corpus() -> Corpus:
    corpus = Corpus()

    @given(
        st.lists(
            st.one_of(
                st.tuples(
                    st.just("good"),
                    st.integers(0, 40),
                    st.integers(0, 15),
                    st.floats(0, 5_000, allow_nan=False),
                ),
                st.tuples(st.just("bad"), _mutations()),
                st.tuples(st.just("reused"), st.integers(0, 10_000)),
                st.tuples(st.just("label"), st.booleans(), st.sampled_from(BAD_LABELS)),
            ),
            min_size=20,
            max_size=40,
        )
    )
    @settings(
        max_examples=100, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def draw(steps: list[tuple[Any, ...]]) -> None:
        for step in steps:
            if step[0] == "good":
                corpus.good_txn(step[1], step[2], step[3])
            elif step[0] == "bad":
                raw, expect = step[1]
                corpus.records.append(Sent("transactions", b"bad", raw, expect))
            elif step[0] == "reused" and corpus.good:
                first = list(corpus.good.values())[step[1] % len(corpus.good)]
                other = {**first, "card_id": first["card_id"] + "x"}
                # keyed as the first, so it comes after it (same partition)
                corpus.records.append(
                    Sent(
                        "transactions",
                        first["card_id"].encode(),
                        _dump(other),
                        ("conflicting_duplicate", first["txn_id"]),
                    )
                )
            elif step[0] == "label":
                good_label, bad = step[1], step[2]
                if good_label and corpus.good:
                    txn = list(corpus.good.values())[-1]
                    label = {
                        "schema_version": 1,
                        "txn_id": txn["txn_id"],
                        "is_fraud": False,
                        "event_time": txn["event_time"],
                    }
                    corpus.records.append(
                        Sent("labels", txn["card_id"].encode(), _dump(label), None)
                    )
                else:
                    raw, named = bad
                    corpus.records.append(Sent("labels", b"bad", raw, ("invalid_record", named)))

    draw()
    for huge in (b"\xff" * 300_000, b"x" * 250_000, b"\x00\xfe" * 60_000):  # over the limit
        corpus.records.append(Sent("transactions", b"huge", huge, ("invalid_record", "<record>")))
    return corpus


@dataclass
class Outcome:
    corpus: Corpus
    settings: Settings
    offsets: dict[tuple[str, int, int], Sent]
    letters: list[dict[str, Any]]
    alive: bool
    log: str


@pytest.fixture(scope="module")
def fuzzed(
    real_servers: RealServers, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Outcome]:
    corpus = _draw_corpus()
    folder = Path(tmp_path_factory.mktemp("fuzz"))
    (folder / "corpus.jsonl").write_text(
        "\n".join(
            json.dumps(
                {
                    "topic": r.topic,
                    "value": r.value.decode("utf-8", "replace")[:500],
                    "expect": r.expect,
                }
            )
            for r in corpus.records
        )
    )
    settings = isolated_settings(real_servers)
    ensure_topics(settings)
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers, max_request_size=1 << 20
    )
    futures = [
        (r, producer.send(settings.topics.name(r.topic), key=r.key, value=r.value))
        for r in corpus.records
    ]
    producer.flush()
    offsets = {}
    for record, future in futures:
        meta = future.get(timeout=30)
        offsets[(meta.topic, meta.partition, meta.offset)] = record
    producer.close()
    bad = sum(r.expect is not None for r in corpus.records)
    processes = Processes(folder)
    try:
        worker = processes.start("worker", settings)
        port = settings.worker.metrics_port

        def dead_letters() -> float:
            return sum(
                read_metric(port, "fraudstream_dead_letters_total", topic=t, reason=reason) or 0.0
                for t in ("transactions", "labels")
                for reason in ("invalid_record", "conflicting_duplicate")
            )

        wait_for(lambda: dead_letters() >= bad, 180, f"{bad} dead letters counted")
        good = {t for t, r in corpus.good.items()}
        assert scored_ids(settings, len(good), timeout_ms=30_000) >= good
        letters = read_topic(settings, settings.topics.name("dead_letters"))
        counted = dead_letters()
        print(
            f"fuzz: {len(corpus.records)} records ({len(corpus.good)} good transactions, "
            f"{bad} bad); {len(letters)} dead letters on the topic, {counted:.0f} counted"
        )
        yield Outcome(
            corpus, settings, offsets, letters, worker.poll() is None, processes.log("worker")
        )
    finally:
        processes.stop_all()


def test_the_worker_neither_crashed_nor_stalled(fuzzed: Outcome) -> None:
    assert fuzzed.alive, fuzzed.log[-3000:]
    assert "Crashed" not in fuzzed.log


def test_each_bad_record_is_dead_lettered_exactly_once_naming_its_field(fuzzed: Outcome) -> None:
    seen = Counter(
        (letter["source_topic"], letter["partition"], letter["offset"]) for letter in fuzzed.letters
    )
    assert [where for where, n in seen.items() if n > 1] == []
    expected = {where: r for where, r in fuzzed.offsets.items() if r.expect is not None}
    assert set(seen) == set(expected)
    for letter in fuzzed.letters:
        record = expected[(letter["source_topic"], letter["partition"], letter["offset"])]
        assert record.expect is not None
        reason, named = record.expect
        assert letter["reason"] == reason, (letter, record.value[:200])
        assert named in letter["detail"], (letter["detail"], record.value[:200])
        if "truncated" not in letter:  # kept byte for byte
            value = letter["value"]
            kept = value.encode() if letter["encoding"] == "utf-8" else base64.b64decode(value)
            assert kept == record.value
        else:
            assert letter["sha256"] == hashlib.sha256(record.value).hexdigest()


def test_the_metric_equals_the_topic(fuzzed: Outcome) -> None:
    port = fuzzed.settings.worker.metrics_port
    by_reason = Counter(
        (letter["source_topic"].rsplit("-", 1)[-1], letter["reason"]) for letter in fuzzed.letters
    )
    for (topic, reason), count in by_reason.items():
        assert (
            read_metric(port, "fraudstream_dead_letters_total", topic=topic, reason=reason) == count
        )
