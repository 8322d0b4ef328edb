"""Model administration over HTTP: list versions, promote, roll back.

Changing the champion needs ``Authorization: Bearer <api.admin_token>``;
without a configured token the admin endpoints are disabled (503). Every
change is written to the registry's audit log with who (from the request),
when (the server's clock: an operator action, not an event) and why.
"""

from __future__ import annotations

import hmac
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.errors import NoModelError, SnapshotIntegrityError
from models.registry import ModelRegistry
from models.snapshots import AuditEntry

Text = Annotated[str, Field(min_length=1, max_length=500)]


class Change(BaseModel):
    """Who asks for the change, and why."""

    model_config = ConfigDict(extra="forbid", strict=True)  # {"version": true} is no version

    who: Text
    reason: Text


class Promote(Change):
    """Promote a version of the champion's lineage, or a challenger's current model."""

    version: int | None = Field(None, ge=1)
    challenger: str | None = Field(None, min_length=1, max_length=100)

    @model_validator(mode="after")
    def _one_target(self) -> Promote:
        if (self.version is None) == (self.challenger is None):
            raise ValueError("give exactly one of version and challenger")
        return self


class Rollback(Change):
    #: Roll back to this version; default: the champion before the last change.
    version: int | None = Field(None, ge=1)


#: How an admin proves it: ``Authorization: Bearer <api.admin_token>`` (in the OpenAPI).
BEARER = HTTPBearer(
    auto_error=False, scheme_name="adminToken", description="The configured api.admin_token."
)


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": {"detail": {"type": "string"}}}
            }
        },
    }


#: What the admin endpoints answer besides 200 and 422.
ADMIN_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _error("No 'Authorization: Bearer <token>' header."),
    403: _error("The token is not valid."),
    404: _error("The version or challenger does not exist."),
    409: _error("The snapshot's signature does not match: it is never loaded."),
    503: _error("The admin endpoints are disabled (no api.admin_token), or Redis is unavailable."),
}


def admin_router(registry: ModelRegistry, token: str | None, refresh: Any) -> APIRouter:
    """The admin endpoints; ``refresh`` is awaited after a change so it serves at once.

    Parameters
    ----------
    registry
        The model registry the endpoints list, promote and roll back.
    token
        The bearer token a change needs (None: the admin endpoints answer 503).
    refresh
        An async callable with no arguments that loads the new champion into this process.
    """
    router = APIRouter()

    def authorised(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    ) -> None:
        if token is None:
            raise HTTPException(
                503, "admin endpoints are disabled: set FRAUDSTREAM_API__ADMIN_TOKEN"
            )
        if credentials is None:
            raise HTTPException(
                401,
                "authorization: a 'Bearer <token>' header is required",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
            raise HTTPException(403, "authorization: the token is not valid")

    admin_only = [Depends(authorised)]  # (a local Annotated alias would not resolve here)

    @router.get("/v1/models")
    async def models() -> dict[str, Any]:
        kept = await registry.kept()
        return {
            "champion": await registry.champion_version(),
            "versions": [asdict(meta) for meta in kept.values() if meta is not None],
            #: kept versions whose signature does not hold: never loaded
            "refused": [version for version, meta in kept.items() if meta is None],
            "audit": [asdict(e) for e in await registry.audit()],
        }

    @router.post("/v1/admin/promote", dependencies=admin_only, responses=ADMIN_RESPONSES)
    async def promote(body: Promote) -> dict[str, Any]:
        if body.challenger is not None:
            other = registry.challenger(body.challenger)
            return await _change(lambda at: registry.adopt(other, body.who, body.reason, at))
        version = body.version or 0
        return await _change(lambda at: registry.promote(version, body.who, body.reason, at))

    @router.post("/v1/admin/rollback", dependencies=admin_only, responses=ADMIN_RESPONSES)
    async def rollback(body: Rollback) -> dict[str, Any]:
        return await _change(lambda at: registry.rollback(body.who, body.reason, at, body.version))

    async def _change(act: Any) -> dict[str, Any]:
        at = datetime.now(tz=UTC).isoformat()
        try:
            entry: AuditEntry = await act(at)
        except NoModelError as exc:
            raise HTTPException(404, str(exc)) from None
        except SnapshotIntegrityError as exc:
            raise HTTPException(409, str(exc)) from None
        await refresh()
        return asdict(entry)

    return router
