"""A batch handler is retried until it succeeds: each failure counted, logged and waited
out by the backoff; a fenced learner steps down instead of counting an error."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import cast

import pytest
from prometheus_client import CollectorRegistry, Counter

from models.errors import FencedError
from stream.runtime import app
from stream.runtime.processing import Pipeline


def test_failures_are_retried_counted_and_the_result_returned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app, "RETRY_BACKOFF", (0.001, 0.002))
    registry = CollectorRegistry()
    errors = Counter("errors", "", ["stage"], registry=registry)
    pipeline = cast(Pipeline, SimpleNamespace(metrics=SimpleNamespace(errors=errors)))
    fenced: list[str] = []
    calls: list[list[int]] = []

    async def handle(records: list[int]) -> int:
        calls.append(records)
        if len(calls) == 1:
            raise ConnectionError("redis went away")
        if len(calls) == 2:
            raise FencedError("the lease was taken over")
        if len(calls) == 3:
            raise TimeoutError("kafka is slow")
        return sum(records)

    result = asyncio.run(app._with_retries(handle, [1, 2, 3], pipeline, fenced.append))
    assert result == 6 and calls == [[1, 2, 3]] * 4
    assert registry.get_sample_value("errors_total", {"stage": "infrastructure"}) == 2
    assert fenced == ["the lease was taken over"]


def test_cancellation_is_not_retried() -> None:
    pipeline = cast(Pipeline, SimpleNamespace(metrics=SimpleNamespace(errors=None)))

    async def handle(records: list[int]) -> int:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(app._with_retries(handle, [1], pipeline))
