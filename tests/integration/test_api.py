"""The scoring API at its boundary, over the real Redis: strict bodies, size limits, answers
that do not echo their input, load shedding, readiness and the documented contract."""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from features.events import Transaction
from features.redis_store import RedisFeatureStore
from models.factory import build_model
from models.reasons import contributions
from models.registry import ModelRegistry
from models.snapshots import SnapshotMeta
from producers.schema import TransactionRecord
from stream.serving.app import create_app
from tests.support import publish_trained_champion

pytestmark = pytest.mark.integration
KEY = b"test-key"
TOKEN = "a-long-admin-token-for-tests"
BODY = TransactionRecord.from_event(Transaction("q", "c", "p", 5.0, 1e5)).model_dump(mode="json")


@pytest.fixture
def api(redis_url: str) -> Iterator[tuple[TestClient, ModelRegistry, CollectorRegistry]]:
    prefix = f"fs-{secrets.token_hex(4)}"

    async def publish() -> None:
        store = RedisFeatureStore.from_url(redis_url, prefix)
        try:
            registry = ModelRegistry(store.client, prefix, KEY)
            for i in range(2):
                await registry.publish(
                    build_model("logistic_regression"),
                    SnapshotMeta(0, i or None, "logistic_regression", 2, 0, None),
                )
        finally:
            await store.close()

    asyncio.run(publish())
    store = RedisFeatureStore.from_url(redis_url, prefix)
    registry = ModelRegistry(store.client, prefix, KEY)
    metrics = CollectorRegistry()
    app = create_app(
        store, registry, metrics, refresh_seconds=0.1, admin_token=TOKEN, max_body_bytes=4096
    )
    with TestClient(app) as client:
        yield client, registry, metrics


def test_a_new_process_warms_up_before_it_serves(redis_url: str) -> None:
    """Before the first request: the champion loaded and the Redis pool holding the
    connections of as many concurrent requests (a cold process under load refused most
    of its first half-second, bench api); nothing written, no decision logged."""
    import redis.asyncio as aioredis

    prefix, name = f"fs-{secrets.token_hex(4)}", f"warm-{secrets.token_hex(4)}"

    async def publish() -> None:
        store = RedisFeatureStore.from_url(redis_url, prefix)
        try:
            await ModelRegistry(store.client, prefix, KEY).publish(
                build_model("logistic_regression"),
                SnapshotMeta(0, None, "logistic_regression", 2, 0, None),
            )
        finally:
            await store.close()

    async def ours() -> tuple[int, list[str]]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            named = [c for c in await client.client_list() if c.get("name") == name]
            return len(named), sorted(map(str, await client.keys(f"{prefix}:*")))
        finally:
            await client.aclose()

    asyncio.run(publish())
    keys_before = asyncio.run(ours())[1]
    store = RedisFeatureStore(aioredis.Redis.from_url(redis_url, client_name=name), prefix)
    metrics = CollectorRegistry()
    app = create_app(store, ModelRegistry(store.client, prefix, KEY), metrics, max_in_flight=6)
    with TestClient(app):
        connections, keys_after = asyncio.run(ours())
        assert connections >= 6
        assert metrics.get_sample_value("fraudstream_api_model_version") == 1
        assert (
            metrics.get_sample_value(
                "fraudstream_api_requests_total", {"route": "/v1/score", "status": "200"}
            )
            is None
        )
    assert keys_after == keys_before


async def champion(url: str, prefix: str) -> Any:
    """The champion model published under ``prefix``, loaded on its own connection."""
    store = RedisFeatureStore.from_url(url, prefix)
    try:
        return (await ModelRegistry(store.client, prefix, KEY).load())[1]
    finally:
        await store.close()


