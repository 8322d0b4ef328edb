"""What the Redis feature stores send and what they get back: commands packed in the Redis
protocol, the apply script's payload, and its replies decoded into states and records.
Shared by :mod:`features.redis_store` and :mod:`features.redis_cluster_store`, with the
cluster store's fast path: commands sent straight to the masters of their slots.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from features import card, card_bytes, terminal
from features.events import Transaction
from features.redis_lua import SUMS
from features.store import Applied, ScoredRecord, Status, decode_state
from features.vector import EntityState

#: A transaction for the apply script: its card record, then its buckets.
APPLY_HEAD = struct.Struct(card_bytes.RECORD.format + "iii")
#: The newest event time a LATE reply carries.
NEWEST = struct.Struct("<d")
#: A reply's status code -> its status.
STATUS = {status.value.encode(): status for status in Status}


def pack_command(args: Sequence[object]) -> bytes:
    """One command in the Redis protocol (RESP), as redis-py's ``pack_commands`` makes it
    for these arguments, without its per-argument checks (which would be a third of the
    store's own time with 160 arguments per apply script call).

    >>> pack_command(("GET", "k:{c:1}"))
    b'*2\\r\\n$3\\r\\nGET\\r\\n$7\\r\\nk:{c:1}\\r\\n'
    """
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        raw = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)


def chunks(items: Sequence[Transaction], size: int) -> list[Sequence[Transaction]]:
    """``items`` in runs of ``size`` (the last one shorter).

    Parameters
    ----------
    items
        The transactions, in order.
    size
        The length of a run.
    """
    return [items[i : i + size] for i in range(0, len(items), size)]


def pack_apply(txns: Sequence[Transaction]) -> bytes:
    """The transactions for the apply script: per transaction its record, buckets and card
    id (its length, then its bytes)."""
    parts: list[bytes] = []
    for txn in txns:
        card_id = txn.card_id.encode()
        parts += (
            APPLY_HEAD.pack(*card.record(txn), *terminal.current_buckets(txn.event_time)),
            bytes((len(card_id),)),
            card_id,
        )
    return b"".join(parts)


def reply_state(sums: bytes, card_bytes: bytes, frauds: bytes) -> EntityState:
    """The state the scripts return: window sums, card bytes, fraud entries.

    Parameters
    ----------
    sums
        The window sums, packed as :data:`features.redis_lua.SUMS`.
    card_bytes
        The card's stored bytes (:func:`features.card_bytes.append`'s; empty for none).
    frauds
        The terminal's fraud entries, each packed as :data:`features.terminal.FRAUD`,
        one after the other (empty for none).
    """
    width = terminal.FRAUD.size
    return decode_state(
        card_bytes,
        SUMS.unpack(sums),
        [frauds[i : i + width] for i in range(0, len(frauds), width)] if frauds else (),
    )


def applied_from_reply(txn: Transaction, reply: Sequence[Any]) -> Applied:
    """What the apply script answered for ``txn``, as an :class:`~features.store.Applied`.

    Parameters
    ----------
    txn
        The transaction the reply is for.
    reply
        The script's reply for it: a status code, then the owner (``CONFLICT``), the saved
        record (``DONE``), the newest time (``LATE``) or the window sums, card bytes and
        fraud entries (``NEW``, ``PENDING``).
    """
    status = STATUS[reply[0]]
    if status is Status.CONFLICT:
        return Applied(txn, status, owner=bytes(reply[1]).decode())
    if status is Status.DONE:
        return Applied(txn, status, record=ScoredRecord.from_bytes(reply[1]))
    if status is Status.LATE:
        return Applied(txn, status, newest=NEWEST.unpack(reply[1])[0])
    return Applied(txn, status, state=reply_state(reply[1], reply[2], reply[3]))


def saved_record(raw: Any) -> ScoredRecord | None:
    """The record under a ``scored`` key: None if unknown, or applied but not saved yet."""
    if raw is None or raw[:1] != b"D":
        return None
    return ScoredRecord.from_bytes(raw[1:])


async def send_to_masters(client: RedisCluster, built: Sequence[Sequence[object]]) -> list[Any]:
    """The replies of the commands ``built``, in order, each sent to the master of its first
    key's slot: per node one packed write, then its replies read on that connection.

    Raises what the connection raises (a slot moved, a node gone, a script lost); the
    connections of a failed send are disconnected, as replies may be left unread on them.

    Parameters
    ----------
    client
        The cluster client (its slot map says which node serves a slot).
    built
        The commands, each a sequence of arguments; a script call's first key is its
        fourth argument (``EVALSHA sha numkeys key ...``), any other command's its second.
    """
    replies: list[Any] = [None] * len(built)
    taken: list[tuple[Any, Any, list[int]]] = []
    unread = len(built)
    try:
        nodes: dict[str, tuple[Any, list[int]]] = {}
        manager = client.nodes_manager
        for i, command in enumerate(built):
            node = manager.get_node_from_slot(_slot(command))
            nodes.setdefault(node.name, (node, []))[1].append(i)
        for node, members in nodes.values():
            conn = node.acquire_connection()
            taken.append((node, conn, members))
            await conn.send_packed_command(b"".join([pack_command(built[i]) for i in members]))
        for _, conn, members in taken:
            for i in members:
                replies[i] = await conn.read_response()
                unread -= 1
        return replies
    finally:
        for node, conn, _ in taken:
            if unread:  # replies may be left unread: never reuse these connections
                await conn.disconnect()
            node.release(conn)


def _slot(command: Sequence[object]) -> int:
    """The slot of a command's first key (a script's first declared key)."""
    key = command[3] if command[0] == "EVALSHA" else command[1]
    return key_slot(key if isinstance(key, bytes) else str(key).encode())
