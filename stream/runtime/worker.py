"""The worker process: take the leases its roles need, then run their Faust app.

Which process writes what:

- **score** (any number, one consumer group on ``transactions``): each card's
  feature state (Kafka keys by card, so one writer per card), the scored
  record of each transaction, the ``scores`` topic, and its partitions'
  stream time. It loads models and never writes them.
- **learn** (one active): every model lineage (snapshots, journals, learned
  markers), the waiting labels, the fraud marks on feature state; each write
  checks its fencing token.
- **monitor** (one active): the drift metrics, drift events and reports.

A standby of a single-active role waits for the lease before it joins any
consumer group, so it holds no partition; once it has the lease, it resumes
from the snapshot and the journal. An instance that loses its lease (it was
paused, or cut off from Redis, past the lease) **steps down**: it replaces
itself (``exec``) with a fresh process of the same command, which stands by.
Nothing it did unfenced is lost: its uncommitted labels are redelivered to
the new active learner, whose markers make each count once.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable

import faust
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from models.snapshots import Fence
from stream.runtime.allocator import hold_thresholds
from stream.runtime.app import create_app
from stream.runtime.gc_settings import tune_for_streaming
from stream.runtime.lag import watch_lag
from stream.runtime.lease import Lease, LeaseKeeper
from stream.runtime.roles import ALL, SINGLE_ACTIVE, group_id
from stream.runtime.topics import ensure_topics
from stream.settings import Settings
from stream.wiring import build_pipeline, sync_client

log = logging.getLogger(__name__)
#: What stops a standby.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def consumed_topics(settings: Settings, roles: frozenset[str]) -> list[str]:
    """The topics a process running ``roles`` consumes (for its lag metric).

    >>> consumed_topics(Settings(), frozenset({"monitor"}))
    ['scored', 'learned']
    """
    names = [
        ("transactions", "score" in roles),
        ("labels", "learn" in roles),
        ("scored", "monitor" in roles and "score" not in roles),
        ("learned", "monitor" in roles and "learn" not in roles),
    ]
    return [settings.topics.name(name) for name, read in names if read]


def take_leases(
    settings: Settings, roles: frozenset[str], registry: CollectorRegistry
) -> dict[str, tuple[Lease, Fence]]:
    """Stand by until this process holds the lease of each single-active role it runs."""
    active = Gauge(
        "fraudstream_lease_active",
        "1 while this process holds the role's lease (0: a standby)",
        ["role"],
        registry=registry,
    )
    taken = Counter(
        "fraudstream_lease_takeovers",
        "Leases this process took over from an earlier holder",
        ["role"],
        registry=registry,
    )
    token = Gauge(
        "fraudstream_lease_token", "Fencing token of the held lease", ["role"], registry=registry
    )
    client = sync_client(settings)
    holder = f"{socket.gethostname()}:{os.getpid()}"
    leases = {}
    # a standby that is stopped (SIGTERM, Ctrl-C) leaves at once, with status 0: nothing
    # runs yet (Faust handles the signals once the roles run)
    stop = threading.Event()
    before = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in STOP_SIGNALS}
    try:
        for role in SINGLE_ACTIVE:
            if role not in roles:
                continue
            active.labels(role=role).set(0)
            taken.labels(role=role)
            lease = Lease(
                client, settings.redis.key_prefix, role, holder, settings.worker.lease_seconds
            )
            fence = lease.wait(settings.worker.standby_poll_seconds, stop.is_set)
            if fence is None:
                log.warning("stopped while a standby for the %s role", role)
                raise SystemExit(0)
            active.labels(role=role).set(1)
            token.labels(role=role).set(fence.token)
            if fence.token > 1:
                taken.labels(role=role).inc()
            log.warning(
                "%s took the %s lease (fencing token %d)%s",
                holder,
                role,
                fence.token,
                ": took over from the previous holder" if fence.token > 1 else "",
            )
            leases[role] = (lease, fence)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    return leases


def step_down(why: str) -> None:
    """Stop working for a role whose lease is lost: become a fresh standby, in place."""
    log.error("stepping down: %s; restarting as a standby", why)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, sys.orig_argv)


def run_worker(
    settings: Settings,
    roles: frozenset[str] = ALL,
    loglevel: str = "info",
    on_lost: Callable[[str], None] = step_down,
) -> None:
    """Create the topics, serve ``/metrics``, take the leases and run the roles' Faust app."""
    registry = CollectorRegistry()
    created = ensure_topics(settings)
    if created:
        log.info("created topics %s", ", ".join(created))
    start_http_server(settings.worker.metrics_port, settings.worker.metrics_host, registry)
    leases = take_leases(settings, roles, registry)
    keepers = [LeaseKeeper(lease, fence, on_lost).start() for lease, fence in leases.values()]
    learn = leases.get("learn")
    pipeline = build_pipeline(settings, registry, roles, None if learn is None else learn[1])
    group = group_id(settings.worker.app_id, roles)
    watch_lag(settings.kafka.bootstrap_servers, group, consumed_topics(settings, roles), registry)
    log.warning("running roles %s in consumer group %s", ", ".join(sorted(roles)), group)
    app = create_app(settings, pipeline, on_fenced=on_lost)
    tune_for_streaming()  # start-up is done: freeze it, and collect young objects less often
    hold_thresholds(settings.worker.malloc_mmap_threshold_bytes)  # heaps that give back
    try:
        faust.Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
    finally:
        for keeper in keepers:  # a clean stop hands the leases over at once
            keeper.stop(release=True)
