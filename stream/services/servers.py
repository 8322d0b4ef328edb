"""The four real servers: how each is prepared, launched and asked if it is ready.

Every server keeps its data, generated config, log and pid under its own
folder of ``services.state_dir`` and listens on 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import urllib.request
import uuid
from pathlib import Path

import yaml

import monitoring
from monitoring.prometheus_config import JOBS, file_job, prometheus_config
from stream.services.install import ensure_kafka_jars, ensure_program
from stream.services.process import ManagedProcess, port_open
from stream.settings import ServicesSettings

HOST = "127.0.0.1"


class Server:
    """What the manager needs to run one server."""

    #: The executable's base name, which identifies our process by its pid.
    program = ""

    def __init__(self, name: str, port: int, folder: Path) -> None:
        self.name = name
        self.port = port
        self.folder = folder

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def process(self, argv: tuple[str, ...] = ()) -> ManagedProcess:
        return ManagedProcess(
            self.name,
            self.program,
            self.folder / f"{self.name}.log",
            self.folder / f"{self.name}.pid",
            argv,
            cwd=self.folder,
        )

    def prepare(self, settings: ServicesSettings) -> tuple[str, ...]:
        """Install what is missing, write config, return the command line."""
        raise NotImplementedError

    def ready(self) -> bool:
        return port_open(HOST, self.port)


class KafkaServer(Server):
    """One KRaft node, broker and controller combined."""

    program = "java"

    def __init__(self, settings: ServicesSettings, folder: Path) -> None:
        super().__init__("kafka", settings.kafka_port, folder)
        self.controller_port = settings.kafka_controller_port

    def prepare(self, settings: ServicesSettings) -> tuple[str, ...]:
        java = ensure_program("java", "openjdk-17-jre-headless", settings.auto_install)
        libs = ensure_kafka_jars(
            settings.cache_dir.resolve(), settings.kafka_version, settings.auto_install
        )
        data = self.folder / "data"
        config = self.folder / "server.properties"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(self._properties(data))
        log4j = self.folder / "log4j.properties"
        log4j.write_text(
            "log4j.rootLogger=WARN, stdout\n"
            "log4j.logger.kafka=INFO\n"
            "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
        )
        jvm = (
            java,
            f"-Xmx{settings.kafka_heap}",
            f"-Xms{settings.kafka_heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{log4j}",
            "-cp",
            f"{libs}/*",
        )
        if not (data / "meta.properties").exists():
            self._format(jvm, config)
        return (*jvm, "kafka.Kafka", str(config))

    def _properties(self, data: Path) -> str:
        port, controller = self.port, self.controller_port
        return "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@{HOST}:{controller}",
                f"listeners=PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller}",
                f"advertised.listeners=PLAINTEXT://{HOST}:{port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name=PLAINTEXT",
                f"log.dirs={data}",
                "num.partitions=1",
                "auto.create.topics.enable=false",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=4",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "log.retention.hours=168",
                "",
            ]
        )

    def _format(self, jvm: tuple[str, ...], config: Path) -> None:
        cluster_id = kafka_cluster_id()
        result = subprocess.run(
            [*jvm, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"formatting Kafka storage failed: {result.stdout}{result.stderr}")

    def ready(self) -> bool:
        """A metadata request from Python succeeds."""
        if not port_open(HOST, self.port):
            return False
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            admin = KafkaAdminClient(bootstrap_servers=self.address, request_timeout_ms=3000)
        except (KafkaError, OSError, ValueError):
            return False
        try:
            admin.list_topics()
            return True
        except (KafkaError, OSError):
            return False
        finally:
            admin.close()


def kafka_cluster_id() -> str:
    """A random KRaft cluster id: 16 bytes, base64url, never starting with ``-``.

    (Kafka's own ``Uuid.randomUuid`` skips those too: the CLI reads them as options.)

    Examples
    --------
    >>> ids = {kafka_cluster_id() for _ in range(500)}
    >>> len(ids), any(i.startswith("-") for i in ids), {len(i) for i in ids}
    (500, False, {22})
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class RedisServer(Server):
    """Debian's redis-server, with an append-only file so state survives a restart."""

    program = "redis-server"

    def __init__(
        self, settings: ServicesSettings, folder: Path, name: str = "redis", port: int | None = None
    ) -> None:
        super().__init__(name, settings.redis_port if port is None else port, folder)

    def prepare(self, settings: ServicesSettings) -> tuple[str, ...]:
        binary = ensure_program("redis-server", "redis-server", settings.auto_install)
        self.folder.mkdir(parents=True, exist_ok=True)
        return (
            binary,
            "--bind",
            HOST,
            "--port",
            str(self.port),
            "--dir",
            str(self.folder),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--daemonize",
            "no",
        )

    def ready(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(host=HOST, port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    @property
    def url(self) -> str:
        return f"redis://{self.address}/0"


class PrometheusServer(Server):
    """Debian's Prometheus, scraping targets listed in files under ``targets/``.

    Scrape targets are discovered from ``targets/<job>-*.json`` (file service
    discovery), so a worker or API on any port is added by writing a file.
    """

    program = "prometheus"

    def __init__(self, settings: ServicesSettings, folder: Path, rules: list[Path]) -> None:
        super().__init__("prometheus", settings.prometheus_port, folder)
        self.rules = rules
        self.alertmanager = f"{HOST}:{settings.alertmanager_port}"

    @property
    def targets_dir(self) -> Path:
        return self.folder / "targets"

    def prepare(self, settings: ServicesSettings) -> tuple[str, ...]:
        binary = ensure_program("prometheus", "prometheus", settings.auto_install)
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        config = self.folder / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config(settings.scrape_interval), sort_keys=False))
        return (
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.folder / 'data'}",
            f"--web.listen-address={self.address}",
            "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=7d",
        )

    def config(self, interval: str) -> dict[str, object]:
        jobs = [file_job(job, str(self.targets_dir / f"{job}-*.json")) for job in JOBS]
        return prometheus_config(
            interval, self.alertmanager, [str(p) for p in self.rules], jobs, self.address
        )

    def add_target(
        self,
        job: str,
        name: str,
        address: str,
        pipeline: str | None = None,
        role: str | None = None,
    ) -> Path:
        """Make Prometheus scrape ``address`` as ``job`` (``worker`` or ``api``)."""
        if job not in JOBS:
            raise ValueError(f"job: must be one of {JOBS}, not {job!r}")
        return write_scrape_target(self.targets_dir, job, name, address, pipeline, role)

    def ready(self) -> bool:
        return _http_ok(f"{self.url}/-/ready")