def test_a_batch_scores_each_transaction_as_one_by_one_and_features_are_opt_in(
    redis_url: str,
) -> None:
    prefix = f"fs-{secrets.token_hex(4)}"
    txns = [
        Transaction(f"h{i}", f"c{i % 4}", f"p{i % 3}", 5.0 + 7 * i, 1e5 + 600 * i)
        for i in range(30)
    ]

    publish_trained_champion(redis_url, prefix, KEY, txns)
    store = RedisFeatureStore.from_url(redis_url, prefix)
    app = create_app(
        store, ModelRegistry(store.client, prefix, KEY), CollectorRegistry(), batch_max=8
    )
    probes = [
        TransactionRecord.from_event(
            Transaction(f"q{i}", f"c{i % 5}", f"p{i % 4}", 3.0 * i + 1, 1e5 + 20_000 + i)
        ).model_dump(mode="json")
        for i in range(8)
    ]
    with TestClient(app) as client:
        one_by_one = [
            client.post("/v1/score", json=p, params={"features": "true"}).json() for p in probes
        ]
        batch = client.post(
            "/v1/score/batch", json={"transactions": probes}, params={"features": "true"}
        )
        assert batch.status_code == 200
        results = batch.json()["results"]
        # the same vectors; the same scores but for the last bits (one model call for the
        # batch, numpy; River's own for one)
        assert [{**r, "score": 0} for r in results] == [{**r, "score": 0} for r in one_by_one]
        assert [r["score"] for r in results] == pytest.approx(
            [r["score"] for r in one_by_one], rel=1e-12
        )
        assert len({r["score"] for r in one_by_one}) > 1  # not one constant answer
        plain = client.post("/v1/score", json=probes[0]).json()
        assert "features" not in plain and plain["score"] == one_by_one[0]["score"]
        twice = json.dumps({"transactions": probes[:2]})
        twice = twice.replace('"amount"', '"card_id": "zz", "amount"', 1)
        refused = client.post(
            "/v1/score/batch", content=twice, headers={"content-type": "application/json"}
        )
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["loc"] == ["body", "card_id"]
        too_many = client.post("/v1/score/batch", json={"transactions": probes + probes[:1]})
        assert too_many.status_code == 422
        assert "api.batch_max" in too_many.json()["detail"][0]["msg"]
        # reason codes, opt-in: from the model that scored, its features' log-odds shares
        asked = {"explain": "true", "features": "true"}
        explained = [client.post("/v1/score", json=p, params=asked).json() for p in probes]
        together = client.post(
            "/v1/score/batch", json={"transactions": probes}, params=asked
        ).json()["results"]
        assert [r["reasons"] for r in together] == [r["reasons"] for r in explained]
        assert "reasons" not in plain
        model = asyncio.run(champion(redis_url, prefix))
        assert any(r["reasons"] for r in explained)
        for answer in explained:
            shares = [r["contribution"] for r in answer["reasons"]]
            assert shares == sorted(shares, reverse=True) and all(c > 0 for c in shares)
            assert len(shares) <= 5
            for reason in answer["reasons"]:
                assert reason["value"] == answer["features"][reason["feature"]]
            every = contributions(model, answer["features"])  # they add up to the logit
            logit = math.log(answer["score"] / (1 - answer["score"]))
            assert sum(every.values()) + model.intercept == pytest.approx(logit, abs=1e-9)
            assert sorted(c for c in every.values() if c > 0)[::-1][:5] == shares


