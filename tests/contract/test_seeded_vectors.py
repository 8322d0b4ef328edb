"""A seeded month and a half through the scoring path: every vector, bit for bit.

Batches go through :func:`models.scoring.score_batch` (parts applied while
earlier ones are scored, saves in flight), with transactions late within and
beyond the allowed lateness, redelivered (within a part, a batch, or later),
with and without a location, at tied times, and fraud labels arriving days
later. The Redis store and the Redis Cluster store (3 masters) must give
exactly the in-memory store's vectors (the same float64 bits), all must agree
with the brute-force reference, and the vectors must equal the pinned ones
(``seeded_vectors.json``) bit for bit: a change in how features are computed
(decoding, summing, packing) that moves any value by a single bit fails here,
naming the features and the transactions it moved. The file holds a digest per
feature (over every transaction) and one per transaction (over every feature): a
moved value changes exactly one of each.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import secrets
import struct
from pathlib import Path

import redis

from features.events import Label, Transaction
from features.memory import MemoryFeatureStore
from features.redis_cluster_store import RedisClusterFeatureStore
from features.store import FeatureStore
from features.vector import FEATURE_NAMES
from models.factory import build_model
from models.scoring import ModelHolder, ServingModel, score_batch
from tests.feature_cases import (
    LATENESS,
    T0,
    Fraud,
    Op,
    Outcome,
    Settle,
    assert_close,
    in_redis_and_memory,
    reference,
)

#: The pinned digests of :func:`workload`'s vectors (see :func:`digests`).
PINNED = Path(__file__).with_name("seeded_vectors.json")


def workload(seed: int = 7, count: int = 1500) -> list[list[Op]]:
    """Batches of transactions and redeliveries, each followed by fraud labels."""
    rnd = random.Random(seed)
    batches: list[list[Op]] = []
    txns: list[Transaction] = []
    clock = T0
    while len(txns) < count:
        batch: list[Op] = []
        for _ in range(rnd.choice([1, 7, 60, 150])):
            if txns and rnd.random() < 0.06:  # a redelivery of any earlier transaction
                batch.append(Settle(rnd.randrange(len(txns)), redeliver=True))
                continue
            clock += rnd.choice([0.0, 0.0, 1.0, 60.0, 900.0, 3600.0, 4 * 3600.0])
            back = rnd.choice([0.0] * 12 + [120.0, LATENESS, 1.5 * LATENESS, 3 * LATENESS])
            located = rnd.random() < 0.5
            txn = Transaction(
                f"s{len(txns)}",
                f"c{rnd.randrange(25)}",
                f"p{rnd.randrange(6)}",
                round(rnd.lognormvariate(3.5, 1.2), 2),
                clock - back,
                lat=rnd.uniform(40, 50) if located else None,
                lon=rnd.uniform(-5, 10) if located else None,
            )
            txns.append(txn)
            batch.append(txn)
        batch += [
            Fraud(rnd.randrange(len(txns)), rnd.uniform(3600, 10 * 86400))
            for _ in range(rnd.choice([0, 1, 3]))
        ]
        batches.append(batch)
    return batches


async def run(store: FeatureStore, batches: list[list[Op]]) -> Outcome:
    """Score each batch as the stream agent does, then record its fraud labels."""
    holder = ModelHolder()
    holder.swap(ServingModel(1, build_model("logistic_regression")))
    txns: list[Transaction] = []
    out = Outcome({})
    for batch in batches:
        sent: list[tuple[Transaction, bool]] = []
        for op in batch:
            if isinstance(op, Transaction):
                txns.append(op)
                sent.append((op, False))
            elif isinstance(op, Settle):
                sent.append((txns[op.index], True))
        scored = await score_batch(store, holder, [txn for txn, _ in sent])
        for (txn, again), one in zip(sent, scored, strict=True):
            vector = None if one.record is None else one.record.features
            if again:
                out.redelivered.append(vector)
            else:
                out.vectors[txn.txn_id] = vector
        for op in batch:
            if isinstance(op, Fraud):
                await _label(store, txns[op.index], op.delay)
    return out


async def _label(store: FeatureStore, txn: Transaction, delay: float) -> None:
    record = await store.scored(txn.txn_id)
    if record is not None:
        await store.record_fraud(record, Label(txn.txn_id, True, txn.event_time + delay))


#: The features the digest was pinned over (feature set v3); the delayed terminal risk
#: features of v4 are held to the brute-force reference instead.
PINNED_FEATURES = tuple(f for f in FEATURE_NAMES if not f.startswith("terminal_risk_"))


def digest(outcome: Outcome, names: tuple[str, ...] = FEATURE_NAMES) -> str:
    """SHA-256 over every vector in order, ``names`` packed as float64s (late ones as ``-``)."""
    h = hashlib.sha256()
    packed = struct.Struct(f"<{len(names)}d")
    for vector in [*outcome.vectors.values(), *outcome.redelivered]:
        h.update(b"-" if vector is None else packed.pack(*(vector[n] for n in names)))
    return h.hexdigest()


def digests(outcome: Outcome, names: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """A short digest of each feature's float64 bits over every vector in order, and of
    each vector (a transaction, or ``redelivery N``; ``-`` for a late one)."""
    rows = [
        *outcome.vectors.items(),
        *((f"redelivery {k}", v) for k, v in enumerate(outcome.redelivered)),
    ]
    kept = [v for _, v in rows if v is not None]
    one = struct.Struct("<d")

    def short(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()[:16]

    return {
        "features": {n: short(b"".join(one.pack(v[n]) for v in kept)) for n in names},
        "transactions": {
            key: "-" if v is None else short(struct.pack(f"<{len(names)}d", *(v[n] for n in names)))
            for key, v in rows
        },
    }


def moved(now: dict[str, dict[str, str]], pinned: dict[str, dict[str, str]]) -> str:
    """Which features and which transactions differ from the pinned digests ('' if none).

    >>> moved({"features": {"a": "1", "b": "2"}, "transactions": {"t1": "x", "t2": "y"}},
    ...       {"features": {"a": "1", "b": "3"}, "transactions": {"t1": "x", "t2": "z"}})
    'features moved: b; transactions moved: t2'
    """
    parts = []
    for what in ("features", "transactions"):
        changed = [
            k for k in {**pinned[what], **now[what]} if now[what].get(k) != pinned[what].get(k)
        ]
        if changed:
            shown = ", ".join(changed[:10]) + (
                f" and {len(changed) - 10} more" if len(changed) > 10 else ""
            )
            parts.append(f"{what} moved: {shown}")
    return "; ".join(parts)


def test_a_seeded_workload_gives_bit_identical_vectors_in_both_stores(
    redis_url: str,
) -> None:
    batches = workload()
    ops = [op for batch in batches for op in batch]

    in_redis, in_memory = asyncio.run(
        in_redis_and_memory(redis_url, lambda store: run(store, batches))
    )
    assert in_redis == in_memory
    assert digest(in_redis) == digest(in_memory)  # the same floats, bit for bit
    assert_close(in_memory, reference(ops, [v is None for v in in_memory.redelivered]))
    vectors = [v for v in in_memory.vectors.values() if v is not None]
    assert sum(v["card_distance_from_usual_km"] > 0 for v in vectors) > 100
    assert sum(v["terminal_fraud_count_30d"] > 0 for v in vectors) > 100
    assert sum(v is None for v in in_memory.vectors.values()) > 10  # too late
    assert len(in_memory.redelivered) > 50
    assert sum(v["terminal_risk_7d"] > 0 for v in vectors) > 50
    pinned = json.loads(PINNED.read_text())
    assert moved(digests(in_memory, PINNED_FEATURES), pinned) == ""


def test_the_seeded_workload_on_a_redis_cluster_gives_the_same_bits(
    redis_cluster_url: str,
) -> None:
    """The card's and the terminal's sides in their own slots, on 3 masters: the very same
    vectors, redeliveries included, and state on every master."""
    batches = workload()
    prefix = f"fs-{secrets.token_hex(4)}"

    async def on_both() -> tuple[Outcome, Outcome, list[int]]:
        cluster = RedisClusterFeatureStore.from_url(
            redis_cluster_url, prefix, allowed_lateness=LATENESS
        )
        try:
            outcome = await run(cluster, batches)
            per_master = [
                len(redis.Redis(host=node.host, port=node.port).keys(f"{prefix}:*"))
                for node in cluster.client.get_primaries()
            ]
        finally:
            await cluster.close()
        return (
            outcome,
            await run(MemoryFeatureStore(allowed_lateness=LATENESS), batches),
            per_master,
        )

    on_cluster, in_memory, per_master = asyncio.run(on_both())
    assert len(per_master) == 3 and min(per_master) > 0, per_master
    assert on_cluster == in_memory
    assert digest(on_cluster) == digest(in_memory)
    assert moved(digests(on_cluster, PINNED_FEATURES), json.loads(PINNED.read_text())) == ""
