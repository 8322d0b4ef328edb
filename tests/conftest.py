"""Fixtures: real Kafka, Redis and Prometheus, and per-test isolation.

Servers come, in this order of preference, from:
1. the environment: ``FRAUDSTREAM_TEST_KAFKA``, ``FRAUDSTREAM_TEST_REDIS_URL``,
   ``FRAUDSTREAM_TEST_PROMETHEUS_URL`` and ``FRAUDSTREAM_TEST_PROMETHEUS_TARGETS``
   (a folder that Prometheus reads ``worker-*.json``/``api-*.json`` from);
2. testcontainers, when a Docker engine answers (Kafka and Redis in containers;
   Prometheus stays a local process, as it must scrape processes on this host);
3. the project's own local starter, on free ports, with state in a temp folder.
Never a mock. Each server starts when a test first asks for it (``redis_url``,
``kafka_bootstrap``, ``real_servers`` for all four with Prometheus and Alertmanager): a
Redis-only test starts only Redis. Each test gets random topic names, a consumer group and
a Redis key prefix of its own.

A Redis Cluster (``redis_cluster_url``) comes from ``FRAUDSTREAM_TEST_REDIS_CLUSTER``
(a URL to one of its nodes), else the local starter runs 3 masters on free ports.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.services import LocalServices
from stream.services.process import free_port
from stream.settings import (
    ServicesSettings,
    Settings,
)
from tests.support import (
    REPO,
    Endpoints,
    Processes,
    RealServers,
    free_cluster_base,
    isolated_settings,
)

#: Masters of the test cluster.
CLUSTER_MASTERS = 3


@functools.cache
def _docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _local_settings(state: Path) -> ServicesSettings:
    return ServicesSettings(
        state_dir=state,
        cache_dir=REPO / ".cache",
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        redis_port=free_port(),
        prometheus_port=free_port(),
        alertmanager_port=free_port(),
        scrape_interval="1s",
        kafka_heap="384m",
    )


@pytest.fixture(scope="session")
def local_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServices]:
    """The project's own starter, on free ports; each server fixture starts only its own
    server(s), when a test first asks for it, and all are stopped at the end."""
    local = LocalServices(_local_settings(tmp_path_factory.mktemp("services")))
    yield local
    local.down()


@pytest.fixture(scope="session")
def redis_url(local_services: LocalServices) -> Iterator[str]:
    """A real Redis: the environment's, a container's, or a local process."""
    if url := os.environ.get("FRAUDSTREAM_TEST_REDIS_URL"):
        yield url
    elif _docker_available():
        from testcontainers.redis import RedisContainer

        with RedisContainer("redis:7") as redis:
            yield f"redis://{redis.get_container_host_ip()}:{redis.get_exposed_port(6379)}/0"
    else:
        local_services.up(only={"redis"})
        yield local_services.redis.url


@pytest.fixture(scope="session")
def kafka_bootstrap(local_services: LocalServices) -> Iterator[str]:
    """A real Kafka broker: the environment's, a container's, or a local process."""
    if address := os.environ.get("FRAUDSTREAM_TEST_KAFKA"):
        yield address
    elif _docker_available():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:3.9.1").with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
    else:
        local_services.up(only={"kafka"})
        yield local_services.kafka.address


@pytest.fixture(scope="session")
def real_servers(
    kafka_bootstrap: str, redis_url: str, local_services: LocalServices
) -> RealServers:
    """Kafka and Redis, and a real Prometheus and Alertmanager beside them (always local
    processes unless the environment names them: Prometheus scrapes processes on this
    host)."""
    env = os.environ
    if env.get("FRAUDSTREAM_TEST_PROMETHEUS_URL"):
        return RealServers(
            kafka_bootstrap,
            redis_url,
            env["FRAUDSTREAM_TEST_PROMETHEUS_URL"],
            Path(env["FRAUDSTREAM_TEST_PROMETHEUS_TARGETS"]),
            "environment",
            env.get("FRAUDSTREAM_TEST_ALERTMANAGER_URL"),
        )
    local_services.up(only={"prometheus", "alertmanager"})
    return RealServers(
        kafka_bootstrap,
        redis_url,
        local_services.prometheus.url,
        local_services.prometheus.targets_dir,
        "testcontainers" if _docker_available() else "local processes",
        local_services.alertmanager.url,
    )


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A URL to a node of a real Redis Cluster (3 masters, started in a few seconds)."""
    if url := os.environ.get("FRAUDSTREAM_TEST_REDIS_CLUSTER"):
        yield url
        return
    services = LocalServices(
        ServicesSettings(
            state_dir=tmp_path_factory.mktemp("cluster"),
            redis_cluster=CLUSTER_MASTERS,
            redis_cluster_port=free_cluster_base(CLUSTER_MASTERS),
        )
    )
    nodes = services.redis_cluster.nodes
    try:
        services.up(timeout=60, only={node.name for node in nodes})
        yield services.redis_cluster.url
    finally:
        for node in nodes:
            node.process().stop()


@pytest.fixture
def settings(kafka_bootstrap: str, redis_url: str) -> Settings:
    """Settings isolated to this test: own topics, group, keys and ports (on the real Kafka
    and Redis)."""
    return isolated_settings(Endpoints(kafka_bootstrap, redis_url))


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Start ``fraudstream <command>`` as real processes; all stopped after the test."""
    group = Processes(tmp_path)
    yield group
    group.stop_all()
