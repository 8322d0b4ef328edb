"""Start, find and stop one background server process by its pid file.

Only processes this project started are ever signalled: a pid is trusted
only while ``/proc/<pid>/cmdline`` still shows the program we launched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class ManagedProcess:
    """A server process: how to launch it, where it logs, where its pid is kept."""

    name: str
    #: The executable's base name, as ``/proc/<pid>/cmdline`` shows it.
    program: str
    log_file: Path
    pid_file: Path
    argv: tuple[str, ...] = ()
    cwd: Path | None = None

    def pid(self) -> int | None:
        """The pid of our running process, or None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        first = cmdline[0].split(b" ")[0] if cmdline else b""  # redis rewrites its title
        if os.path.basename(first) != self.program.encode():
            return None  # the pid was reused by some other program
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        return None if state == "Z" else pid

    def start(self, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Launch the process in its own session (so Ctrl-C elsewhere spares it)."""
        if not self.argv:
            raise ValueError(f"{self.name}: no command line to start")
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.cwd,
                env=env,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        return proc

    def stop(self, timeout: float = 15.0) -> bool:
        """SIGTERM our process, SIGKILL it after ``timeout``; True if one was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.pid() is not None and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        if self.pid() is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        _reap(pid)
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the log, to explain a failure."""
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our child (avoids zombies)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
