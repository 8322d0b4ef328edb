"""The bench's worker processes: a layout's ``fraudstream worker`` processes started on
their own topics, group and Redis keys, watched until they have scored and learned
everything, and killed on Ctrl-C."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import redis
from kafka import KafkaConsumer, TopicPartition

from features.keys import models_tag
from stream.services.process import free_port
from stream.settings import Settings, to_env

#: The layouts compared: a name and the role sets of its processes.
LAYOUTS: dict[str, list[list[str]]] = {
    "all": [["all"]],
    "split": [["learn"], ["monitor"], ["score"], ["score"]],
}


@dataclass
class LayoutResult:
    layout: str
    transactions_per_s: float
    labels_per_s: float
    p50_ms: float
    p99_ms: float
    offered_per_s: float
    answered: int
    offered: int
    #: Worst event-to-score latency (s) while a process was killed and replaced.
    failover_s: float = float("nan")
    #: The most labels waiting at once during the drain.
    waiting_max: float = float("nan")
    #: The highest peak RSS of the layout's processes (MB).
    rss_mb: float = float("nan")
    #: Seconds from SIGTERM until the slowest process exited.
    stop_s: float = float("nan")
    #: Of the offered transactions, how many the generator sent more than
    #: LATE_SECONDS after their turn, and the generator's CPU (share of one core): a
    #: generator that could not keep its schedule measured the machine, not the stream.
    offered_late: int = 0
    generator_cpu: float = float("nan")


def layout_settings(base: Settings, layout: str) -> Settings:
    tag = f"bench{layout}{secrets.token_hex(3)}"
    return base.model_copy(
        update={
            "topics": base.topics.model_copy(update={"prefix": f"{tag}-"}),
            "redis": base.redis.model_copy(update={"key_prefix": tag}),
            "worker": base.worker.model_copy(update={"app_id": tag}),
            "model": base.model.model_copy(update={"signing_key": secrets.token_hex(16)}),
        }
    )


class Layout:
    """The role processes of one layout, with their logs in ``folder``."""

    #: Layouts whose processes run (each in a session of its own, so a Ctrl-C in the
    #: terminal reaches the bench only): :func:`stopped_on_interrupt` stops them.
    running: ClassVar[weakref.WeakSet[Layout]] = weakref.WeakSet()

    def __init__(self, settings: Settings, roles: list[list[str]], folder: Path) -> None:
        self.settings = settings
        self.roles = roles
        self.folder = folder
        self.children: list[subprocess.Popen[bytes]] = []
        self.ports: list[int] = []
        Layout.running.add(self)
        folder.mkdir(parents=True, exist_ok=True)
        for i, role_set in enumerate(roles):
            self._spawn(role_set, i)

    def _spawn(self, role_set: list[str], i: int) -> None:
        port = free_port()
        env = {**os.environ, **to_env(self.settings), "FRAUDSTREAM_WORKER__METRICS_PORT": str(port)}
        args = [a for role in role_set for a in ("--role", role)]
        name = f"{self.settings.worker.app_id}-{i}-{'-'.join(role_set)}.log"
        with (self.folder / name).open("ab") as log:
            self.children.append(
                subprocess.Popen(
                    [sys.executable, "-m", "stream.cli", "worker", *args],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            )
        self.ports[i:] = [port]

    def learner_port(self) -> int:
        """The metrics port of the process with the learn (or all) role."""
        return next(
            port
            for port, roles in zip(self.ports, self.roles, strict=False)
            if {"learn", "all"} & set(roles)
        )

    def peak_rss_mb(self) -> float:
        """The highest peak resident memory (VmHWM) of the running processes."""
        peaks = [0.0]
        for child in self.children:
            try:
                status = Path(f"/proc/{child.pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
        return max(peaks)

    def kill_one(self) -> None:
        """kill -9 the last scoring process; one of the same roles starts at once (as a
        supervisor would restart it): its partitions must go on being scored."""
        victim = self.children.pop()
        victim.kill()
        victim.wait()
        self._spawn(self.roles[len(self.children)], len(self.children))

    def stop(self) -> float:
        """SIGTERM to every process; seconds until the last exited (killed after 60)."""
        began = time.monotonic()
        for child in self.children:
            child.terminate()
        for child in self.children:
            try:
                child.wait(timeout=max(0.1, 60 - (time.monotonic() - began)))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        Layout.running.discard(self)
        return time.monotonic() - began


@contextmanager
def stopped_on_interrupt() -> Iterator[None]:
    """On SIGINT or SIGTERM, kill every running layout's processes and exit (130): a
    KeyboardInterrupt raised inside kafka-python's I/O loop is kept by its task, not
    raised, and the bench went on starting workers."""

    def stop(signum: int, _frame: object) -> None:
        for layout in list(Layout.running):
            for child in layout.children:
                child.kill()
        print(
            f"fraudstream bench: interrupted (signal {signum}); its workers were killed, "
            "its topics and keys were left",
            file=sys.stderr,
            flush=True,
        )
        os._exit(130)

    if threading.current_thread() is not threading.main_thread():  # (no signals there)
        yield
        return
    before = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _ends(consumer: KafkaConsumer, topic: str) -> int:
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    return sum(consumer.end_offsets(parts).values()) if parts else 0


def _labels_learned(client: redis.Redis, prefix: str) -> int:
    latest = client.get(f"{models_tag(prefix)}:latest")
    if latest is None:
        return 0
    meta = client.hget(f"{models_tag(prefix)}:snap:{int(latest)}", "meta")
    return 0 if meta is None else int(json.loads(meta)["labels_learned"])


def drain(
    settings: Settings,
    transactions: int,
    labels: int,
    timeout: float,
    waiting: Callable[[], float | None] = lambda: None,
) -> tuple[float, float, float]:
    """Transactions/s and labels/s from the first score until all are scored / learned
    (``labels`` 0: transactions only), and the most labels ``waiting`` on the way."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers)
    client = redis.Redis.from_url(settings.redis.url)
    scores, dead = settings.topics.name("scores"), settings.topics.name("dead_letters")
    first = scored_at = learned_at = None
    most = 0.0
    deadline = time.monotonic() + timeout
    try:
        while (scored_at is None or learned_at is None) and time.monotonic() < deadline:
            now = time.monotonic()
            done = _ends(consumer, scores) + _ends(consumer, dead)  # too late: dead-lettered
            if first is None and (done > 0 or transactions == 0):
                first = now
            if scored_at is None and done >= transactions:
                scored_at = now
            if learned_at is None and (
                labels == 0 or _labels_learned(client, settings.redis.key_prefix) >= labels
            ):
                learned_at = now
            most = max(most, waiting() or 0.0)
            time.sleep(0.05)
    finally:
        consumer.close()
        client.close()
    if first is None or scored_at is None or learned_at is None:
        raise RuntimeError(f"the stream did not drain within {timeout:.0f}s")
    return (
        transactions / max(scored_at - first, 1e-3),
        labels / max(learned_at - first, 1e-3),
        most,
    )


def _rate(count: int, seconds: float) -> float:
    """``count`` per second over ``seconds``; NaN when nothing was left to time.

    >>> _rate(500, 0.25), _rate(0, 0.0)
    (2000.0, nan)
    """
    return count / max(seconds, 1e-3) if count > 0 else float("nan")


def first_learned(
    settings: Settings, labels: int, reached: int, timeout: float
) -> tuple[float, float]:
    """Labels/s of a learner from its first snapshot until the first ``reached`` labels
    (those the stream had reached) are learned, and until every label is."""
    client = redis.Redis.from_url(settings.redis.url)
    prefix = settings.redis.key_prefix
    first = reached_at = None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            learned = _labels_learned(client, prefix)
            now = time.monotonic()
            if first is None and learned > 0:
                first = (now, learned)
            if first is not None and reached_at is None and learned >= reached:
                reached_at = now
            if learned >= labels and first is not None and reached_at is not None:
                # NaN: learned before the first look (a run too small to time)
                return (
                    _rate(reached - first[1], reached_at - first[0]),
                    _rate(labels - first[1], now - first[0]),
                )
            time.sleep(0.05)
    finally:
        client.close()
    raise RuntimeError(f"the learner did not learn {labels} labels within {timeout:.0f}s")
