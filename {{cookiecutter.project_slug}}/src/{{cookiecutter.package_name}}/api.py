"""Stage 6: the REST service for the current model.

The request schema is built from the bundle's feature schema, so the OpenAPI page shows
the real feature names, types and categories. Run it with `make serve`, or
`uvicorn {{ cookiecutter.package_name }}.api:create_app --factory`.
"""

import hmac
import json
import logging
import queue
import threading
import time
from contextlib import asynccontextmanager
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field, SecretStr, create_model
from pydantic_settings import BaseSettings, SettingsConfigDict

from . import bundle, task
from .predictor import Predictor

log = logging.getLogger(__name__)

# Beyond this, scaled values overflow the float32 the model computes in; no real feature
# gets near it, so such input is an error, not an outlier.
MAX_ABS = 1e15


class Settings(BaseSettings):
    """Service settings, read from SERVICE_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="SERVICE_")

    models_dir: Path = Path("models")
    api_key: SecretStr | None = None
    max_batch_rows: int = Field(1000, ge=1)
    max_body_bytes: int = Field(5_000_000, ge=1024)
    prediction_log: bool = True
    prediction_log_path: Path = Path("logs/predictions.jsonl")


def row_model(schema: list[dict]) -> type[BaseModel]:
    """One request row: every feature required (null means missing), nothing else allowed."""
    fields: dict[str, Any] = {}
    example: dict[str, Any] = {}
    for i, feature in enumerate(schema):
        name, kind = feature["name"], feature["kind"]
        if kind == "numeric":
            value_type = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_ABS, le=MAX_ABS)]
            example[name] = round((feature["min"] + feature["max"]) / 2, 4)
            note = f"number; seen in training from {feature['min']:g} to {feature['max']:g}"
        elif kind == "categorical":
            value_type = str
            example[name] = feature["categories"][0]
            note = (
                f"one of {', '.join(feature['categories'][:20])}"
                f"{' …' if len(feature['categories']) > 20 else ''}; "
                "other values are accepted and treated as unseen"
            )
        else:
            value_type = date
            example[name] = feature["min"]
            note = f"ISO date; seen in training from {feature['min']} to {feature['max']}"
        fields[f"f{i}"] = (
            value_type | None,
            Field(..., alias=name, description=f"{note}; null when missing"),
        )
    return create_model(
        "Row",
        __config__=ConfigDict(extra="forbid", json_schema_extra={"examples": [example]}),
        **fields,
    )


def _read_schema(models_dir: Path) -> list[dict] | None:
    """The current bundle's feature schema, read before the model itself is loaded."""
    try:
        path = bundle.resolve(models_dir, "current") / bundle.METADATA
        return json.loads(path.read_text(encoding="utf-8"))["features"]
    except (OSError, ValueError, KeyError, bundle.BundleError):
        return None


class PredictionLog:
    """Appends one JSON line per request from a background thread, off the request path."""

    def __init__(self, path: Path, capacity: int = 10_000) -> None:
        self.path = path
        self.queue: queue.Queue = queue.Queue(maxsize=capacity)
        self.thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self.thread.start()

    def append(self, record: dict) -> bool:
        try:
            self.queue.put_nowait(record)
            return True
        except queue.Full:
            return False

    def _run(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            while (record := self.queue.get()) is not None:
                handle.write(json.dumps(record, default=str) + "\n")
                if self.queue.empty():
                    handle.flush()

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join(timeout=10)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests_total",
            "Requests by route and status.",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Request latency by route.",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.predictions = Counter(
            "predictions_total", task.PREDICTION_METRIC_HELP, ["value"], registry=self.registry
        )
        self.log_dropped = Counter(
            "prediction_log_dropped_total",
            "Log records dropped because the queue was full.",
            registry=self.registry,
        )


def _error(status: int, message: str) -> tuple[dict, dict]:
    return {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json")],
    }, {"type": "http.response.body", "body": json.dumps({"detail": message}).encode()}


