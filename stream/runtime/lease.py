"""A lease in Redis for a role that must have exactly one active instance (learn, monitor).

Any number of instances of such a role may run; one holds the lease and
works, the others wait as standbys. The lease is a Redis key with a time to
live, renewed by its holder every third of it. Each acquisition takes a new
**fencing token** (``INCR`` of a key that never expires): the registry
refuses every write whose token is no longer the current one
(:class:`models.registry.Fence`), so an instance that was paused or cut off
past its lease can never write again, even before it notices.

Keys (``p`` the configured prefix), under the model registry's hash tag (the
registry's writes check the fence in the same script or transaction, so on a
Redis Cluster they must share its slot): ``{p:models}:lease:<role>``
(``"token holder"``, expiring) and ``{p:models}:lease:<role>:fence`` (the
latest token).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from features.keys import models_tag
from models.snapshots import Fence

log = logging.getLogger(__name__)

_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. ' ' .. ARGV[1], 'PX', ARGV[2])
return token
"""
_RENEW = """
local held = redis.call('GET', KEYS[1])
if held and held == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Lease:
    """The lease of one single-active ``role``, seen by the instance ``holder``.

    ``client`` is a synchronous ``redis.Redis``: the lease is taken before the
    stream starts and renewed from a thread, so a busy event loop cannot let
    it lapse.
    """

    def __init__(
        self, client: Any, key_prefix: str, role: str, holder: str, ttl_seconds: float
    ) -> None:
        self.client = client
        self.role = role
        self.holder = holder
        self.ttl_ms = max(1, int(ttl_seconds * 1000))
        self.key = f"{models_tag(key_prefix)}:lease:{role}"
        self.fence_key = f"{self.key}:fence"
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def try_acquire(self) -> Fence | None:
        """Take the lease if nobody holds it: its fence, else None."""
        token = self._acquire(keys=[self.key, self.fence_key], args=[self.holder, self.ttl_ms])
        return None if token is None else Fence(self.fence_key, int(token))

    def renew(self, fence: Fence) -> bool:
        """Extend the lease; False if it is no longer ours (it lapsed or was taken)."""
        value = f"{fence.token} {self.holder}"
        return bool(self._renew(keys=[self.key], args=[value, self.ttl_ms]))

    def release(self, fence: Fence) -> None:
        """Give the lease up now (on a clean stop), so a standby need not wait it out."""
        self._release(keys=[self.key], args=[f"{fence.token} {self.holder}"])

    def current(self) -> str | None:
        """Who holds the lease (``"token holder"``), if anyone."""
        raw = self.client.get(self.key)
        return None if raw is None else raw.decode()

    def wait(
        self, poll_seconds: float, stopped: Callable[[], bool] = lambda: False
    ) -> Fence | None:
        """Stand by until the lease is free, then take it (None if ``stopped`` first).

        Redis being unreachable is waited out like a held lease.
        """
        said = None
        while not stopped():
            try:
                fence = self.try_acquire()
                if fence is not None:
                    return fence
                held = self.current()
            except Exception as exc:  # Redis down: wait it out
                held = f"unknown ({exc!r})"
            if held != said:
                log.warning("standby for the %s role: the lease is held by %s", self.role, held)
                said = held
            time.sleep(poll_seconds)
        return None


class LeaseKeeper:
    """Renews a held lease from a daemon thread; calls ``on_lost`` once if it is lost.

    A renewal that fails because Redis is unreachable is retried until the
    lease's time to live has passed since the last success: then the lease
    is as good as lost (a standby may hold it), and ``on_lost`` is called.
    """

    def __init__(self, lease: Lease, fence: Fence, on_lost: Callable[[str], None]) -> None:
        self.lease = lease
        self.fence = fence
        self.on_lost = on_lost
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{lease.role}", daemon=True)

    def start(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def stop(self, release: bool = True) -> None:
        self._stop.set()
        if release:
            try:
                self.lease.release(self.fence)
            except Exception as exc:  # the lease lapses by itself
                log.warning("could not release the %s lease: %r", self.lease.role, exc)

    def _run(self) -> None:
        ttl = self.lease.ttl_ms / 1000
        last = time.monotonic()
        while not self._stop.wait(ttl / 3):
            try:
                if self.lease.renew(self.fence):
                    last = time.monotonic()
                    continue
                why = f"the {self.lease.role} lease (token {self.fence.token}) was taken over"
            except Exception as exc:
                if time.monotonic() - last < ttl:
                    log.warning("could not renew the %s lease: %r", self.lease.role, exc)
                    continue
                why = f"the {self.lease.role} lease could not be renewed for {ttl:g}s ({exc!r})"
            self.on_lost(why)
            return
