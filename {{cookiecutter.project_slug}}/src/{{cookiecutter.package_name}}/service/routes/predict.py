"""POST /v1/predict, the hot path.

It is a plain Starlette route: the body is parsed and validated by pydantic-core straight
from bytes, skipping FastAPI's per-parameter machinery, which would otherwise cost more
than the prediction. Its OpenAPI entry is written by `service.openapi`.
"""

from __future__ import annotations

import json

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from ...problem_type import PROBLEM_TYPE
from ..auth import ApiKey
from ..models import ServedModel
from ..telemetry import Telemetry


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
        predictor = await self.served.ready()
        raw = await request.body()
        try:
            body = self.request_model.model_validate_json(raw)
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
            ) from None
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
