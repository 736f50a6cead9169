"""POST /v1/predict, the hot path.

It is a plain Starlette route: the body is parsed and validated by pydantic-core straight
from bytes, skipping FastAPI's per-parameter machinery, which would otherwise cost more
than the prediction. Its OpenAPI entry is written by `service.openapi`.

pydantic-core keeps the last of duplicated JSON keys; the route refuses them instead. Every
key is a string followed by a colon, so a body with no more quote-colon pairs than the keys
validation kept has no duplicate; only another body (a duplicate, or a string value that
holds `":`) is parsed again to look.
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any, get_args, get_origin

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from ...problem_type import PROBLEM_TYPE
from ..auth import ApiKey
from ..models import ServedModel
from ..telemetry import Telemetry

SPACED_KEY_END = re.compile(rb'"\s+:')


class DuplicateKey(ValueError):
    """A JSON object names a key twice."""


def key_ends(raw: bytes) -> int:
    """How many colons in `raw` follow a closing quote, perhaps after spaces: one per key,
    and one per `":` inside a string value. The usual `":` is counted by bytes.count, faster
    than the regular expression."""
    return raw.count(b'":') + len(SPACED_KEY_END.findall(raw))


def _refuse_duplicates(pairs: list[tuple[str, object]]) -> None:
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise DuplicateKey(key)
        seen.add(key)


def duplicate_key(raw: bytes) -> str | None:
    """The first key a JSON object in `raw` repeats, if any."""
    try:
        json.loads(raw, object_pairs_hook=_refuse_duplicates)
    except DuplicateKey as exc:
        return exc.args[0]
    return None


@cache
def _nested(model: type[BaseModel]) -> tuple[str, ...]:
    """The fields of a request model that may hold objects or lists."""
    return tuple(name for name, field in model.model_fields.items() if _may_nest(field.annotation))


def _may_nest(annotation: Any) -> bool:
    if annotation is Any or get_origin(annotation) in (list, dict):
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_may_nest(arg) for arg in get_args(annotation))


def keys_kept(value: object) -> int:
    """How many keys a validated body holds, counted through its objects and lists."""
    if isinstance(value, BaseModel):
        nested = sum(keys_kept(getattr(value, name)) for name in _nested(type(value)))
        return len(value.model_fields_set) + nested
    if isinstance(value, dict):
        return len(value) + sum(keys_kept(item) for item in value.values())
    if not isinstance(value, list) or not value:
        return 0
    first = value[0]  # validated: every item has the type of the first
    if not isinstance(first, BaseModel | dict | list):
        return 0
    if isinstance(first, BaseModel) and not _nested(type(first)):  # rows: count them fast
        return sum(len(item.model_fields_set) for item in value)
    return sum(keys_kept(item) for item in value)


class Predict:
    """Predict for 1 to SERVICE_MAX_BATCH_ROWS rows of raw features."""

    def __init__(
        self, served: ServedModel, request_model: type[BaseModel], key: ApiKey, telemetry: Telemetry
    ) -> None:
        self.served, self.request_model, self.key, self.telemetry = (
            served,
            request_model,
            key,
            telemetry,
        )

    async def endpoint(self, request: Request) -> Response:
        if self.key.required:
            await self.key.client(request.headers.get("x-api-key"))
        media_type = request.headers.get("content-type", "").partition(";")[0]
        if media_type.strip().lower() != "application/json":
            raise HTTPException(415, "send the body as JSON, with Content-Type: application/json")
        predictor = await self.served.ready()
        raw = await request.body()
        try:
            body = self.request_model.model_validate_json(raw)
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
            ) from None
        if key_ends(raw) > keys_kept(body):
            repeated = duplicate_key(raw)
            if repeated is not None:
                message = f"duplicate key {repeated!r}: name each key once per object"
                raise RequestValidationError(
                    [{"loc": ("body",), "msg": message, "type": "duplicate_key"}]
                )
        predictions = predictor.predict_request(body)
        payload = json.dumps(PROBLEM_TYPE.response(predictions, predictor.version)).encode()
        self.telemetry.metrics.count_predictions(
            PROBLEM_TYPE.prediction_counts(predictions, predictor.prediction_reference)
        )
        self.telemetry.record(raw, payload)
        return Response(payload, media_type="application/json")

    def mount(self, app: FastAPI) -> None:
        app.router.add_route("/v1/predict", self.endpoint, methods=["POST"])
        app.router.routes.insert(0, app.router.routes.pop())  # matched first: it gets the traffic
