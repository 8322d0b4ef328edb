"""Fixtures: real Kafka, Redis and Prometheus, and per-test isolation.

Servers come, in this order of preference, from:
1. the environment: ``FRAUDSTREAM_TEST_KAFKA``, ``FRAUDSTREAM_TEST_REDIS_URL``,
   ``FRAUDSTREAM_TEST_PROMETHEUS_URL`` and ``FRAUDSTREAM_TEST_PROMETHEUS_TARGETS``
   (a folder that Prometheus reads ``worker-*.json``/``api-*.json`` from);
2. testcontainers, when a Docker engine answers (Kafka and Redis in containers;
   Prometheus stays a local process, as it must scrape processes on this host);
3. the project's own local starter, on free ports, with state in a temp folder.
Never a mock. Each test gets random topic names, a consumer group and a Redis
key prefix of its own.

A Redis Cluster (``redis_cluster_url``) comes from ``FRAUDSTREAM_TEST_REDIS_CLUSTER``
(a URL to one of its nodes), else the local starter runs 3 masters on free ports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from stream.services import LocalServices
from stream.services.process import free_port
from stream.settings import (
    ServicesSettings,
    Settings,
)
from tests.support import REPO, Processes, RealServers, free_cluster_base, isolated_settings

#: Masters of the test cluster.
CLUSTER_MASTERS = 3


def _docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _local_settings(state: Path) -> ServicesSettings:
    return ServicesSettings(
        state_dir=state, cache_dir=REPO / ".cache",
        kafka_port=free_port(), kafka_controller_port=free_port(), redis_port=free_port(),
        prometheus_port=free_port(), alertmanager_port=free_port(), scrape_interval="1s",
        kafka_heap="384m",
    )


@pytest.fixture(scope="session")
def real_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServers]:
    env = os.environ
    if env.get("FRAUDSTREAM_TEST_KAFKA"):
        yield RealServers(env["FRAUDSTREAM_TEST_KAFKA"], env["FRAUDSTREAM_TEST_REDIS_URL"],
                          env["FRAUDSTREAM_TEST_PROMETHEUS_URL"],
                          Path(env["FRAUDSTREAM_TEST_PROMETHEUS_TARGETS"]), "environment",
                          env.get("FRAUDSTREAM_TEST_ALERTMANAGER_URL"))
        return
    local = LocalServices(_local_settings(tmp_path_factory.mktemp("services")))
    with ExitStack() as stack:
        if _docker_available():
            kafka, redis_url = _containers(stack)
            local.up(only={"prometheus", "alertmanager"})
            origin = "testcontainers"
        else:
            local.up()
            kafka, redis_url, origin = local.kafka.address, local.redis.url, "local processes"
        stack.callback(local.down)
        yield RealServers(kafka, redis_url, local.prometheus.url, local.prometheus.targets_dir,
                          origin, local.alertmanager.url)


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A URL to a node of a real Redis Cluster (3 masters, started in a few seconds)."""
    if url := os.environ.get("FRAUDSTREAM_TEST_REDIS_CLUSTER"):
        yield url
        return
    services = LocalServices(ServicesSettings(
        state_dir=tmp_path_factory.mktemp("cluster"), redis_cluster=CLUSTER_MASTERS,
        redis_cluster_port=free_cluster_base(CLUSTER_MASTERS)))
    nodes = services.redis_cluster.nodes
    try:
        services.up(timeout=60, only={node.name for node in nodes})
        yield services.redis_cluster.url
    finally:
        for node in nodes:
            node.process().stop()


def _containers(stack: ExitStack) -> tuple[str, str]:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.redis import RedisContainer

    kafka = stack.enter_context(KafkaContainer("apache/kafka:3.9.1").with_kraft())
    redis = stack.enter_context(RedisContainer("redis:7"))
    host, port = redis.get_container_host_ip(), redis.get_exposed_port(6379)
    return kafka.get_bootstrap_server(), f"redis://{host}:{port}/0"


@pytest.fixture
def settings(real_servers: RealServers) -> Settings:
    """Settings isolated to this test: own topics, group, keys and ports."""
    return isolated_settings(real_servers)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Start ``fraudstream <command>`` as real processes; all stopped after the test."""
    group = Processes(tmp_path)
    yield group
    group.stop_all()
