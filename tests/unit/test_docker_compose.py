"""docker-compose.yml cannot run here (no Docker engine): check its structure instead."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoring.prometheus_config import compose_config
from stream.cli import parse
from stream.settings import Settings
from tests.support import REPO

COMPOSE: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
DEFAULTS = Settings()


def test_every_part_of_the_stack_is_a_service_with_a_healthcheck() -> None:
    expected = {
        "kafka",
        "redis",
        "prometheus",
        "alertmanager",
        "grafana",
        "scorer-1",
        "scorer-2",
        "learner",
        "monitor",
        "api",
        "producer",
    }
    assert set(SERVICES) == expected
    for name in expected - {"producer"}:  # the producer runs once and exits
        assert SERVICES[name]["healthcheck"]["test"], name


def test_kafka_is_apache_kafka_3_9_in_kraft_mode() -> None:
    kafka = SERVICES["kafka"]
    assert kafka["image"].startswith("apache/kafka:3.9")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_published_ports_match_the_settings_defaults() -> None:
    ports = {
        name: [p.split(":")[1] for p in svc.get("ports", [])] for name, svc in SERVICES.items()
    }
    assert ports["kafka"] == [DEFAULTS.kafka.bootstrap_servers.rsplit(":", 1)[1]]
    assert ports["redis"] == [str(DEFAULTS.services.redis_port)]
    assert ports["prometheus"] == [str(DEFAULTS.services.prometheus_port)]
    assert ports["alertmanager"] == [str(DEFAULTS.services.alertmanager_port)]
    assert ports["api"] == [str(DEFAULTS.api.port)]
    assert ports["scorer-1"] == [str(DEFAULTS.worker.metrics_port)]  # the others: 8002...


def test_app_containers_point_at_the_compose_services() -> None:
    for name in ("scorer-1", "learner", "monitor", "api", "producer"):
        env = SERVICES[name]["environment"]
        host, port = env["FRAUDSTREAM_KAFKA__BOOTSTRAP_SERVERS"].split(":")
        assert (
            host == "kafka"
            and f"PLAINTEXT://:{port}" in SERVICES["kafka"]["environment"]["KAFKA_LISTENERS"]
        )
        assert env["FRAUDSTREAM_REDIS__URL"].startswith("redis://redis:6379")


@pytest.mark.parametrize("name", ["scorer-1", "scorer-2", "learner", "monitor", "api", "producer"])
def test_app_commands_are_valid_fraudstream_commands(name: str) -> None:
    path, _ = parse(SERVICES[name]["command"])
    assert path == [SERVICES[name]["command"][0]]


def test_compose_runs_two_scorers_a_learner_and_a_monitor() -> None:
    roles = {
        name: parse(SERVICES[name]["command"])[1]["role"]
        for name in ("scorer-1", "scorer-2", "learner", "monitor")
    }
    assert roles == {
        "scorer-1": ["score"],
        "scorer-2": ["score"],
        "learner": ["learn"],
        "monitor": ["monitor"],
    }


def test_prometheus_in_compose_is_the_one_configuration() -> None:
    """docker-compose's file is :func:`compose_config`: the same configuration the local
    Prometheus is written with, its targets the containers."""
    config = yaml.safe_load((REPO / "monitoring/compose/prometheus.yml").read_text())
    assert config == compose_config()


def test_prometheus_in_compose_scrapes_the_worker_and_the_api() -> None:
    config = yaml.safe_load((REPO / "monitoring/compose/prometheus.yml").read_text())
    targets = {
        job["job_name"]: [t for group in job["static_configs"] for t in group["targets"]]
        for job in config["scrape_configs"]
    }
    port = DEFAULTS.worker.metrics_port
    assert targets["fraudstream-worker"] == [
        f"{name}:{port}" for name in ("scorer-1", "scorer-2", "learner", "monitor")
    ]
    assert targets["fraudstream-api"] == [f"api:{DEFAULTS.api.port}"]
    [worker] = [job for job in config["scrape_configs"] if job["job_name"] == "fraudstream-worker"]
    assert {group["labels"]["pipeline"] for group in worker["static_configs"]} == {
        DEFAULTS.worker.app_id
    }
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with Debian's prometheus package (make test installs it)"
    check = subprocess.run(
        [
            promtool,
            "check",
            "config",
            "--syntax-only",
            str(REPO / "monitoring/compose/prometheus.yml"),
        ],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_mounted_files_exist() -> None:
    for svc in SERVICES.values():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            assert (REPO / Path(source)).exists(), source
