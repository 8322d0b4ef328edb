"""``fraudstream bench labels`` runs against the real Redis and learns every label both ways."""

from __future__ import annotations

import pytest
import redis

from stream.bench.labels import bench_labels

pytestmark = pytest.mark.integration


def test_the_labels_bench_learns_every_label_both_ways_and_leaves_no_key(
    redis_url: str,
) -> None:
    lines: list[str] = []
    result = bench_labels(redis_url, runs=1, batch=50, customers=20, days=9, say=lines.append)
    assert result["one_by_one_labels_per_s"] > 0 and result["batched_labels_per_s"] > 0
    assert result["ratio"] == result["batched_labels_per_s"] / result["one_by_one_labels_per_s"]
    assert lines[0].endswith(f"Redis {redis_url}") and "median" in lines[-1]
    client = redis.Redis.from_url(redis_url)
    assert not list(client.scan_iter(match="bench-labels-*"))  # each run removed its keys
