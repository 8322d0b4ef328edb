"""Request bodies and query flags of the scoring routes, read once.

FastAPI reads a body parameter by parsing the JSON into Python objects, then
validating them, in its dependency solver; the scoring routes also parsed it
a second time to find keys given twice (JSON parsers keep the last one
silently). Here the body is parsed and validated in one pass by pydantic-core
(:func:`read_body`); keys given twice are ruled out by counting, as the
stream's decoder does, and looked for object by object only when the count
cannot tell. In ``bench api``'s in-process measure (``python -m
tests.benchmarks.api_app``) this took the app's cost of one ``/v1/score``
from about 150 to 85 us of the framework's part.

The routes still document their bodies and flags in the OpenAPI schema
(:func:`openapi_body`, :func:`openapi_flags`), from the same pydantic models.

Errors are FastAPI's: :class:`~fastapi.exceptions.RequestValidationError`,
each with ``loc`` (``("body", field, ...)`` or ``("query", name)``), ``msg``
and ``type``.

Examples
--------
>>> from producers.schema import TransactionRecord
>>> raw = b'{"schema_version": 1, "txn_id": "t1", "card_id": "c1", "terminal_id": "p1",'
>>> raw += b' "amount": 9.5, "event_time": "2026-01-01T00:00:00Z"}'
>>> read_body(raw, TransactionRecord).amount
9.5
>>> try:
...     read_body(raw.replace(b'"amount"', b'"card_id": "c2", "amount"'), TransactionRecord)
... except RequestValidationError as exc:
...     print(exc.errors())
[{'loc': ('body', 'card_id'), 'msg': 'given more than once', 'type': 'duplicate_key'}]
>>> read_flag({"explain": "yes"}, "explain"), read_flag({}, "explain")
(True, False)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, TypeAdapter, ValidationError

from producers.schema import repeated_in

M = TypeVar("M", bound=BaseModel)

_FLAG = TypeAdapter(bool)


def read_body(raw: bytes, model: type[M]) -> M:
    """``raw`` (JSON) validated as ``model``, no key of any of its objects given twice.

    Parameters
    ----------
    raw
        The request body.
    model
        The body's model (strict types and extra keys refused as the model says).

    Raises
    ------
    RequestValidationError
        What is wrong, field by field (``loc`` starts with ``"body"``).
    """
    try:
        body = model.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(
            [
                {"loc": ("body", *e["loc"]), "msg": e["msg"], "type": e["type"]}
                for e in exc.errors(include_url=False, include_input=False)
            ]
        ) from None
    repeated = repeated_in(raw, body)
    if repeated:
        raise RequestValidationError(
            [
                {"loc": ("body", key), "msg": "given more than once", "type": "duplicate_key"}
                for key in repeated
            ]
        )
    return body


def read_flag(query: Mapping[str, str], name: str) -> bool:
    """The boolean query parameter ``name`` (``true``/``false``, ``1``/``0``, ``yes``/``no``,
    ``on``/``off``, as FastAPI reads a ``bool``); False when absent.

    Raises
    ------
    RequestValidationError
        The value is none of those (``loc`` is ``("query", name)``).
    """
    value = query.get(name)
    if value is None:
        return False
    try:
        return _FLAG.validate_python(value)
    except ValidationError:
        raise RequestValidationError(
            [
                {
                    "loc": ("query", name),
                    "msg": "Input should be a valid boolean, unable to interpret input",
                    "type": "bool_parsing",
                }
            ]
        ) from None


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of a route reading ``model`` with :func:`read_body` (its
    schema as a component: :func:`openapi_components`)."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"required": True, "content": {"application/json": {"schema": ref}}}


def openapi_flags(described: Mapping[str, str]) -> list[dict[str, Any]]:
    """The OpenAPI ``parameters`` of boolean query flags (name -> description)."""
    return [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": text,
            "schema": {"type": "boolean", "default": False, "title": name.capitalize()},
        }
        for name, text in described.items()
    ]


def openapi_components(*models: type[BaseModel]) -> dict[str, Any]:
    """The component schemas of ``models`` and of every model they refer to."""
    out: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out
