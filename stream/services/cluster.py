"""A small Redis Cluster on loopback: ``fraudstream services up --redis-cluster N``.

``N`` (at least 3) masters, no replicas, each a Debian ``redis-server`` in
cluster mode on ports ``services.redis_cluster_port`` and up (and, as Redis
Cluster requires, each port plus 10,000 for the nodes' own bus). The first
time, the masters are joined with ``redis-cli --cluster create``, which
spreads the 16,384 hash slots evenly; each node keeps the cluster's shape in
its ``nodes.conf``, so after ``services down`` and ``up`` they find each other
again.

It runs beside the single Redis, which stays what fraudstream uses by
default: the cluster is there for the cluster layout (a key per entity under
a hash tag) and its tests.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from stream.services.install import ensure_program
from stream.services.servers import HOST, RedisServer
from stream.settings import ServicesSettings

#: Hash slots of a Redis Cluster.
SLOTS = 16384
#: Redis Cluster's bus listens on each node's port plus this.
BUS_OFFSET = 10000


class ClusterError(RuntimeError):
    """The cluster could not be formed; the message says why and what to do."""


class RedisClusterNode(RedisServer):
    """One master of the local cluster: the single Redis's server, in cluster mode."""

    def __init__(self, settings: ServicesSettings, index: int, folder: Path) -> None:
        super().__init__(
            settings, folder, f"redis-cluster-{index}", settings.redis_cluster_port + index
        )

    def prepare(self, settings: ServicesSettings) -> tuple[str, ...]:
        return (
            *super().prepare(settings),
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "5000",
        )

    def ready(self) -> bool:
        return self.info().get("cluster_enabled") == "1"

    def info(self) -> dict[str, str]:
        """``INFO cluster`` and ``CLUSTER INFO`` as one dict ({}: the node does not answer)."""
        import redis

        client = redis.Redis(host=HOST, port=self.port, socket_timeout=1)
        try:
            found = {k: str(v) for k, v in client.info("cluster").items()}
            if found.get("cluster_enabled") == "1":  # redis-py parses it into a dict
                found.update({k: str(v) for k, v in client.cluster("INFO").items()})
            return found
        except redis.RedisError:
            return {}
        finally:
            client.close()


class LocalRedisCluster:
    """The masters of the local cluster, and how to join them into one."""

    def __init__(self, settings: ServicesSettings, folder: Path) -> None:
        self.settings = settings
        #: The masters asked for (``services.redis_cluster``), or else those a former
        #: ``up --redis-cluster`` left folders for (so that ``down`` and ``status`` see them).
        count = settings.redis_cluster or sum(
            1 for p in folder.glob("*") if p.is_dir() and p.name.isdigit()
        )
        self.nodes = [RedisClusterNode(settings, i, folder / str(i)) for i in range(count)]

    @property
    def url(self) -> str:
        """A node to start from (a cluster client learns the others from it)."""
        return self.nodes[0].url

    def formed(self) -> bool:
        """Every node answers, sees all the others and every slot served."""
        for node in self.nodes:
            info = node.info()
            if (
                info.get("cluster_state") != "ok"
                or info.get("cluster_known_nodes") != str(len(self.nodes))
                or info.get("cluster_slots_ok") != str(SLOTS)
            ):
                return False
        return True

    def form(self, timeout: float = 30.0) -> None:
        """Join the nodes (once: nodes that already know each other only wait until the
        cluster is ok again), then wait until every node says so."""
        strangers = [n for n in self.nodes if n.info().get("cluster_known_nodes") == "1"]
        if len(strangers) == len(self.nodes):
            cli = ensure_program("redis-cli", "redis-tools", self.settings.auto_install)
            result = subprocess.run(
                [
                    cli,
                    "--cluster",
                    "create",
                    *(n.address for n in self.nodes),
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            if result.returncode != 0:
                raise ClusterError(
                    "redis-cli --cluster create failed:\n" + (result.stdout + result.stderr)[-2000:]
                )
        elif strangers:
            raise ClusterError(
                f"{', '.join(n.name for n in strangers)} know no other node while the rest "
                f"form a cluster: stop the services and remove "
                f"{self.nodes[0].folder.parent} to start the cluster afresh"
            )
        deadline = time.monotonic() + timeout
        while not self.formed():
            if time.monotonic() > deadline:
                states = {
                    n.name: n.info().get("cluster_state", "not answering") for n in self.nodes
                }
                raise ClusterError(f"the cluster is not ok after {timeout:.0f}s: {states}")
            time.sleep(0.2)
