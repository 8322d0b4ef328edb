"""A Redis hash whose values only ever grow: per-partition marks several processes raise.

Each scorer raises its partitions' newest event time, each consumer its
partitions' next offset; one that owned a partition before and finishes late
can never move a mark back. One Lua script, one round trip per raise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_RAISE = """
for i = 1, #ARGV, 2 do
  local old = redis.call('HGET', KEYS[1], ARGV[i])
  if not old or tonumber(old) < tonumber(ARGV[i + 1]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 1
"""


class RaisedMarks:
    """Marks in the hash ``key`` of ``client`` (an asyncio ``redis.Redis``)."""

    def __init__(self, client: Any, key: str) -> None:
        self.client = client
        self.key = key
        self._raise = client.register_script(_RAISE)

    async def raise_to(self, marks: Mapping[int, float]) -> None:
        """Raise each field to its value, unless it is higher already."""
        if marks:
            await self._raise(
                keys=[self.key],
                args=[x for field, value in marks.items() for x in (field, repr(value))],
            )

    async def get(self, fields: list[int]) -> list[float | None]:
        values = await self.client.hmget(self.key, [str(f) for f in fields])
        return [None if v is None else float(v) for v in values]

    async def highest(self) -> float:
        """The highest mark (0 when there is none)."""
        return max([0.0, *(float(v) for v in await self.client.hvals(self.key))])
