"""The project's own starter of real servers: idempotent, owns only its processes."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from stream.services import LocalServices
from stream.services.manager import ServiceError
from stream.services.process import free_port
from stream.settings import ServicesSettings
from tests.support import REPO

pytestmark = pytest.mark.integration


def services_in(tmp_path: Path) -> LocalServices:
    return LocalServices(
        ServicesSettings(
            state_dir=tmp_path,
            cache_dir=REPO / ".cache",
            redis_port=free_port(),
            prometheus_port=free_port(),
            alertmanager_port=free_port(),
            kafka_port=free_port(),
            kafka_controller_port=free_port(),
        )
    )


def test_up_is_idempotent_and_down_stops_only_what_it_started(tmp_path: Path) -> None:
    services = services_in(tmp_path)
    try:
        services.up(only={"redis"})
        pid = services.redis.process().pid()
        assert pid is not None and services.redis.ready()
        services.up(only={"redis"})
        assert services.redis.process().pid() == pid  # not started twice
        status = {s.name: s for s in services.status()}
        assert status["redis"].answering and status["redis"].pid == pid
        assert status["kafka"].pid is None and not status["kafka"].answering
    finally:
        assert services.down() == ["redis"]
    assert not services.redis.ready() and services.redis.process().pid() is None


def test_a_port_taken_by_another_program_is_reported_not_stolen(tmp_path: Path) -> None:
    services = services_in(tmp_path)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", services.redis.port))
        squatter.listen()
        with pytest.raises(ServiceError, match=r"port \d+ is taken.*REDIS_PORT"):
            services.up(only={"redis"})
    assert services.down() == []


def test_a_stale_pid_file_never_signals_a_stranger(tmp_path: Path) -> None:
    services = services_in(tmp_path)
    stranger = subprocess.Popen(["sleep", "30"])
    try:
        services.redis.folder.mkdir(parents=True)
        services.redis.process().pid_file.write_text(f"{stranger.pid}\n")
        assert services.redis.process().pid() is None
        assert services.down() == []
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_the_generated_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    services = services_in(tmp_path)
    services.prometheus.prepare(services.settings)
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with Debian's prometheus package"
    result = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