def test_lax_values_and_repeated_keys_are_refused_on_http(api: Any) -> None:
    client, _, _ = api
    assert client.post("/v1/score", json=BODY).status_code == 200
    changes: list[tuple[dict[str, Any], str]] = [
        ({"lat": 10.0, "lon": False}, "lon"),
        ({"amount": "12.5"}, "amount"),
        ({"schema_version": True}, "schema_version"),
        ({"event_time": 1767225600}, "event_time"),
    ]
    for change, field in changes:
        response = client.post("/v1/score", json={**BODY, **change})
        assert response.status_code == 422, change
        assert [e["loc"][-1] for e in response.json()["detail"]] == [field], response.json()
    no_version = {k: v for k, v in BODY.items() if k != "schema_version"}
    assert client.post("/v1/score", json=no_version).status_code == 422
    twice = json.dumps(BODY)[:-1] + ', "card_id": "other"}'
    response = client.post("/v1/score", content=twice, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"] == "given more than once"
    back = client.post(
        "/v1/admin/rollback",
        json={"version": True, "who": "a", "reason": "b"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert back.status_code == 422  # true is no version (it rolled back to v1)


def test_a_big_body_is_refused_and_errors_do_not_echo_the_input(api: Any) -> None:
    client, _, metrics = api
    huge = client.post(
        "/v1/score", content=b"x" * 200_000, headers={"content-type": "application/json"}
    )
    assert huge.status_code == 413 and huge.json()["reason"] == "too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: cut off as it passes the limit
        for _ in range(100):
            yield b"z" * 1000

    streamed = client.post(
        "/v1/score", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413 and streamed.json()["reason"] == "too_large"
    text = client.post(
        "/v1/score", content=b'{"\\q": 1, "\xff": 2}', headers={"content-type": "text/plain"}
    )
    assert text.status_code == 422  # (the repeated-key check once raised a 500 here)
    long_id = {**BODY, "txn_id": "y" * 3000}  # under the limit, invalid: the 422 stays small
    response = client.post("/v1/score", json=long_id)
    assert response.status_code == 422 and len(response.content) < 1000
    assert "yyyy" not in response.text
    # refused before routing, from its Content-Length
    assert (
        metrics.get_sample_value(
            "fraudstream_api_requests_total", {"route": "unmatched", "status": "413"}
        )
        == 1
    )


def test_ready_lists_the_model_and_models_lists_a_forged_version_as_refused(api: Any) -> None:
    client, registry, _ = api
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["model_version"] == 2

    async def forge() -> None:  # a signature that is not even hex (it was a 500)
        await registry.client.hset(registry.key("snap:1"), "sig", "\xff zz")

    client.portal.call(forge)
    listing = client.get("/v1/models").json()
    assert listing["refused"] == [1] and [v["version"] for v in listing["versions"]] == [2]
    promote = client.post(
        "/v1/admin/promote",
        json={"version": 1, "who": "a", "reason": "b"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert promote.status_code == 409


def test_a_forged_champion_is_refused_and_the_api_keeps_scoring_with_its_model(
    api: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, registry, metrics = api
    assert client.post("/v1/score", json=BODY).json()["model_version"] == 2

    async def forge() -> None:  # a flipped byte in version 1, made champion behind our back
        key = registry.key("snap:1")
        blob = bytearray(await registry.client.hget(key, "blob"))
        blob[-2] ^= 0x01
        await registry.client.hset(key, "blob", bytes(blob))
        await registry.client.set(registry.key("champion"), 1)

    with caplog.at_level("ERROR"):
        client.portal.call(forge)
        time.sleep(0.5)  # several refreshes (every 0.1 s)
        answer = client.post("/v1/score", json=BODY)
    assert answer.status_code == 200 and answer.json()["model_version"] == 2
    ready = client.get("/readyz").json()
    assert ready["refused_versions"] == [1] and ready["champion_version"] == 1
    assert metrics.get_sample_value("fraudstream_api_models_refused") == 1
    assert sum("refusing the champion" in r.getMessage() for r in caplog.records) == 1


def test_the_openapi_declares_the_bearer_scheme_and_every_status(api: Any) -> None:
    client, _, _ = api
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["adminToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "The configured api.admin_token.",
    }
    promote = spec["paths"]["/v1/admin/promote"]["post"]
    assert promote["security"] == [{"adminToken": []}]
    assert {"200", "401", "403", "404", "409", "413", "422", "503"} <= set(promote["responses"])
    assert {"200", "413", "422", "503"} <= set(spec["paths"]["/v1/score"]["post"]["responses"])


async def test_the_real_api_past_its_in_flight_limit_sheds_with_503_never_500(
    redis_url: str,
) -> None:
    """200 concurrent scores on the real API and Redis, 4 allowed in flight: the excess is
    503 with Retry-After, the rest 200, no 500, and every answer counted."""
    prefix = f"fs-{secrets.token_hex(4)}"
    store = RedisFeatureStore.from_url(redis_url, prefix)
    registry = ModelRegistry(store.client, prefix, KEY)
    await registry.publish(
        build_model("logistic_regression"), SnapshotMeta(0, None, "logistic_regression", 2, 0, None)
    )
    metrics = CollectorRegistry()
    app = create_app(store, registry, metrics, max_in_flight=4, retry_after_seconds=2)
    bodies = [
        TransactionRecord.from_event(
            Transaction(f"s{i}", f"c{i % 50}", "p", 5.0, 1e5 + i)
        ).model_dump(mode="json")
        for i in range(200)
    ]
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api"
        ) as client:
            answers = await asyncio.gather(*(client.post("/v1/score", json=b) for b in bodies))
    finally:
        await store.close()
    statuses = Counter(a.status_code for a in answers)
    print("past the in-flight limit:", dict(statuses))
    assert set(statuses) == {200, 503} and statuses[200] >= 4, statuses
    shed = [a for a in answers if a.status_code == 503]
    assert all(a.headers["retry-after"] == "2" and a.json()["reason"] == "overloaded" for a in shed)
    counted = {
        status: metrics.get_sample_value(
            "fraudstream_api_requests_total", {"route": route, "status": status}
        )
        for route, status in (("/v1/score", "200"), ("unmatched", "503"))
    }
    assert counted == {"200": statuses[200], "503": statuses[503]}
    assert metrics.get_sample_value("fraudstream_api_shed_total") == statuses[503]


def test_metrics_are_served_by_client_python_on_get_only(api: Any) -> None:
    client, _, _ = api
    assert client.post("/v1/score", json=BODY).status_code in (200, 503)
    text = client.get("/metrics")
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
    assert 'fraudstream_api_requests_total{route="/v1/score"' in text.text
    openmetrics = client.get("/metrics", headers={"accept": "application/openmetrics-text"})
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.rstrip().endswith("# EOF")
    assert client.post("/metrics").status_code == 405
