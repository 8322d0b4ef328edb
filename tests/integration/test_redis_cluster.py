"""The local Redis Cluster (``fraudstream services up --redis-cluster N``) is a real one:
its masters share the slots, keys under different hash tags land on different
masters, a command across slots is refused, and a restart keeps its shape and data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from stream.services import LocalServices
from stream.services.cluster import SLOTS
from stream.settings import ServicesSettings
from tests.support import free_cluster_base

MASTERS = 3


@pytest.fixture
def cluster_services(tmp_path: Path) -> Iterator[LocalServices]:
    settings = ServicesSettings(
        state_dir=tmp_path / "state",
        redis_cluster=MASTERS,
        redis_cluster_port=free_cluster_base(MASTERS),
    )
    services = LocalServices(settings)
    try:
        yield services
    finally:
        for node in services.redis_cluster.nodes:
            node.process().stop()


def _up(services: LocalServices) -> None:
    services.up(timeout=60, only={n.name for n in services.redis_cluster.nodes})


def test_the_local_cluster_spreads_keys_refuses_cross_slot_and_survives_a_restart(
    cluster_services: LocalServices,
) -> None:
    cluster = cluster_services.redis_cluster
    _up(cluster_services)
    assert cluster.formed()
    client = RedisCluster.from_url(cluster.url)
    try:
        masters = client.get_primaries()
        assert len(masters) == MASTERS
        for i in range(300):
            client.set(f"fs:card:{{c{i}}}", i)
        per_node = [redis.Redis(host=n.host, port=n.port).dbsize() for n in masters]
        assert sum(per_node) == 300 and min(per_node) > 50, per_node  # every master holds some
        same = client.mset_nonatomic({"fs:card:{c1}": 1, "fs:scored:{c1}:t9": 2})
        assert same and client.keyslot("fs:card:{c1}") == client.keyslot("fs:scored:{c1}:t9")
        node = redis.Redis(host=masters[0].host, port=masters[0].port)
        with pytest.raises(redis.ResponseError, match="same slot"):
            node.execute_command("MSET", "fs:{a}", 1, "fs:{b}", 2)  # two slots in one command
    finally:
        client.close()
    served = [n.info()["cluster_slots_ok"] for n in cluster.nodes]
    assert served == [str(SLOTS)] * MASTERS  # every node sees every slot served

    stopped = cluster_services.down()
    assert sorted(stopped) == sorted(n.name for n in cluster.nodes)
    assert not any(n.ready() for n in cluster.nodes)
    _up(cluster_services)  # the nodes find each other again from their nodes.conf
    assert cluster.formed()
    client = RedisCluster.from_url(cluster.url)
    try:
        values = [client.get(f"fs:card:{{c{i}}}") for i in (0, 150, 299)]
        assert [None if v is None else int(v) for v in values] == [0, 150, 299]
    finally:
        client.close()
