"""Which partition a keyed record goes to: Kafka's default partitioner, as aiokafka and
the Java client compute it (murmur2 of the key), so records sent in batches by partition
land where a record-by-record send puts them.

>>> from aiokafka.partitioner import DefaultPartitioner
>>> partition_of(b"c000001", [0, 1, 2, 3]), DefaultPartitioner()(b"c000001", [0, 1, 2, 3], [])
(2, 2)
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from aiokafka.partitioner import murmur2


@lru_cache(maxsize=1 << 18)
def _hashed(key: bytes) -> int:
    """The key's non-negative murmur2 (cards repeat: each hashed once, in pure Python)."""
    return int(murmur2(key)) & 0x7FFFFFFF


def partition_of(key: bytes, partitions: Sequence[int]) -> int:
    """The partition Kafka's default partitioner sends ``key`` to.

    Parameters
    ----------
    key
        The record's key.
    partitions
        The topic's partition ids, sorted.
    """
    return partitions[_hashed(key) % len(partitions)]
