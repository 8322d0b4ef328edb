"""What the scoring API reads and answers: its request and response bodies, and problems.

These pydantic models are the API's contract (they make its OpenAPI
schema); :mod:`stream.serving.app` answers with them.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from producers.schema import TransactionRecord

#: No batch is ever larger than this (the configured ``api.batch_max`` is at most it).
BATCH_HARD_MAX = 1_000


class ReasonCode(BaseModel):
    """A feature that pushed the score up: its value and its contribution to the score's
    log-odds (:mod:`models.reasons`)."""

    feature: str
    value: float
    contribution: float


class ScoreResponse(BaseModel):
    """A fraud score, the model that gave it, and (asked with ``?features=true``) exactly
    the feature vector it was computed from; with ``?explain=true``, the features that
    pushed it up most, from that same model."""

    txn_id: str
    score: float
    model_version: int
    feature_set_version: int
    features: dict[str, float] | None = None
    reasons: list[ReasonCode] | None = None


class ScoreBatch(BaseModel):
    """Transactions to score at once (at most ``api.batch_max``)."""

    model_config = ConfigDict(extra="forbid")

    transactions: list[TransactionRecord] = Field(min_length=1, max_length=BATCH_HARD_MAX)


class ScoreBatchResponse(BaseModel):
    """One answer per transaction, in the order given."""

    results: list[ScoreResponse]


class Health(BaseModel):
    status: str
    model_version: int | None


class Ready(BaseModel):
    """Whether this process can score now, and with what."""

    status: str
    model_version: int
    #: The registry's champion now (differs from ``model_version`` until the next
    #: refresh, or while the champion is refused).
    champion_version: int | None
    #: Seconds since this process loaded the model it scores with.
    model_loaded_seconds_ago: float
    refused_versions: list[int]


class Problem(BaseModel):
    """Why a request was not answered: a message, and a reason code to act on."""

    detail: str
    reason: str


class FieldError(BaseModel):
    """One thing wrong with a request: where (``["body", field]``, ``["query", name]``),
    what, and its kind (pydantic's error type, ``duplicate_key``, ``too_long``)."""

    loc: list[str | int]
    msg: str
    type: str


class ValidationProblem(BaseModel):
    """A request refused as invalid: every field error (the input is not echoed)."""

    detail: list[FieldError]


#: The 422 of a route that reads its body itself (:mod:`stream.serving.bodies`).
VALIDATION_RESPONSE: dict[int | str, dict[str, Any]] = {
    422: {"model": ValidationProblem, "description": "The body or a query flag is invalid."}
}


def problem(
    status: int, detail: str, reason: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """A refusal as a :class:`Problem` body.

    Parameters
    ----------
    status
        The HTTP status code (503: try again later).
    detail
        What went wrong, for a person.
    reason
        A short code to act on (``redis_unavailable``, ``no_model``, ...).
    headers
        More response headers (e.g. ``Retry-After``).
    """
    return JSONResponse(
        status_code=status, content={"detail": detail, "reason": reason}, headers=headers
    )


#: What every route may answer besides its own codes (the guard's, and the refusals).
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "The body could not be parsed (not JSON, or a broken encoding)."},
    413: {"model": Problem, "description": "The body is larger than api.max_body_bytes."},
    503: {
        "model": Problem,
        "description": (
            "Overloaded (api.max_in_flight), Redis "
            "unreachable, or no model loaded; see Retry-After."
        ),
    },
}
