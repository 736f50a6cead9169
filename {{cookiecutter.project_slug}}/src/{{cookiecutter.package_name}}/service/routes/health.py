"""Liveness, readiness, the model card and the Prometheus metrics.

No `from __future__ import annotations` here: FastAPI reads the dependency in the model
card's signature, and it names a local variable."""

from typing import Annotated

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ...contract import Predictor
from ..auth import ApiKey
from ..models import ServedModel
from ..telemetry import Telemetry


def add_routes(
    app: FastAPI, served: ServedModel, key: ApiKey, telemetry: Telemetry, public_metrics: bool
) -> None:
    @app.get("/health")
    async def health() -> dict:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready")
    async def ready():
        """Readiness: the model is loaded, its hashes and signature verified, and its
        bundle is still there."""
        if reason := served.not_ready():
            return JSONResponse({"status": "not ready", "reason": reason}, 503)
        return {
            "status": "ready",
            "model_version": served.predictor.version,
            "content_sha256": served.digest,
        }

    @app.get("/v1/model", dependencies=key.for_clients())
    async def model_card(predictor: Annotated[Predictor, Depends(served.ready)]) -> dict:
        """The served model: version, test metrics, feature schema and problem type."""
        meta = predictor.metadata
        return {
            "model_version": predictor.version,
            "created_at": meta["created_at"],
            "problem_type": meta["problem_type"],
            "target": meta["target"],
            "features": meta["features"],
            "metrics": served.evaluation,
            "fast_path": predictor.fast is not None,
        }

    @app.get(
        "/metrics",
        include_in_schema=False,
        dependencies=[] if public_metrics else key.for_operators(),
    )
    async def prometheus() -> Response:
        """Prometheus metrics, behind the key unless SERVICE_PUBLIC_METRICS=true."""
        return Response(generate_latest(telemetry.metrics.registry), media_type=CONTENT_TYPE_LATEST)
