"""``fraudstream services up | down | status``: the real servers, started locally.

:class:`LocalServices` installs what is missing, writes each server's config
under ``services.state_dir``, starts the processes, and waits until each
answers (Kafka: a metadata request from Python succeeds). ``up`` is
idempotent; ``down`` signals only the processes whose pid files it wrote.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import monitoring
from stream.services.cluster import LocalRedisCluster
from stream.services.install import REQUIRED_PROGRAMS, ensure_kafka_jars, ensure_program
from stream.services.process import port_open
from stream.services.servers import (
    HOST,
    AlertmanagerServer,
    KafkaServer,
    PrometheusServer,
    RedisServer,
    Server,
)
from stream.settings import ServicesSettings


class ServiceError(RuntimeError):
    """A server could not be started; the message says which and why."""


@dataclass(frozen=True)
class ServiceStatus:
    """One server: where it listens, its pid if ours, and whether it answers."""

    name: str
    address: str
    pid: int | None
    answering: bool

    def line(self) -> str:
        owner = f"pid {self.pid}" if self.pid else "not started by us"
        state = "answering" if self.answering else "NOT answering"
        return f"{self.name:<16} {self.address:<22} {owner:<20} {state}"


def default_rule_files() -> list[Path]:
    """The alert rule files shipped in ``monitoring/rules``."""
    return sorted((Path(monitoring.__file__).parent / "rules").glob("*.yml"))


class LocalServices:
    """Kafka, Redis, Prometheus and Alertmanager as local processes (and, with
    ``services.redis_cluster``, a Redis Cluster: :mod:`stream.services.cluster`)."""

    def __init__(self, settings: ServicesSettings, rules: list[Path] | None = None) -> None:
        self.settings = settings
        state = settings.state_dir.resolve()
        self.kafka = KafkaServer(settings, state / "kafka")
        self.redis = RedisServer(settings, state / "redis")
        self.prometheus = PrometheusServer(
            settings, state / "prometheus", default_rule_files() if rules is None else rules
        )
        self.alertmanager = AlertmanagerServer(settings, state / "alertmanager")
        self.redis_cluster = LocalRedisCluster(settings, state / "redis-cluster")

    @property
    def servers(self) -> list[Server]:
        """The servers ``up`` starts: the cluster's only when asked for."""
        return self._with(lambda node: bool(self.settings.redis_cluster))

    @property
    def known(self) -> list[Server]:
        """The servers ``down`` and ``status`` look at: a cluster's nodes asked for, or
        still running from an earlier ``up --redis-cluster``."""
        return self._with(
            lambda node: bool(self.settings.redis_cluster) or node.process().pid() is not None
        )

    def _with(self, include: Callable[[Server], bool]) -> list[Server]:
        """The four servers, and the cluster's nodes that ``include`` keeps."""
        return [
            self.kafka,
            self.redis,
            self.prometheus,
            self.alertmanager,
            *(node for node in self.redis_cluster.nodes if include(node)),
        ]

    def endpoints(self) -> dict[str, str]:
        """The addresses clients use, as environment variables for fraudstream."""
        return {
            "FRAUDSTREAM_KAFKA__BOOTSTRAP_SERVERS": self.kafka.address,
            "FRAUDSTREAM_REDIS__URL": self.redis.url,
            "PROMETHEUS_URL": self.prometheus.url,
            "ALERTMANAGER_URL": self.alertmanager.url,
            **(
                {"REDIS_CLUSTER_URL": self.redis_cluster.url} if self.settings.redis_cluster else {}
            ),
        }

    def install(self) -> None:
        """Install every program and jar the servers need (no server is started)."""
        for program, package in REQUIRED_PROGRAMS:
            ensure_program(program, package, self.settings.auto_install)
        ensure_kafka_jars(
            self.settings.cache_dir.resolve(),
            self.settings.kafka_version,
            self.settings.auto_install,
        )

    def up(self, timeout: float = 120.0, only: set[str] | None = None) -> list[ServiceStatus]:
        """Start every server (or those named in ``only``) not yet running; wait for all."""
        starting: list[tuple[Server, subprocess.Popen[bytes]]] = []
        for server in self.servers:
            if only is not None and server.name not in only:
                continue
            process = server.process()
            if process.pid() is not None:
                continue
            if port_open(HOST, server.port):
                raise ServiceError(
                    f"{server.name}: port {server.port} is taken by a process fraudstream did "
                    f"not start; stop it or choose another port "
                    f"(FRAUDSTREAM_SERVICES__{server.name.upper()}_PORT)"
                )
            argv = server.prepare(self.settings)
            starting.append((server, server.process(argv).start()))
        self._wait_ready(starting, timeout)
        cluster = self.redis_cluster
        if self.settings.redis_cluster and (
            only is None or any(n.name in only for n in cluster.nodes)
        ):
            cluster.form(timeout)
        return self.status()

    def _wait_ready(
        self, starting: list[tuple[Server, subprocess.Popen[bytes]]], timeout: float
    ) -> None:
        deadline = time.monotonic() + timeout
        waiting = list(starting)
        while waiting:
            for server, child in list(waiting):
                if child.poll() is not None:
                    process = server.process()
                    raise ServiceError(
                        f"{server.name} exited with {child.returncode} during start-up; its log "
                        f"({process.log_file}) ends with:\n{process.log_tail()}"
                    )
                if server.ready():
                    waiting.remove((server, child))
            if waiting and time.monotonic() > deadline:
                names = ", ".join(s.name for s, _ in waiting)
                raise ServiceError(f"not ready after {timeout:.0f}s: {names}")
            if waiting:
                time.sleep(0.2)

    def down(self) -> list[str]:
        """Stop the servers we started (by pid); return the names stopped."""
        return [s.name for s in reversed(self.known) if s.process().stop()]

    def status(self) -> list[ServiceStatus]:
        return [ServiceStatus(s.name, s.address, s.process().pid(), s.ready()) for s in self.known]
