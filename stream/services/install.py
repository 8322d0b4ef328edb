"""Find the programs the servers need, installing them when allowed.

Debian packages come from apt-get; the Kafka broker's jars come from Maven
Central through Maven into a cache folder. Each step says what it installs;
when installing is impossible the error names the missing tool and how to
get it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

#: (program, Debian package) pairs the local servers need.
REQUIRED_PROGRAMS = (
    ("java", "openjdk-17-jre-headless"),
    ("redis-server", "redis-server"),
    ("prometheus", "prometheus"),
    ("promtool", "prometheus"),
    ("prometheus-alertmanager", "prometheus-alertmanager"),
)


class MissingToolError(RuntimeError):
    """A program a server needs is absent and could not be installed."""


def say(message: str) -> None:
    print(f"[fraudstream] {message}", file=sys.stderr, flush=True)


def ensure_program(program: str, package: str, auto_install: bool) -> str:
    """The path of ``program``; apt-get installs ``package`` when it is missing."""
    found = shutil.which(program)
    if found:
        return found
    if not auto_install:
        raise MissingToolError(f"{program} not found; install the Debian package {package!r}")
    apt = shutil.which("apt-get")
    if apt is None:
        raise MissingToolError(
            f"{program} not found and apt-get is not available; install {package!r} yourself"
        )
    say(f"installing Debian package {package!r} (provides {program}) with apt-get")
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*sudo, apt, "install", "-y", "-q", "--no-install-recommends", package]
    result = subprocess.run(install, env=env, capture_output=True, text=True)
    if result.returncode != 0:  # package lists missing or stale: refresh once and retry
        say("refreshing Debian package lists (apt-get update)")
        subprocess.run([*sudo, apt, "update", "-q"], env=env, capture_output=True)
        result = subprocess.run(install, env=env, capture_output=True, text=True)
    found = shutil.which(program)
    if result.returncode != 0 or not found:
        raise MissingToolError(
            f"{program} not found and `apt-get install {package}` failed "
            f"(exit {result.returncode}): {result.stderr.strip()[-500:]}"
        )
    return found


def ensure_kafka_jars(cache_dir: Path, version: str, auto_install: bool) -> Path:
    """The folder holding Kafka ``version``'s runtime jars, fetched once with Maven."""
    libs = cache_dir / "kafka" / version / "libs"
    if (libs / f"kafka_2.13-{version}.jar").exists():
        return libs
    ensure_program("java", "openjdk-17-jre-headless", auto_install)
    mvn = ensure_program("mvn", "maven", auto_install)
    pom = cache_dir / "kafka" / version / "pom.xml"
    pom.parent.mkdir(parents=True, exist_ok=True)
    template = resources.files("stream.services").joinpath("kafka-pom.xml").read_text()
    pom.write_text(template.replace("@KAFKA_VERSION@", version))
    say(f"fetching Apache Kafka {version} jars from Maven Central into {libs}")
    staging = libs.with_name("libs.partial")
    shutil.rmtree(staging, ignore_errors=True)
    result = subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            f"-Dmaven.repo.local={cache_dir / 'm2'}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise MissingToolError(
            f"could not fetch Kafka {version} with Maven (exit {result.returncode}): "
            f"{(result.stdout + result.stderr).strip()[-800:]}"
        )
    staging.rename(libs)
    return libs
