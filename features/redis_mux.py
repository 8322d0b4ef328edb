"""One Redis connection shared by every request of a process, commands in, replies in order.

redis-py hands each command a connection from its pool, wraps its write and
its read in timeouts and gives the connection back: in the scoring API that
round trip was 27 % of a request's CPU (py-spy, ``tests/benchmarks/api_app``),
more than the feature vector and the model together. Redis answers the
commands of one connection in the order they came, so a process can write
every request's commands to one connection as they come and hand the replies
back in that order: a write to the socket, a future, and one reader that
parses whatever arrived (hiredis) for everyone.

Failures are redis-py's exceptions, so callers handle them as before: a
connection that drops or times out fails every command waiting on it with
:class:`~redis.exceptions.ConnectionError` or
:class:`~redis.exceptions.TimeoutError`, and the next command connects again;
an error reply is raised as the exception redis-py would raise (a
``NOSCRIPT`` as :class:`~redis.exceptions.NoScriptError`, ...), to its own
caller only.

Used by :meth:`features.redis_store.RedisFeatureStore.multiplex_reads` (the
scoring API's peeks); tested on the real Redis in
``tests/integration/test_redis_mux.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import hiredis
from redis._parsers.base import BaseParser
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from features.redis_wire import pack_command

#: Bytes read from the socket at once.
READ_BYTES = 1 << 16
#: Past this much unsent, a caller waits for the socket to drain.
HIGH_WATER_BYTES = 1 << 20


@dataclass
class _Waiting:
    """The commands of one call: how many replies it waits for, those read so far."""

    future: asyncio.Future[list[Any]]
    count: int
    replies: list[Any] = field(default_factory=list)


@dataclass
class _Link:
    """One connection: its writer, its reader's task, and the calls waiting on it in the
    order they were written."""

    writer: asyncio.StreamWriter
    waiting: deque[_Waiting] = field(default_factory=deque)
    reading: asyncio.Task[None] | None = None


class Mux:
    """A shared connection to one Redis (not a cluster: its slots are spread over nodes).

    Parameters
    ----------
    host, port, db, username, password
        Where Redis is, and how to log in and which database to select.
    timeout
        Seconds a call waits for its replies before the connection is given up (every
        call waiting on it fails with a timeout; the next connects again).
    connect_timeout
        Seconds a connection may take.
    """

    def __init__(
        self,
        host: str,
        port: int,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 5.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self.host, self.port, self.db = host, port, db
        self.username, self.password = username, password
        self.timeout, self.connect_timeout = timeout, connect_timeout
        self._link: _Link | None = None
        self._connecting: asyncio.Lock | None = None

    @classmethod
    def from_client(cls, client: Redis) -> Mux | None:
        """A mux to where ``client`` connects, with its timeouts; None if it connects in a
        way this does not (TLS, a Unix socket, a cluster)."""
        pool = getattr(client, "connection_pool", None)  # (a cluster client has none)
        if pool is None:
            return None
        kwargs = pool.connection_kwargs
        if "host" not in kwargs or "ssl" in pool.connection_class.__name__.lower():
            return None
        return cls(
            kwargs["host"],
            int(kwargs.get("port", 6379)),
            int(kwargs.get("db", 0)),
            kwargs.get("username"),
            kwargs.get("password"),
            float(kwargs.get("socket_timeout") or 5.0),
            float(kwargs.get("socket_connect_timeout") or 5.0),
        )

    @classmethod
    def from_url(cls, url: str) -> Mux:
        """A mux to the Redis of ``url`` (``redis://[user:password@]host:port/db``)."""
        mux = cls.from_client(Redis.from_url(url))
        if mux is None:
            raise ValueError(f"redis url: only plain TCP is multiplexed, not {url.split(':')[0]}")
        return mux

    async def call(self, packed: bytes, count: int) -> list[Any]:
        """The replies of ``count`` commands packed one after the other (RESP), in order.

        Parameters
        ----------
        packed
            The commands, each packed as RESP (:func:`features.redis_wire.pack_command`).
        count
            How many commands ``packed`` holds: as many replies are read.

        Raises
        ------
        redis.exceptions.ConnectionError, redis.exceptions.TimeoutError
            Redis could not be reached, or the connection dropped or stalled.
        redis.exceptions.RedisError
            The first command answered with an error (the others' replies are dropped).
        """
        link = await self._connected()
        replies = await self._exchange(link, packed, count)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    async def close(self) -> None:
        """Close the connection; calls still waiting fail with ConnectionError."""
        if self._link is not None:
            self._lose(self._link, RedisConnectionError, "the connection was closed")

    async def _exchange(self, link: _Link, packed: bytes, count: int) -> list[Any]:
        """Write ``count`` packed commands on ``link``; their replies (errors as values)."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        link.waiting.append(_Waiting(future, count))
        try:
            link.writer.write(packed)
            if link.writer.transport.get_write_buffer_size() > HIGH_WATER_BYTES:
                await link.writer.drain()
        except OSError as exc:  # (a reset while draining)
            self._lose(link, RedisConnectionError, f"writing to Redis: {exc!r}")
        try:
            return await asyncio.wait_for(future, self.timeout)
        except TimeoutError:
            message = f"no reply from Redis within {self.timeout:g}s"
            self._lose(link, RedisTimeoutError, message)
            raise RedisTimeoutError(message) from None

    async def _connected(self) -> _Link:
        link = self._link
        if link is not None:
            return link
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._link is not None:
                return self._link  # connected by the call that held the lock
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port), self.connect_timeout
                )
            except (OSError, TimeoutError) as exc:
                raise RedisConnectionError(
                    f"cannot connect to Redis at {self.host}:{self.port}: {exc!r}"
                ) from None
            link = _Link(writer)
            link.reading = asyncio.get_running_loop().create_task(self._read(reader, link))
            hello: list[tuple[Any, ...]] = []
            if self.password is not None:
                credentials = (
                    (self.password,)
                    if self.username is None
                    else (
                        self.username,
                        self.password,
                    )
                )
                hello.append(("AUTH", *credentials))
            if self.db:
                hello.append(("SELECT", self.db))
            if hello:
                packed = b"".join(pack_command(c) for c in hello)
                for reply in await self._exchange(link, packed, len(hello)):
                    if isinstance(reply, Exception):
                        self._lose(link, RedisConnectionError, "logging in to Redis failed")
                        raise reply
            self._link = link
            return link

    async def _read(self, reader: asyncio.StreamReader, link: _Link) -> None:
        parser = hiredis.Reader(replyError=ResponseError)
        waiting = link.waiting
        try:
            while True:
                data = await reader.read(READ_BYTES)
                if not data:
                    raise RedisConnectionError("Redis closed the connection")
                parser.feed(data)
                reply = parser.gets()
                while reply is not False:
                    if not waiting:
                        raise RedisConnectionError("Redis sent a reply nothing waited for")
                    if isinstance(reply, ResponseError):
                        reply = BaseParser.parse_error(str(reply))
                    head = waiting[0]
                    head.replies.append(reply)
                    if len(head.replies) == head.count:
                        waiting.popleft()
                        if not head.future.done():  # (its caller may have gone)
                            head.future.set_result(head.replies)
                    reply = parser.gets()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._lose(link, RedisConnectionError, f"reading from Redis: {exc}")

    def _lose(self, link: _Link, error: type[Exception], message: str) -> None:
        """Give ``link`` up: every call waiting on it fails with ``error(message)``; the
        next call connects again."""
        if self._link is link:
            self._link = None
        reading, link.reading = link.reading, None
        if reading is not None and reading is not asyncio.current_task():
            reading.cancel()
        with contextlib.suppress(Exception):
            link.writer.close()
        while link.waiting:
            waiting = link.waiting.popleft()
            if not waiting.future.done():
                waiting.future.set_exception(error(message))
