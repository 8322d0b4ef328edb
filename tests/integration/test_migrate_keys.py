"""``fraudstream migrate-keys`` on a real Redis: state written in the old, untagged key layout
is renamed into the hash-tagged one, and everything reads as before: the same vectors,
the saved records, the model champion."""

from __future__ import annotations

import asyncio
import re
import secrets

import redis

from features.events import Transaction
from features.redis_store import RedisFeatureStore
from features.vector import FEATURE_SET_VERSION, view
from models.registry import ModelRegistry
from stream.migrate import migrate
from tests.support import publish_trained_champion

KEY = b"signing-key"


def _old_name(key: str, prefix: str) -> str:
    """The name ``key`` had before the hash-tagged layout."""
    if key.startswith(f"{{{prefix}:models}}:lease:"):
        return f"{prefix}:lease:" + key.split(":lease:", 1)[1]
    if key.startswith(f"{{{prefix}:models}}:"):
        return f"{prefix}:models:" + key.split("}:", 1)[1]
    return re.sub(r"\{[ctx]:(.*)\}$", r"\1", key)


def test_an_old_layout_redis_reads_as_before_once_migrated(redis_url: str) -> None:
    prefix = f"fs-{secrets.token_hex(4)}"
    publish_trained_champion(redis_url, prefix, KEY)
    probes = [Transaction(f"q{i}", f"c{i}", f"p{i % 3}", 20.0, 1e5 + 86400) for i in range(4)]

    async def read() -> tuple[list[dict[str, float]], object, int | None]:
        store = RedisFeatureStore.from_url(redis_url, prefix)
        try:
            vectors = [
                view(state, p)
                for state, p in zip(await store.peek_many(probes), probes, strict=True)
            ]
            record = await store.scored("h7")
            champion = await ModelRegistry(store.client, prefix, KEY).champion_version()
            return vectors, record, champion
        finally:
            await store.close()

    before = asyncio.run(read())
    assert before[1] is not None and before[2] is not None
    client = redis.Redis.from_url(redis_url)
    keys = [k.decode() for k in client.scan_iter(match=f"*{prefix}*")]
    for key in keys:  # back to the old layout, as an older fraudstream wrote it
        client.rename(key, _old_name(key, prefix))
    client.set(f"{prefix}:v{FEATURE_SET_VERSION}:scored:unsaved", b"P" + bytes(40))  # died
    assert asyncio.run(read())[2] is None  # the new code cannot see the old names

    assert migrate(client, prefix, dry_run=True)["card: would be renamed"] == 4
    counts = migrate(client, prefix)
    assert counts["card: renamed"] == 4 and counts["scored: renamed"] == 30
    assert counts["models: renamed"] >= 4 and counts["scored: pending marker left to expire"] == 1
    assert asyncio.run(read()) == before
    assert sum(migrate(client, prefix).values()) == 1  # once more: only the pending marker