#: The routing (grouping, receivers, inhibition) shipped with the project.
ALERTMANAGER_CONFIG = Path(monitoring.__file__).parent / "alertmanager.yml"


class AlertmanagerServer(Server):
    """Debian's Alertmanager, clustering off, with the project's routing."""

    program = "prometheus-alertmanager"

    def __init__(self, settings: ServicesSettings, folder: Path) -> None:
        super().__init__("alertmanager", settings.alertmanager_port, folder)

    def prepare(self, settings: ServicesSettings) -> tuple[str, ...]:
        binary = ensure_program(
            "prometheus-alertmanager", "prometheus-alertmanager", settings.auto_install
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "alertmanager.yml"
        shutil.copyfile(ALERTMANAGER_CONFIG, config)
        return (
            binary,
            f"--config.file={config}",
            f"--storage.path={self.folder / 'data'}",
            f"--web.listen-address={self.address}",
            "--cluster.listen-address=",
        )

    def ready(self) -> bool:
        return _http_ok(f"{self.url}/-/ready")


def write_scrape_target(
    targets_dir: Path,
    job: str,
    name: str,
    address: str,
    pipeline: str | None = None,
    role: str | None = None,
) -> Path:
    """Write (atomically) the file-discovery entry that makes Prometheus scrape ``address``,
    labelled ``instance_name`` (``name``), ``pipeline`` (the app id; default ``name``:
    drift alerts aggregate by it) and, for a worker, its ``role``."""
    targets_dir.mkdir(parents=True, exist_ok=True)
    path = targets_dir / f"{job}-{name}.json"
    tmp = path.with_suffix(".tmp")
    labels = {
        "instance_name": name,
        "pipeline": pipeline or name,
        **({"role": role} if role else {}),
    }
    tmp.write_text(json.dumps([{"targets": [address], "labels": labels}]))
    tmp.rename(path)
    return path


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False
