"""The scoring API's outermost layer, as plain ASGI middleware around the whole app.

* **Admission**: a request the server did not already let in
  (:mod:`stream.serving.protocol` asks :class:`~stream.serving.admission.Admission` as
  soon as it has read the headers) is let in here, or answered ``503`` with
  ``Retry-After`` at once.
* **Body size**: a body over ``max_body_bytes`` is answered 413, from its
  ``Content-Length`` before reading, or as soon as a streamed body passes it.
* **Every answer counted**: ``fraudstream_api_requests_total`` by route and
  status, errors included; an exception no handler took (a bug) is answered
  ``500`` with a JSON body here, instead of the connection being reset.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.types import Message, Scope

from stream.serving.admission import ADMITTED, PROBES, Admission

log = logging.getLogger(__name__)


class BodyTooLarge(Exception):
    """The request body passed the configured limit while it was read."""


async def answer(
    send: Any, status: int, body: dict[str, Any], headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    """Send a whole JSON response.

    Parameters
    ----------
    send
        The ASGI ``send`` callable of the request.
    status
        The HTTP status code.
    body
        The JSON body, e.g. ``{"detail": ..., "reason": ...}``.
    headers
        More headers, as ASGI (name, value) byte pairs (e.g. ``Retry-After``).
    """
    await _answer_bytes(send, status, json.dumps(body, separators=(",", ":")).encode(), headers)


async def _answer_bytes(
    send: Any, status: int, payload: bytes, headers: tuple[tuple[bytes, bytes], ...]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class Guard:
    """Lets requests in through ``admission``, refuses bodies over ``max_body_bytes`` and
    counts every response (see the module docstring).

    Parameters
    ----------
    app
        The ASGI app guarded.
    admission
        Who gets in, and the count of every answer.
    max_body_bytes
        The largest request body accepted; a larger one is answered 413.
    """

    def __init__(self, app: Any, admission: Admission, max_body_bytes: int) -> None:
        self.app = app
        self.admission = admission
        self.max_body_bytes = max_body_bytes
        self.retry_after = ((b"retry-after", admission.retry_after),)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # (let in by the server: from the moment its headers were read, a turn earlier)
        started = scope.get(ADMITTED) or time.perf_counter()
        status = 0
        #: Set when the body passed the limit while the app read it: FastAPI turns that
        #: into its own 400 ("error parsing the body"), answered as the 413 it is instead.
        too_large: list[bool] = []

        async def counted(message: Message) -> None:
            nonlocal status
            if too_large and message["type"].startswith("http.response"):
                if status or message["type"] != "http.response.start":
                    return  # the app's own answer to the broken read: dropped
                status = 413
                await answer(send, 413, self._too_large())
                return
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._admit(scope, self._limited(receive, too_large), counted)
        except BodyTooLarge:
            if not status:
                await answer(counted, 413, self._too_large())
        except Exception:  # a bug: answered and counted, the connection kept
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if not status:
                await answer(counted, 500, {"detail": "internal error", "reason": "bug"})
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.admission.count(route, status or 500, time.perf_counter() - started)

    async def _admit(self, scope: Scope, receive: Any, send: Any) -> None:
        admission = self.admission
        if ADMITTED not in scope:  # (the server's protocol did not ask: asked here)
            refusal = "" if scope["path"] in PROBES else admission.refusal()
            if refusal:
                payload = admission.refused_body(refusal)
                await _answer_bytes(send, 503, payload, self.retry_after)
                return
            admission.enter()
        try:
            length = dict(scope["headers"]).get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
                await answer(send, 413, self._too_large())
                return
            await self.app(scope, receive, send)
        finally:
            admission.leave()

    def _limited(self, receive: Any, too_large: list[bool]) -> Any:
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message: Message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    too_large.append(True)
                    raise BodyTooLarge
            return message

        return limited

    def _too_large(self) -> dict[str, Any]:
        return {
            "detail": f"body: larger than {self.max_body_bytes} bytes (api.max_body_bytes)",
            "reason": "too_large",
        }