class RequestGuard:
    """Body-size limit plus request count and latency, as plain ASGI to stay cheap."""

    def __init__(self, app, metrics: Metrics, max_body_bytes: int, routes: set[str]) -> None:
        self.app, self.metrics, self.max_body_bytes, self.routes = (
            app,
            metrics,
            max_body_bytes,
            routes,
        )

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        route = scope["path"] if scope["path"] in self.routes else "other"
        status = 500

        async def send_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            rejection = self._reject(scope)
            if rejection:
                for message in _error(*rejection):
                    await send_status(message)
            else:
                await self.app(scope, receive, send_status)
        finally:
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)

    def _reject(self, scope) -> tuple[int, str] | None:
        if scope["method"] not in {"POST", "PUT", "PATCH"}:
            return None
        length = dict(scope["headers"]).get(b"content-length")
        if length is None:
            return 411, "a Content-Length header is required"
        if int(length) > self.max_body_bytes:
            return 413, f"body of {int(length)} bytes is over the limit of {self.max_body_bytes}"
        return None


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for the bundle that `models/current` names."""
    settings = settings or Settings()
    schema = _read_schema(settings.models_dir)
    Row = row_model(schema) if schema else dict[str, Any]
    PredictRequest = create_model(
        "PredictRequest",
        __config__=ConfigDict(extra="forbid"),
        instances=(list[Row], Field(min_length=1, max_length=settings.max_batch_rows)),
    )
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.predictor, app.state.reason = None, "model not loaded yet"
        try:
            loaded = bundle.load(bundle.resolve(settings.models_dir, "current"))
            if schema is None or loaded.metadata["features"] != schema:
                raise bundle.BundleError("the current bundle changed during start-up; restart")
            app.state.predictor = Predictor(loaded)
            app.state.evaluation = _read_evaluation(loaded.path)
            log.info(
                "serving %s (fast path: %s)", loaded.version, app.state.predictor.fast is not None
            )
        except bundle.BundleError as exc:
            app.state.reason = str(exc)
            log.error("model not loaded, /ready answers 503: %s", exc)
        except Exception as exc:  # a corrupt file can fail in many ways: stay up, not ready
            app.state.reason = f"{type(exc).__name__}: {exc}"
            log.exception("model not loaded, /ready answers 503")
        app.state.log = (
            PredictionLog(settings.prediction_log_path) if settings.prediction_log else None
        )
        yield
        if app.state.log:
            app.state.log.close()

    app = FastAPI(
        title="sync-proj",
        description=f"Predictions of the {task.PROBLEM_TYPE} model. Schema: the current bundle's features.",
        version="1",
        lifespan=lifespan,
    )
    expected_key = settings.api_key.get_secret_value().encode() if settings.api_key else None

    def require_key(x_api_key: Annotated[str | None, Header()] = None) -> None:
        if expected_key and not (
            x_api_key and hmac.compare_digest(x_api_key.encode(), expected_key)
        ):
            raise HTTPException(401, "missing or invalid X-API-Key header")

    def predictor(request: Request) -> Predictor:
        if request.app.state.predictor is None:
            raise HTTPException(503, f"model not ready: {request.app.state.reason}")
        return request.app.state.predictor

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Name the field and the rule, without echoing the input: it may be huge or hold NaN.
        errors = [{"loc": e["loc"], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return JSONResponse({"detail": errors}, 422)

    @app.get("/health")
    async def health() -> dict:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready")
    async def ready(request: Request):
        """Readiness: the model is loaded and its hashes verified."""
        if request.app.state.predictor is None:
            return JSONResponse({"status": "not ready", "reason": request.app.state.reason}, 503)
        return {"status": "ready", "model_version": request.app.state.predictor.version}

    @app.get("/v1/model", dependencies=[Depends(require_key)])
    async def model_card(
        request: Request, served: Annotated[Predictor, Depends(predictor)]
    ) -> dict:
        """The served model: version, test metrics, feature schema and problem type."""
        meta = served.metadata
        return {
            "model_version": served.version,
            "created_at": meta["created_at"],
            "problem_type": meta["problem_type"],
            "target": meta["target"],
            "features": meta["features"],
            "metrics": request.app.state.evaluation,
            "fast_path": served.fast is not None,
        }

    @app.post(
        "/v1/predict", dependencies=[Depends(require_key)], response_model=task.PredictResponse
    )
    async def predict(
        body: PredictRequest, request: Request, served: Annotated[Predictor, Depends(predictor)]
    ) -> Response:
        """Predict for 1 to SERVICE_MAX_BATCH_ROWS rows of raw features."""
        rows = [row.model_dump(by_alias=True) for row in body.instances]
        predictions = served.predict(rows)
        payload = task.response(predictions, served.version)
        for value, count in task.prediction_counts(
            predictions, served.prediction_reference
        ).items():
            metrics.predictions.labels(value).inc(count)
        if request.app.state.log and not request.app.state.log.append(
            {
                "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                "model_version": served.version,
                "inputs": rows,
                "outputs": payload["predictions"],
            }
        ):
            metrics.log_dropped.inc()
        return JSONResponse(payload)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    routes = {route.path for route in app.routes}
    app.add_middleware(
        RequestGuard, metrics=metrics, max_body_bytes=settings.max_body_bytes, routes=routes
    )
    return app


def _read_evaluation(bundle_dir: Path) -> dict | None:
    path = bundle_dir / "evaluation.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
