"""Installing the load generator of ``bench api`` (stream.bench.vegeta)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from stream.bench import vegeta as module


def test_vegeta_is_installed_into_an_absolute_gobin_from_a_relative_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`go install` refuses a relative GOBIN ("GOBIN must be an absolute path"), and the
    services' state folder, hence the cache, is relative by default (``.state``)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(shutil, "which", lambda name: "/bin/go" if name == "go" else None)
    calls: list[dict[str, Any]] = []

    def run(args: list[str], check: bool, env: dict[str, str]) -> None:
        calls.append(env)
        Path(env["GOBIN"], "vegeta").parent.mkdir(parents=True, exist_ok=True)
        Path(env["GOBIN"], "vegeta").write_text("")

    monkeypatch.setattr(subprocess, "run", run)
    binary = module.vegeta(Path(".cache"))
    assert os.path.isabs(calls[0]["GOBIN"])
    assert binary == tmp_path / ".cache" / "go" / "bin" / "vegeta" and binary.exists()
    assert module.vegeta(Path(".cache")) == binary and len(calls) == 1  # found, not installed again
