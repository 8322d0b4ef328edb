"""The scoring API: ``create_app(settings, store, registry)``.

``POST /v1/score`` scores a transaction from its card's current feature state
with the latest published model snapshot. The API reads state and snapshots
read-only and never writes. A background task picks up newer snapshots, so a
new model is served within ``api.model_refresh_seconds`` without a restart.

Failures answer fast and say why (``{"detail": ..., "reason": ...}``): Redis
unreachable or too slow, or no model loaded, is ``503`` with ``Retry-After``;
so is load over ``api.max_in_flight`` (:mod:`stream.serving.guard`). ``/healthz``
says the process is alive, ``/readyz`` whether it can score now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.telemetry import TelemetryConfig
from prometheus_client import CollectorRegistry, make_asgi_app
from pydantic_core import to_json
from redis.exceptions import RedisClusterException, RedisError
from river import base
from starlette.routing import Route

from features.store import FeatureStore, ScoredRecord
from features.vector import FEATURE_SET_VERSION
from models.errors import ModelError, NoModelError
from models.reasons import reasons
from models.registry import ModelRegistry
from models.scoring import ModelHolder, score_readonly, score_readonly_many
from monitoring.metrics import ApiMetrics
from producers.schema import TransactionRecord
from stream.runtime.tasks import cancel_and_wait
from stream.serving.admin import admin_router
from stream.serving.admission import ADMISSION, Admission
from stream.serving.bodies import (
    openapi_body,
    openapi_components,
    openapi_flags,
    read_body,
    read_flag,
)
from stream.serving.decisions import Decision, DecisionLog
from stream.serving.guard import Guard
from stream.serving.refresher import ModelRefresher
from stream.serving.schemas import (
    COMMON_RESPONSES,
    VALIDATION_RESPONSE,
    Health,
    Ready,
    ScoreBatch,
    ScoreBatchResponse,
    ScoreResponse,
    problem,
)
from stream.serving.warm_up import WARM_UP_CONNECTIONS, warm_up

log = logging.getLogger(__name__)

#: The scoring routes' query flags, as documented.
FLAGS = {
    "features": "add the feature vector the score was computed from",
    "explain": "add the features that pushed the score up most (reason codes)",
}
#: FastAPI's native OpenTelemetry, off (see :func:`create_app`).
NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


class AsgiEndpoint:
    """An ASGI app as a route's endpoint. Starlette calls an object as the ASGI app it is,
    where it would wrap a function (``make_asgi_app`` returns one) as a request handler."""

    def __init__(self, app: Callable[[Any, Any, Any], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


class Answer(JSONResponse):
    """A JSON answer encoded by pydantic's serializer: a batch of 100 answers in 25 us,
    where the standard library's takes 138.

    >>> Answer({"score": 0.25, "txn_id": "t1"}).body
    b'{"score":0.25,"txn_id":"t1"}'
    """

    def render(self, content: Any) -> bytes:
        return to_json(content)


def create_app(
    store: FeatureStore,
    registry: ModelRegistry,
    metrics_registry: CollectorRegistry,
    refresh_seconds: float = 1.0,
    admin_token: str | None = None,
    *,
    max_in_flight: int = 64,
    max_loop_lag_seconds: float = 0.0,
    shed_in_flight: int = 8,
    max_body_bytes: int = 64 * 1024,
    retry_after_seconds: int = 1,
    batch_max: int = 100,
    explain_top: int = 5,
    decisions: DecisionLog | None = None,
    exposed: CollectorRegistry | None = None,
) -> FastAPI:
    """The scoring API over ``store`` and ``registry``; metrics go to ``metrics_registry``.

    Parameters
    ----------
    store
        The feature state transactions are scored from (read only; closed at shutdown).
    registry
        The model registry whose champion is served (written only by the admin routes).
    metrics_registry
        The Prometheus registry the API's metrics are created in.
    refresh_seconds
        Seconds between looks for a newer champion snapshot.
    admin_token
        The bearer token of the admin endpoints (None: they are disabled, 503).
    max_in_flight, max_loop_lag_seconds, shed_in_flight
        The admission limits (:class:`~stream.serving.admission.Admission`; a lag of 0: no
        limit).
    max_body_bytes
        The largest request body taken (:class:`~stream.serving.guard.Guard`).
    retry_after_seconds
        What a 503's ``Retry-After`` tells the client to wait (seconds).
    batch_max
        The most transactions one ``/v1/score/batch`` request may hold.
    explain_top
        How many reason codes ``?explain=true`` gives.
    decisions
        The decision log every answer is kept in (:mod:`stream.serving.decisions`), run
        beside the app (None: none kept).
    exposed
        What ``/metrics`` shows instead of ``metrics_registry`` (several worker processes:
        one registry that reads them all).
    """
    metrics = ApiMetrics.create(metrics_registry)
    holder = ModelHolder()
    refresher = ModelRefresher(registry, holder, metrics)
    retry_after = {"Retry-After": str(retry_after_seconds)}

    if decisions is not None:
        decisions.on_sent = metrics.decisions_sent.inc
        decisions.on_dropped = metrics.decisions_dropped.inc
        decisions.on_buffered = metrics.decisions_buffered.set

    admission = Admission(
        metrics, max_in_flight, retry_after_seconds, max_loop_lag_seconds, shed_in_flight
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        await warm_up(store, refresher, min(WARM_UP_CONNECTIONS, max_in_flight))
        tasks = [asyncio.create_task(refresher.run(refresh_seconds))]
        if decisions is not None:
            tasks.append(asyncio.create_task(decisions.run()))
        try:
            yield {ADMISSION: admission}  # (the server's protocol asks it: .protocol)
        finally:
            admission.close()
            await cancel_and_wait(tasks)  # (a Redis command may swallow one cancellation)
            await store.close()

    app = FastAPI(
        title="fraudstream scoring API",
        version="1",
        lifespan=lifespan,
        responses=COMMON_RESPONSES,
        # FastAPI's own OpenTelemetry: this API exports Prometheus metrics instead, and the
        # check whether tracing is configured cost about 20 us per request
        telemetry=NO_TELEMETRY,
    )
    app.state.holder = holder
    app.state.refresher = refresher
    app.add_middleware(Guard, admission=admission, max_body_bytes=max_body_bytes)

    @app.exception_handler(RedisError)
    @app.exception_handler(RedisClusterException)  # (not a RedisError: a slot not served)
    async def redis_unavailable(request: Request, exc: Exception) -> JSONResponse:
        return problem(
            503,
            f"feature store unavailable ({type(exc).__name__}); try again",
            "redis_unavailable",
            retry_after,
        )

    @app.exception_handler(ModelError)
    async def model_unavailable(request: Request, exc: ModelError) -> JSONResponse:
        reason = "no_model" if isinstance(exc, NoModelError) else "model_unavailable"
        return problem(503, str(exc), reason, retry_after)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # the errors without the input (a 10 MB body came back as a 60 MB answer)
        errors = [
            {
                "loc": list(e.get("loc", ())),
                "msg": str(e.get("msg", ""))[:300],
                "type": e.get("type", ""),
            }
            for e in exc.errors()[:20]
        ]
        return JSONResponse(status_code=422, content={"detail": errors})

    def answer(
        record: ScoredRecord, features: bool, started: float, model: base.Classifier | None = None
    ) -> dict[str, Any]:
        """The response (a :class:`ScoreResponse`, as JSON-ready data); with ``model`` (the
        one that scored it), its reason codes. The decision goes to the decision log."""
        why = None if model is None else reasons(model, record.features, explain_top)
        if decisions is not None:
            decisions.record(
                Decision(
                    record.txn_id,
                    record.card_id,
                    record.terminal_id,
                    record.score,
                    record.model_version,
                    FEATURE_SET_VERSION,
                    None if why is None else [(r.feature, r.value, r.contribution) for r in why],
                    (time.perf_counter() - started) * 1000,
                    time.time(),
                )
            )
        out: dict[str, Any] = {
            "txn_id": record.txn_id,
            "score": record.score,
            "model_version": record.model_version,
            "feature_set_version": FEATURE_SET_VERSION,
        }
        if features:
            out["features"] = record.features
        if why is not None:
            out["reasons"] = [
                {"feature": r.feature, "value": r.value, "contribution": r.contribution}
                for r in why
            ]
        return out

    # The answers are built as data and returned as an Answer: FastAPI would validate a
    # returned model against response_model once more (the models still document them).

    @app.post(
        "/v1/score",
        response_model=ScoreResponse,
        response_model_exclude_none=True,
        responses=VALIDATION_RESPONSE,
        openapi_extra={
            "requestBody": openapi_body(TransactionRecord),
            "parameters": openapi_flags(FLAGS),
        },
    )
    async def score(request: Request) -> JSONResponse:
        """Score one transaction; ``features=true`` adds the vector it was scored from,
        ``explain=true`` the features that raised the score most (reason codes)."""
        started = time.perf_counter()
        body = read_body(await request.body(), TransactionRecord)
        features, explain = (read_flag(request.query_params, name) for name in FLAGS)
        if holder.current is None:
            await refresher.refresh()
        serving = holder.require()  # what score_readonly scores with: no await between
        record = await score_readonly(store, holder, body.to_event())
        return Answer(answer(record, features, started, serving.model if explain else None))

    @app.post(
        "/v1/score/batch",
        response_model=ScoreBatchResponse,
        response_model_exclude_none=True,
        responses=VALIDATION_RESPONSE,
        openapi_extra={
            "requestBody": openapi_body(ScoreBatch),
            "parameters": openapi_flags(FLAGS),
        },
    )
    async def score_batch(request: Request) -> JSONResponse:
        """Score up to ``api.batch_max`` transactions, each from the state as it is now (one
        Redis round trip for all, one model call), as ``/v1/score`` would one by one."""
        started = time.perf_counter()
        body = read_body(await request.body(), ScoreBatch)
        features, explain = (read_flag(request.query_params, name) for name in FLAGS)
        if len(body.transactions) > batch_max:
            raise RequestValidationError(
                [
                    {
                        "loc": ("body", "transactions"),
                        "type": "too_long",
                        "msg": f"at most {batch_max} transactions (api.batch_max)",
                    }
                ]
            )
        if holder.current is None:
            await refresher.refresh()
        serving = holder.require()
        records = await score_readonly_many(
            store, holder, [t.to_event() for t in body.transactions]
        )
        model = serving.model if explain else None
        return Answer({"results": [answer(r, features, started, model) for r in records]})

    # after the scoring routes: a request tries the routes in order
    app.include_router(admin_router(registry, admin_token, refresher.refresh))

    @app.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        """Liveness: the process answers (it may not be able to score: see /readyz)."""
        current = holder.current
        return Health(status="ok", model_version=None if current is None else current.version)

    @app.get("/readyz", response_model=Ready)
    async def readyz() -> Ready | JSONResponse:
        """Readiness: Redis answers and a verified model is loaded; 503 with the reason."""
        try:
            champion = await registry.champion_version()
        except RedisError as exc:
            return problem(
                503,
                f"Redis does not answer ({type(exc).__name__})",
                "redis_unavailable",
                retry_after,
            )
        current = holder.current
        if current is None:
            return problem(503, "no verified model is loaded yet", "no_model", retry_after)
        return Ready(
            status="ready",
            model_version=current.version,
            champion_version=champion,
            model_loaded_seconds_ago=round(time.monotonic() - refresher.loaded_at, 3),
            refused_versions=sorted(holder.refused),
        )

    # client_python's ASGI app, as a route of its own: a mount would redirect /metrics
    # to /metrics/, outside the guard's probes
    app.router.routes.append(
        Route(
            "/metrics",
            AsgiEndpoint(make_asgi_app(exposed or metrics_registry)),
            methods=["GET"],
            include_in_schema=False,
        )
    )

    documented = app.openapi

    def openapi() -> dict[str, Any]:
        """FastAPI's schema, with the bodies the scoring routes read themselves."""
        schema = documented()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, body in openapi_components(TransactionRecord, ScoreBatch).items():
            schemas.setdefault(name, body)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
