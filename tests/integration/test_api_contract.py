"""Schemathesis against the live API (a real `fraudstream api` process over the real Redis,
with a champion and an admin token): every operation of its own OpenAPI, a bounded number
of generated requests each, valid and invalid. No answer may be a 5xx, carry a status the
OpenAPI does not declare, or break its declared content type or schema."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks
from schemathesis.core.result import Ok
from schemathesis.specs.openapi import checks as openapi_checks

from features.redis_store import RedisFeatureStore
from models.factory import build_model
from models.snapshots import SnapshotMeta
from stream.settings import Settings
from stream.wiring import build_registry
from tests.support import Processes, RealServers, isolated_settings, wait_api_ready

pytestmark = pytest.mark.integration

TOKEN = "schemathesis-admin-token"
EXAMPLES = 60
#: Status of every generated request, for the closing report.
STATUSES: Counter[tuple[str, int]] = Counter()
CHECKS = [
    checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
]


async def _publish(settings: Settings) -> None:
    store = RedisFeatureStore.from_url(settings.redis.url, settings.redis.key_prefix)
    try:
        registry = build_registry(settings, store)
        parent = None
        for _ in range(2):
            parent = (
                await registry.publish(
                    build_model("logistic_regression"),
                    SnapshotMeta(0, parent, "logistic_regression", 2, 0, None),
                )
            ).version
    finally:
        await store.close()


@pytest.fixture(scope="module")
def live_api(real_servers: RealServers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = isolated_settings(real_servers)
    settings = base.model_copy(update={"api": base.api.model_copy(update={"admin_token": TOKEN})})
    asyncio.run(_publish(settings))
    processes = Processes(Path(tmp_path_factory.mktemp("contract")))
    try:
        processes.start("api", settings)
        url = f"http://127.0.0.1:{settings.api.port}"

        wait_api_ready(url)
        yield url
    finally:
        processes.stop_all()
        print("schemathesis statuses:", dict(sorted(STATUSES.items())))


def test_no_5xx_and_no_undocumented_status(live_api: str) -> None:
    """Each operation's generated cases, valid and invalid (schemathesis strategies driven
    by hypothesis; its pytest plugin does not run under pytest 9)."""
    schema = schemathesis.openapi.from_url(f"{live_api}/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()  # an operation the schema fails to load
        operations.append(result.ok())
    assert {f"{o.method.upper()} {o.path}" for o in operations} >= {
        "POST /v1/score",
        "GET /readyz",
        "GET /healthz",
        "GET /v1/models",
        "POST /v1/admin/promote",
        "POST /v1/admin/rollback",
    }
    modes = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
    for operation, mode in itertools.product(operations, modes):
        if mode is modes[1] and operation.method.upper() != "POST":
            continue  # nothing to make invalid

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
            response = case.call(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=15)
            STATUSES[(f"{case.method} {case.path}", response.status_code)] += 1
            case.validate_response(response, checks=CHECKS)

        check()
