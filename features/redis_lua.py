"""The Lua scripts of the Redis store, and the constants they are built with.

Each script only moves bytes and adds counters; what a feature means is
defined once, in Python (:mod:`features.card`, :mod:`features.terminal`),
and the contract tests hold the scripts to it. :func:`scripts` prefixes
each text with its constants as Lua locals.

Keys are named by :class:`features.keys.KeyLayout` and always passed as
``KEYS`` (a Redis Cluster routes a script by its keys).

**A terminal** (``term``) is one fixed-size string, created whole and
then only changed in place (``SETRANGE``: a few bytes per transaction, in
memory and in the append-only file). Byte 0 is 1 once a fraud label was
recorded for the terminal. Then, together (one write for a transaction in
the current buckets), per window ``i``: ``n`` (int32, the newest bucket
counted, ``NONE`` before any), ``s`` (the window's sum for a transaction in
bucket ``n``) and ``c`` (bucket ``n``'s count). Then per window a ring of
``RING`` int32 counts of the older buckets: bucket ``b``'s count is in slot
``b % RING`` while ``n - KEEP <= b < n``; as ``n`` moves on, its count goes
into the ring and the slots in between are zeroed. This is the same
arithmetic as :func:`features.terminal.window_counts` and
:func:`features.terminal.step` over a dict of buckets: the window sums
count whole buckets ``[max(cur - BUCKETS, known - KEEP), cur)``.

**A card** (``card``) is the bytes of :func:`features.card_bytes.append`.

**A pending marker** (``scored`` = ``P`` ...) holds the card's newest
time, dropped count and number of records when the transaction was applied
(on one Redis also its card id, its window sums and fraud entries; a
cluster's terminal keeps those itself). Its card records are found again by the
dropped count (records are only ever dropped from the front); records it
could not see may be gone, which changes no vector; if one it could see is
gone (:func:`features.card_bytes.lost_since`), its redelivery is answered LATE.
"""

from __future__ import annotations

import struct

from features import card, card_bytes, terminal
from features import redis_lua_text as lua

#: The terminal's "no bucket yet".
NONE = -(2**31)
#: Slots per window ring: the buckets from ``n - KEEP`` to ``n - 1``.
RING = terminal.KEEP_BUCKETS
#: Bytes before the rings: the fraud flag, then (n, s, c) per window.
TERM_HEAD = 1 + 12 * len(terminal.WINDOWS)
#: Bytes of a terminal.
TERM_SIZE = TERM_HEAD + 4 * RING * len(terminal.WINDOWS)
#: The window sums the scripts return (the scripts are written for 3 windows), then the
#: 3 delayed ones (:data:`features.terminal.DELAYED`).
SUMS = struct.Struct("<iiiiii")
if len(terminal.DELAYED) != 3:
    raise ImportError("features.redis_lua is written for 3 delayed terminal windows")
if len(terminal.WINDOWS) != 3:
    raise ImportError("features.redis_lua is written for 3 terminal windows")


def scripts(
    *, allowed_lateness: float, card_ttl: int, term_ttl: int, scored_ttl: int, fraud_ttl: int
) -> dict[str, str]:
    """The scripts' texts by name, with their constants.

    Parameters
    ----------
    allowed_lateness
        Seconds a transaction may be behind its card's newest event time.
    card_ttl
        Seconds a card's key lives; renewed by each transaction that reaches the card for
        the first time.
    term_ttl
        Seconds a terminal's key lives (renewed on each fraud recorded and each new bucket
        of its longest window).
    scored_ttl
        Seconds a ``scored`` key (and a cluster's ``applied`` key) lives.
    fraud_ttl
        Seconds a terminal's fraud entries live after the last one recorded.
    """
    constants: dict[str, object] = {
        "BUCKETS": terminal.BUCKETS,
        "KEEP": terminal.KEEP_BUCKETS,
        "RING": RING,
        "NONE": NONE,
        "TERM_HEAD": TERM_HEAD,
        "LAST_BUCKET_SECONDS": repr(terminal.BUCKET_SECONDS[-1]),
        "LATENESS": repr(float(allowed_lateness)),
        "HORIZON": repr(float(card.HORIZON_SECONDS)),
        "SLACK": card_bytes.SLACK,
        "CARD_TTL": card_ttl,
        "TERM_TTL": term_ttl,
        "SCORED_TTL": scored_ttl,
        "FRAUD_TTL": fraud_ttl,
        "RECORD_SIZE": card_bytes.RECORD.size,
        "HEADER_SIZE": card_bytes.HEADER.size,
        "SUMS_SIZE": SUMS.size,
    }
    for k, (series, offset, length) in enumerate(terminal.DELAYED.values(), start=1):
        constants.update({f"D{k}S": series + 1, f"D{k}O": offset, f"D{k}L": length})
    header = "\n".join(f"local {name} = {value}" for name, value in constants.items()) + "\n"
    return {
        name: header + text
        for name, text in (
            ("apply", lua.APPLY_LUA),
            ("peek", lua.PEEK_LUA),
            ("save", lua.SAVE_LUA),
            ("fraud", lua.FRAUD_LUA),
            ("card", lua.CARD_APPLY_LUA),
            ("terminal", lua.TERMINAL_APPLY_LUA),
            ("peek_terminal", lua.PEEK_TERMINAL_LUA),
            ("claim", lua.CLAIM_LUA),
            ("release", lua.RELEASE_LUA),
        )
    }
