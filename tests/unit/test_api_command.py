"""``fraudstream api`` on a port that is taken: a clear error and an exit, not a hang."""

from __future__ import annotations

import socket
import subprocess
import sys

from tests.support import REPO


def test_the_api_refuses_a_taken_port_and_exits() -> None:
    """uvicorn logged "address already in use" and then hung in its shutdown, ignoring
    SIGTERM: now the command names the setting and exits at once with status 1."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            "FRAUDSTREAM_MODEL__SIGNING_KEY": "a-long-enough-signing-key",
            "FRAUDSTREAM_API__PORT": str(port),
            "PATH": "/usr/bin:/bin",
        }
        done = subprocess.run(
            [sys.executable, "-m", "stream.cli", "api"],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )  # (hung before)
    assert done.returncode == 1, done.stderr
    assert f"api.port: 127.0.0.1:{port} is not free" in done.stderr
