"""The one Prometheus configuration of the project.

The local servers (:mod:`stream.services`) write it with file-discovered targets (each
worker and API registers itself); docker-compose mounts ``monitoring/compose/prometheus.yml``,
which is the same configuration with the containers as static targets
(:func:`compose_config`; ``tests/unit/test_docker_compose.py`` holds the file to it).

Examples
--------
>>> config = prometheus_config("5s", "alertmanager:9093", ["/rules/*.yml"],
...                            [static_job("api", [("api:8000", {})])], "localhost:9090")
>>> [job["job_name"] for job in config["scrape_configs"]]
['fraudstream-api', 'prometheus']
>>> config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
['alertmanager:9093']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: The jobs Prometheus scrapes: every role process of the pipeline, and the API.
JOBS = ("worker", "api")


def job_name(job: str) -> str:
    """The scrape job of ``worker`` or ``api`` processes."""
    return f"fraudstream-{job}"


def prometheus_config(
    interval: str,
    alertmanager: str,
    rule_files: Sequence[str],
    jobs: Sequence[Mapping[str, Any]],
    itself: str,
) -> dict[str, Any]:
    """The configuration: scrape and evaluate every ``interval``, alert to ``alertmanager``,
    the ``rule_files``, the ``jobs``, and Prometheus itself at ``itself``.

    Parameters
    ----------
    interval
        The scrape and rule evaluation interval, as Prometheus writes durations (``5s``).
    alertmanager
        The Alertmanager's address (``host:port``).
    rule_files
        The paths (or globs) of the alerting and recording rule files.
    jobs
        The scrape jobs (:func:`file_job`, :func:`static_job`).
    itself
        Prometheus's own address (``host:port``), scraped as job ``prometheus``.
    """
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "rule_files": list(rule_files),
        "scrape_configs": [
            *jobs,
            {"job_name": "prometheus", "static_configs": [{"targets": [itself]}]},
        ],
    }


def file_job(job: str, targets: str) -> dict[str, Any]:
    """A job whose targets are read from the files matching ``targets``.

    Parameters
    ----------
    job
        ``worker`` or ``api`` (:data:`JOBS`).
    targets
        A path glob of the target files (file-based service discovery, reread every 5 s).
    """
    return {
        "job_name": job_name(job),
        "file_sd_configs": [{"files": [targets], "refresh_interval": "5s"}],
    }


def static_job(job: str, targets: Sequence[tuple[str, Mapping[str, str]]]) -> dict[str, Any]:
    """A job of fixed targets.

    Parameters
    ----------
    job
        ``worker`` or ``api`` (:data:`JOBS`).
    targets
        Each target's address (``host:port``) and its labels (empty: none).
    """
    groups: list[dict[str, Any]] = []
    for address, labels in targets:
        group: dict[str, Any] = {"targets": [address]}
        if labels:
            group["labels"] = dict(labels)
        groups.append(group)
    return {"job_name": job_name(job), "static_configs": groups}


def compose_config() -> dict[str, Any]:
    """The configuration docker-compose mounts: the four role containers of the worker
    (labelled by role and pipeline: drift alerts aggregate by pipeline, health alerts stay
    per instance) and the API."""
    roles = (
        ("scorer-1", "score"),
        ("scorer-2", "score"),
        ("learner", "learn"),
        ("monitor", "monitor"),
    )
    worker = static_job(
        "worker",
        [
            (f"{name}:8001", {"instance_name": name, "role": role, "pipeline": job_name("worker")})
            for name, role in roles
        ],
    )
    return prometheus_config(
        "5s",
        "alertmanager:9093",
        ["/etc/prometheus/rules/*.yml"],
        [worker, static_job("api", [("api:8000", {})])],
        "localhost:9090",
    )
