"""``fraudstream bench labels`` runs against the real Redis and learns every label both ways."""

from __future__ import annotations

import time

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


def test_a_bench_run_removes_the_model_registrys_keys_too(redis_url: str) -> None:
    """The registry's keys start with its hash tag (``{prefix:models}``), not the prefix:
    each bench stream run left 127,000 learned markers behind before."""
    import secrets

    from features.keys import models_tag
    from stream.bench.stream import remove_keys
    from stream.settings import Settings

    prefix = f"benchrm{secrets.token_hex(3)}"
    client = redis.Redis.from_url(redis_url)
    keep = f"other{secrets.token_hex(3)}:v1:card:x"
    client.set(keep, b"1")
    for key in (f"{prefix}:v3:card:{{c:c1}}", f"{models_tag(prefix)}:learned:t1", f"{prefix}:x"):
        client.set(key, b"1")
    remove_keys(Settings.model_validate({"redis": {"url": redis_url, "key_prefix": prefix}}))
    assert not list(client.scan_iter(match=f"*{prefix}*"))
    assert client.get(keep) == b"1"
    client.delete(keep)


def test_a_bench_run_removes_its_topics(kafka_bootstrap: str, redis_url: str) -> None:
    import secrets

    from kafka import KafkaAdminClient

    from stream.bench.stream import remove_run
    from stream.runtime.topics import ensure_topics, topic_names
    from stream.settings import Settings

    prefix = f"benchrm{secrets.token_hex(3)}"
    settings = Settings.model_validate(
        {
            "redis": {"url": redis_url, "key_prefix": prefix},
            "kafka": {"bootstrap_servers": kafka_bootstrap},
            "topics": {"prefix": f"{prefix}-"},
        }
    )
    ensure_topics(settings)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        assert set(topic_names(settings)) <= set(admin.list_topics())
        remove_run(settings)
        deadline = time.monotonic() + 30
        while set(topic_names(settings)) & set(admin.list_topics()):
            assert time.monotonic() < deadline, "the run's topics are still there"
            time.sleep(0.2)
    finally:
        admin.close()
