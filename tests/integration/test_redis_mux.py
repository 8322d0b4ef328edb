"""The shared Redis connection of the API's reads (features.redis_mux), on the real Redis."""

from __future__ import annotations

import asyncio
import secrets

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from features.events import Transaction
from features.redis_mux import Mux
from features.redis_store import RedisFeatureStore
from features.redis_wire import pack_command

pytestmark = pytest.mark.integration


def _packed(*commands: tuple[object, ...]) -> bytes:
    return b"".join(pack_command(c) for c in commands)


async def test_concurrent_calls_each_get_their_own_replies_in_order(redis_url: str) -> None:
    mux = Mux.from_url(redis_url)
    try:

        async def one(i: int) -> list[object]:
            return await mux.call(_packed(("ECHO", f"a{i}"), ("ECHO", f"b{i}")), 2)

        replies = await asyncio.gather(*(one(i) for i in range(300)))
        assert replies == [[f"a{i}".encode(), f"b{i}".encode()] for i in range(300)]
    finally:
        await mux.close()


async def test_an_error_reply_goes_to_its_own_caller_as_redis_py_would_raise_it(
    redis_url: str,
) -> None:
    key = f"mux-{secrets.token_hex(4)}"
    mux = Mux.from_url(redis_url)
    try:
        await mux.call(_packed(("SET", key, "text")), 1)
        good = [mux.call(_packed(("GET", key)), 1) for _ in range(20)]
        bad = mux.call(_packed(("INCR", key), ("GET", key)), 2)
        missing = mux.call(_packed(("EVALSHA", "0" * 40, 0)), 1)
        results = await asyncio.gather(*good, bad, missing, return_exceptions=True)
        assert results[:20] == [[b"text"]] * 20
        assert isinstance(results[20], ResponseError) and "integer" in str(results[20])
        assert isinstance(results[21], NoScriptError)
        assert await mux.call(_packed(("DEL", key)), 1) == [1]  # the connection still serves
    finally:
        await mux.close()


async def test_a_dropped_connection_fails_its_waiters_and_the_next_call_reconnects(
    redis_url: str,
) -> None:
    mux = Mux.from_url(redis_url)
    admin = aioredis.Redis.from_url(redis_url)
    try:
        name = f"mux-{secrets.token_hex(4)}"
        await mux.call(_packed(("CLIENT", "SETNAME", name)), 1)
        blocked = asyncio.ensure_future(
            mux.call(_packed(("BLPOP", f"{name}-nothing", 5)), 1)  # waits in Redis
        )
        await asyncio.sleep(0.2)
        [ours] = [c for c in await admin.client_list() if c.get("name") == name]
        await admin.client_kill_filter(_id=ours["id"])
        with pytest.raises(RedisConnectionError):
            await asyncio.wait_for(blocked, 3)
        assert await mux.call(_packed(("PING",)), 1) == [b"PONG"]
    finally:
        await mux.close()
        await admin.aclose()


async def test_a_stalled_reply_times_out_and_the_next_call_reconnects(redis_url: str) -> None:
    mux = Mux.from_url(redis_url)
    mux.timeout = 0.3
    try:
        with pytest.raises(RedisTimeoutError):
            await mux.call(_packed(("BLPOP", f"mux-{secrets.token_hex(4)}", 2)), 1)
        assert await mux.call(_packed(("PING",)), 1) == [b"PONG"]
    finally:
        await mux.close()


async def test_nothing_listens_there_is_a_connection_error(redis_url: str) -> None:
    mux = Mux("127.0.0.1", 1, connect_timeout=1.0)  # port 1: refused
    with pytest.raises(RedisConnectionError, match="cannot connect"):
        await mux.call(_packed(("PING",)), 1)


async def test_the_database_of_the_url_is_selected(redis_url: str) -> None:
    key = f"mux-{secrets.token_hex(4)}"
    other = aioredis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/3")
    mux = Mux.from_url(redis_url.rsplit("/", 1)[0] + "/3")
    try:
        await other.set(key, b"in three")
        assert await mux.call(_packed(("GET", key)), 1) == [b"in three"]
    finally:
        await other.delete(key)
        await other.aclose()
        await mux.close()


async def test_the_store_peeks_the_same_through_the_shared_connection(redis_url: str) -> None:
    """Peeks through the shared connection give exactly the states of the pooled ones, also
    after Redis lost the scripts (loaded again, sent again)."""
    prefix = f"mux-{secrets.token_hex(4)}"
    txns = [
        Transaction(f"t{i}", f"c{i % 7}", f"p{i % 3}", 10.0 + i, 1.767e9 + 600 * i)
        for i in range(60)
    ]
    pooled = RedisFeatureStore.from_url(redis_url, prefix)
    shared = RedisFeatureStore.from_url(redis_url, prefix)
    assert shared.multiplex_reads()
    try:
        async for _ in pooled.apply_parts([txns[:30], txns[30:]]):
            pass
        probes = [
            Transaction(f"q{i}", f"c{i % 7}", f"p{i % 3}", 5.0, 1.767e9 + 40_000) for i in range(7)
        ]
        expected = await pooled.peek_many(probes)
        assert any(state.card.times for state in expected)  # states there to read
        assert await shared.peek_many(probes) == expected
        assert await asyncio.gather(*(shared.peek(p) for p in probes)) == expected
        await shared.client.script_flush()
        assert await shared.peek_many(probes) == expected
    finally:
        keys = [k async for k in pooled.client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await pooled.client.delete(*keys)
        await pooled.close()
        await shared.close()
