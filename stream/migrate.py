"""``fraudstream migrate-keys``: a Redis written before the hash-tagged key layout, renamed.

Until the layout of :mod:`features.keys`, keys carried no hash tags:
``<p>:v<n>:card:<card>``, ``<p>:v<n>:term:<terminal>``, ``<p>:v<n>:fraud:<terminal>``,
``<p>:v<n>:scored:<txn>``, ``<p>:models:...`` and ``<p>:lease:<role>[:fence]``.
The new code does not read them: run this once, with the workers, learners and
APIs stopped, and the feature state, the saved records, the model registry and the
leases carry over (``RENAMENX``: their values and expiries kept, a key already in
the new layout never overwritten). A pending marker of the old layout (a
transaction applied but never saved: its batch died) cannot be carried over (the
new one also holds its card); it is counted and left to expire, and the
transaction, if redelivered, is applied again.

Only for a single Redis: a Redis Cluster never held the old layout.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from features.keys import models_tag

_ENTITY = {"card": "c", "term": "t", "fraud": "t", "scored": "x"}


def new_name(key: str, prefix: str) -> str | None:
    """The key's name in the hash-tagged layout (None: not an old-layout key).

    Examples
    --------
    >>> new_name("fs:v4:card:c1", "fs"), new_name("fs:v4:scored:t9", "fs")
    ('fs:v4:card:{c:c1}', 'fs:v4:scored:{x:t9}')
    >>> new_name("fs:v4:term:p:1", "fs"), new_name("fs:models:snap:3", "fs")
    ('fs:v4:term:{t:p:1}', '{fs:models}:snap:3')
    >>> new_name("fs:lease:learn:fence", "fs")
    '{fs:models}:lease:learn:fence'
    >>> [new_name(k, "fs") for k in ("fs:v4:card:{c:c1}", "fs:stream:time", "other:v4:card:c")]
    [None, None, None]
    """
    if not key.startswith(prefix + ":"):
        return None
    rest = key[len(prefix) + 1 :]
    if rest.startswith(("models:", "lease:")):
        kind, _, tail = rest.partition(":")
        return f"{models_tag(prefix)}:{'lease:' if kind == 'lease' else ''}{tail}"
    match = _ENTITY_KEY.fullmatch(rest)
    if match is None or "{" in match.group(3):  # (an id with a brace: already tagged, or
        return None  # ambiguous; counted, not renamed, by migrate)
    version, kind, entity = match.groups()
    return f"{prefix}:{version}:{kind}:{{{_ENTITY[kind]}:{entity}}}"


#: An entity's key after the prefix: version, kind, id.
_ENTITY_KEY = re.compile(r"(v\d+):(card|term|fraud|scored):(.+)", re.DOTALL)


def _braced(key: str, prefix: str) -> bool:
    """Whether ``key`` is an entity's key whose id holds a brace, not in the new layout
    (left for an operator: renaming it could clash with a tagged key).

    >>> _braced("fs:v4:card:a{b", "fs"), _braced("fs:v4:card:{c:c1}", "fs")
    (True, False)
    """
    if not key.startswith(prefix + ":"):
        return False
    match = _ENTITY_KEY.fullmatch(key[len(prefix) + 1 :])
    return match is not None and "{" in match.group(3) and not _tagged(key, prefix)


def _tagged(key: str, prefix: str) -> bool:
    """Whether ``key`` is already in the new layout (its id inside a hash tag).

    >>> _tagged("fs:v4:card:{c:c1}", "fs"), _tagged("fs:v4:card:a{b", "fs")
    (True, False)
    """
    return (
        re.fullmatch(rf"{re.escape(prefix)}:v\d+:\w+:\{{[ctx]:.*\}}(:.*)?", key, re.DOTALL)
        is not None
    )


def migrate(client: Any, prefix: str, dry_run: bool = False) -> Counter[str]:
    """Rename every old-layout key under ``prefix`` (a blocking ``redis.Redis``); how many
    of each kind were renamed, left (already there, or a pending marker) or skipped."""
    done: Counter[str] = Counter()
    for raw in client.scan_iter(match=f"{prefix}:*", count=1000):
        key = raw.decode() if isinstance(raw, bytes) else raw
        target = new_name(key, prefix)
        if target is None:
            if _braced(key, prefix):
                done["left: an id with a brace (rename it by hand)"] += 1
            continue
        kind = "models" if target.startswith("{") else key.split(":")[len(prefix.split(":")) + 1]
        if kind == "scored" and (client.getrange(key, 0, 0) or b"") != b"D":
            done["scored: pending marker left to expire"] += 1
            continue
        if dry_run:
            done[f"{kind}: would be renamed"] += 1
        elif client.renamenx(key, target):
            done[f"{kind}: renamed"] += 1
        else:
            done[f"{kind}: already in the new layout, old key left"] += 1
    return done
