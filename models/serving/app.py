"""The scoring API: ``create_app(settings, store, registry)``.

``POST /v1/score`` scores a transaction from its card's current feature state
with the latest published model snapshot. The API reads state and snapshots
read-only and never writes. A background task picks up newer snapshots, so a
new model is served within ``api.model_refresh_seconds`` without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel

from features.store import FeatureStore
from features.vector import FEATURE_SET_VERSION
from models.errors import ModelError, NoModelError, SnapshotIntegrityError
from models.following import follow
from models.registry import ModelRegistry
from models.scoring import ModelHolder, score_readonly
from models.serving.admin import admin_router
from monitoring.metrics import ApiMetrics
from producers.schema import TransactionRecord

log = logging.getLogger(__name__)


class ScoreResponse(BaseModel):
    """A fraud score and exactly what it was computed from."""

    txn_id: str
    score: float
    model_version: int
    feature_set_version: int
    features: dict[str, float]


class Health(BaseModel):
    status: str
    model_version: int | None


class ModelRefresher:
    """Keeps a :class:`ModelHolder` on the registry's latest version."""

    def __init__(self, registry: ModelRegistry, holder: ModelHolder, metrics: ApiMetrics):
        self.registry = registry
        self.holder = holder
        self.metrics = metrics

    async def refresh(self) -> None:
        meta = await follow(self.registry, self.holder)
        if meta is not None:
            self.metrics.model_version.set(meta.version)
            log.info("serving model version %d", meta.version)

    async def run(self, every: float) -> None:
        while True:
            try:
                await self.refresh()
            except SnapshotIntegrityError:
                log.exception("refusing a model snapshot")
            except Exception:
                log.exception("model refresh failed; keeping the current model")
            await asyncio.sleep(every)


def get_holder(request: Request) -> ModelHolder:
    """The model holder of the app serving ``request``."""
    holder: ModelHolder = request.app.state.holder
    return holder


def get_refresher(request: Request) -> ModelRefresher:
    refresher: ModelRefresher = request.app.state.refresher
    return refresher


HolderDep = Annotated[ModelHolder, Depends(get_holder)]
RefresherDep = Annotated[ModelRefresher, Depends(get_refresher)]


def create_app(
    store: FeatureStore,
    registry: ModelRegistry,
    metrics_registry: CollectorRegistry,
    refresh_seconds: float = 1.0,
    admin_token: str | None = None,
) -> FastAPI:
    """The scoring API over ``store`` and ``registry``; metrics go to ``metrics_registry``."""
    metrics = ApiMetrics.create(metrics_registry)
    holder = ModelHolder()
    refresher = ModelRefresher(registry, holder, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(refresher.run(refresh_seconds))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await store.close()

    app = FastAPI(title="fraudstream scoring API", version="1", lifespan=lifespan)
    app.state.holder = holder
    app.state.refresher = refresher
    app.include_router(admin_router(registry, admin_token, refresher.refresh))

    @app.exception_handler(ModelError)
    async def model_error(request: Request, exc: ModelError) -> JSONResponse:
        status = 503 if isinstance(exc, NoModelError) else 500
        return JSONResponse(status_code=status, content={"detail": str(exc)})

    @app.middleware("http")
    async def observe(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics.latency.labels(route=path).observe(time.perf_counter() - started)
        metrics.requests.labels(route=path, status=str(response.status_code)).inc()
        return response

    @app.post("/v1/score", response_model=ScoreResponse)
    async def score(
        body: TransactionRecord, holder: HolderDep, refresher: RefresherDep
    ) -> ScoreResponse:
        if holder.current is None:
            await refresher.refresh()
        record = await score_readonly(store, holder, body.to_event())
        return ScoreResponse(
            txn_id=record.txn_id,
            score=record.score,
            model_version=record.model_version,
            feature_set_version=FEATURE_SET_VERSION,
            features=record.features,
        )

    @app.get("/healthz", response_model=Health)
    async def healthz(holder: HolderDep) -> Health:
        current = holder.current
        return Health(status="ok", model_version=None if current is None else current.version)

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics_registry), media_type=CONTENT_TYPE_LATEST)

    return app
