"""Stage 6: the REST service for the current model.

The request schema is built from the bundle's feature schema, so the OpenAPI page shows
the real feature names, types and categories. Run it with `make serve`, or
`uvicorn {{ cookiecutter.package_name }}.api:create_app --factory`.
"""

import asyncio
import base64
import contextlib
import hmac
import json
import logging
import threading
import time
from collections import deque
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from . import bundle, dashboard, task
from .predictor import Predictor, request_model

log = logging.getLogger(__name__)

COMPONENTS = "#/components/schemas/"


class Settings(BaseSettings):
    """Service settings, read from SERVICE_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="SERVICE_")

    models_dir: Path = Path("models")
    api_key: SecretStr | None = None
    max_batch_rows: int = Field(1000, ge=1)
    max_body_bytes: int = Field(5_000_000, ge=1024)
    prediction_log: bool = True
    prediction_log_path: Path = Path("logs/predictions.jsonl")
    reload_interval: float = Field(10.0, ge=0)  # seconds between pointer checks; 0 turns off
    reports_dir: Path = Path("reports")  # the dashboard shows reports/monitoring/latest.json
    docs_dir: Path = Path("docs")  # the dashboard links the runbook found here


def _read_schema(models_dir: Path) -> list[dict] | None:
    """The current bundle's feature schema, read before the model itself is loaded."""
    try:
        path = bundle.resolve(models_dir, "current") / bundle.METADATA
        return json.loads(path.read_text(encoding="utf-8"))["features"]
    except (OSError, ValueError, KeyError, bundle.BundleError):
        return None


class ValidationErrors(BaseModel):
    """A 4xx body: each problem with where it is (`loc`), what is wrong and its type."""

    detail: list[dict[str, Any]]


class PredictionLog:
    """Appends one JSON line per request, written in batches by a background thread.

    The request path only appends to a deque; the writer wakes a few times a second, so
    logging costs neither a thread hand-off nor a write per request. Each line:
    {"time", "request": {"instances": [...]}, "response": {"model_version", "predictions",
    ...}}, with both bodies exactly as they were sent.
    """

    def __init__(self, path: Path, capacity: int = 100_000, interval: float = 0.25) -> None:
        self.path, self.capacity, self.interval = path, capacity, interval
        self.pending: deque[bytes] = deque()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self.thread.start()

    def append(self, line: bytes) -> bool:
        """Queue a line; False (and nothing queued) when the writer has fallen behind."""
        if len(self.pending) >= self.capacity:
            return False
        self.pending.append(line)
        return True

    def _run(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as handle:
            while not self.stopping.wait(self.interval):
                self._drain(handle)
            self._drain(handle)

    def _drain(self, handle) -> None:
        lines = []
        while self.pending:
            lines.append(self.pending.popleft())
        if lines:
            handle.writelines(lines)
            handle.flush()

    def close(self) -> None:
        self.stopping.set()
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
        self.predicted: dict[str, Any] = {}
        self.log_dropped = Counter(
            "prediction_log_dropped_total",
            "Log records dropped because the queue was full.",
            registry=self.registry,
        )

    def count_predictions(self, counts: dict[str, int]) -> None:
        for value, count in counts.items():
            if value not in self.predicted:
                self.predicted[value] = self.predictions.labels(value)
            self.predicted[value].inc(count)


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
        self.series: dict[tuple[str, int], tuple] = {}

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
            count, latency = self._series(route, status)
            count.inc()
            latency.observe(time.perf_counter() - start)

    def _series(self, route: str, status: int) -> tuple:
        # A label lookup costs more than the update; routes and status codes are few.
        key = (route, status)
        if key not in self.series:
            self.series[key] = (
                self.metrics.requests.labels(route, str(status)),
                self.metrics.latency.labels(route),
            )
        return self.series[key]

    def _reject(self, scope) -> tuple[int, str] | None:
        if scope["method"] not in {"POST", "PUT", "PATCH"}:
            return None
        length = dict(scope["headers"]).get(b"content-length")
        if length is None:
            return 411, "a Content-Length header is required"
        if int(length) > self.max_body_bytes:
            return 413, f"body of {int(length)} bytes is over the limit of {self.max_body_bytes}"
        return None


def _json(name: str) -> dict:
    return {"content": {"application/json": {"schema": {"$ref": COMPONENTS + name}}}}


def predict_operation(with_key: bool, description: str) -> dict:
    """The OpenAPI entry of POST /v1/predict, which is not a FastAPI route (see below)."""
    operation = {
        "summary": "Predict",
        "description": description,
        "operationId": "predict",
        "requestBody": {"required": True, **_json("PredictRequest")},
        "responses": {
            "200": {"description": "One prediction per row", **_json("PredictResponse")},
            "422": {
                "description": "Invalid request: `loc` names the field",
                **_json("ValidationErrors"),
            },
            "503": {"description": "The model is not loaded"},
        },
    }
    if with_key:
        operation["parameters"] = [
            {"name": "x-api-key", "in": "header", "required": False, "schema": {"type": "string"}}
        ]
        operation["responses"]["401"] = {"description": "Missing or invalid X-API-Key"}
    return operation


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for the bundle that `models/current` names."""
    settings = settings or Settings()
    schema = _read_schema(settings.models_dir)
    PredictRequest = request_model(schema, settings.max_batch_rows)
    metrics = Metrics()

    def load_current() -> tuple[Predictor, dict | None]:
        loaded = bundle.load(bundle.resolve(settings.models_dir, "current"))
        if schema is None or loaded.metadata["features"] != schema:
            raise bundle.BundleError(
                f"{loaded.version} has other features than this process was started with; "
                "restart the service to serve it"
            )
        return Predictor(loaded), _read_evaluation(loaded.path)

    async def reload(app: FastAPI) -> bool:
        """Serve the bundle `models/current` names, if it changed. Loading and verifying
        happen off the event loop; requests keep the old model until one reference swap."""
        version = bundle.read_pointer(settings.models_dir, "current")
        served = app.state.predictor
        if version is None or (served is not None and served.version == version):
            return False
        try:
            app.state.predictor, app.state.evaluation = await asyncio.to_thread(load_current)
        except Exception as exc:
            app.state.reload_error = f"{version}: {exc}"
            log.error("kept serving %s; could not load %s", served and served.version, exc)
            raise
        app.state.reason, app.state.reload_error = "", None
        log.info("now serving %s", version)
        return True

    async def watch(app: FastAPI) -> None:
        """Follow promotions and rollbacks without a restart."""
        while True:
            await asyncio.sleep(settings.reload_interval)
            pointed = bundle.read_pointer(settings.models_dir, "current")
            if app.state.reload_error and app.state.reload_error.startswith(f"{pointed}:"):
                continue  # this version already failed; wait for the pointer to move
            with contextlib.suppress(Exception):
                await reload(app)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.predictor, app.state.evaluation = None, None
        app.state.reason, app.state.reload_error = "model not loaded yet", None
        try:
            app.state.predictor, app.state.evaluation = load_current()
            fast = app.state.predictor.fast is not None
            log.info("serving %s (fast path: %s)", app.state.predictor.version, fast)
        except bundle.BundleError as exc:
            app.state.reason = str(exc)
            log.error("model not loaded, /ready answers 503: %s", exc)
        except Exception as exc:  # a corrupt file can fail in many ways: stay up, not ready
            app.state.reason = f"{type(exc).__name__}: {exc}"
            log.exception("model not loaded, /ready answers 503")
        app.state.log = (
            PredictionLog(settings.prediction_log_path) if settings.prediction_log else None
        )
        watcher = asyncio.create_task(watch(app)) if settings.reload_interval > 0 else None
        yield
        if watcher:
            watcher.cancel()
        if app.state.log:
            app.state.log.close()

    app = FastAPI(
        title="{{ cookiecutter.project_slug }}",
        description=f"Predictions of the {task.PROBLEM_TYPE} model. Schema: the current bundle's features.",
        version="1",
        lifespan=lifespan,
    )
    expected_key = settings.api_key.get_secret_value().encode() if settings.api_key else None

    # Dependencies are async because they do no I/O: a plain `def` would be sent to the
    # thread pool on every request, which costs more than the prediction itself.
    async def require_key(x_api_key: Annotated[str | None, Header()] = None) -> None:
        if expected_key and not (
            x_api_key and hmac.compare_digest(x_api_key.encode(), expected_key)
        ):
            raise HTTPException(401, "missing or invalid X-API-Key header")

    # Without a key there is nothing to check, so the hot path skips the dependency machinery.
    guarded = [Depends(require_key)] if expected_key else []

    async def predictor(request: Request) -> Predictor:
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

    @app.get("/v1/model", dependencies=guarded)
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

    async def predict(request: Request) -> Response:
        """Predict for 1 to SERVICE_MAX_BATCH_ROWS rows of raw features."""
        if expected_key:
            await require_key(request.headers.get("x-api-key"))
        served = await predictor(request)
        raw = await request.body()
        try:
            body = PredictRequest.model_validate_json(raw)
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
            ) from None
        predictions = served.predict_request(body)
        payload = json.dumps(task.response(predictions, served.version)).encode()
        metrics.count_predictions(task.prediction_counts(predictions, served.prediction_reference))
        if request.app.state.log:
            stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
            # Both bodies are JSON already: the log line is spliced, not serialised again.
            # A raw newline in valid JSON can only be whitespace: flatten it to keep one line.
            body = raw.replace(b"\n", b" ").replace(b"\r", b" ")
            line = b'{"time": "%s", "request": %s, "response": %s}\n' % (
                stamp.encode(),
                body,
                payload,
            )
            if not request.app.state.log.append(line):
                metrics.log_dropped.inc()
        return Response(payload, media_type="application/json")

    # The hot path is a plain Starlette route: the body is parsed and validated by
    # pydantic-core straight from bytes, skipping FastAPI's per-parameter machinery, which
    # would otherwise cost more than the prediction. Its OpenAPI entry is written below.
    app.router.add_route("/v1/predict", predict, methods=["POST"])
    app.router.routes.insert(0, app.router.routes.pop())  # matched first: it gets the traffic

    @app.post("/v1/reload", dependencies=guarded)
    async def reload_model(request: Request) -> JSONResponse:
        """Serve the bundle `models/current` names now, instead of at the next check."""
        try:
            changed = await reload(request.app)
        except Exception as exc:
            return JSONResponse(
                {"detail": f"reload failed, still serving the old model: {exc}"}, 409
            )
        served = request.app.state.predictor
        return JSONResponse({"model_version": served.version, "changed": changed})

    async def operator(request: Request) -> None:
        """The dashboard takes the key as X-API-Key or as a browser's Basic password."""
        if not expected_key:
            return
        given = request.headers.get("x-api-key")
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            with contextlib.suppress(ValueError):
                given = base64.b64decode(credentials).decode().partition(":")[2]
        if not (given and hmac.compare_digest(given.encode(), expected_key)):
            raise HTTPException(
                401,
                "the dashboard needs the API key",
                {"WWW-Authenticate": 'Basic realm="dashboard"'},
            )

    @app.get("/dashboard", response_class=HTMLResponse, dependencies=[Depends(operator)])
    async def operator_dashboard(request: Request) -> HTMLResponse:
        """The operator dashboard: model, metrics, drift, traffic, registry, runbook."""
        page = dashboard.render(
            request.app.state, metrics, settings.models_dir, settings.reports_dir
        )
        return HTMLResponse(page)

    @app.get("/dashboard/runbook", response_class=HTMLResponse, dependencies=[Depends(operator)])
    async def operator_runbook() -> HTMLResponse:
        return HTMLResponse(dashboard.runbook(settings.docs_dir))

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def openapi() -> dict:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for model in (PredictRequest, task.PredictResponse, ValidationErrors):
                schema = model.model_json_schema(ref_template=COMPONENTS + "{model}")
                schemas.update(schema.pop("$defs", {}))
                schemas[model.__name__] = schema
            document["paths"]["/v1/predict"] = {
                "post": predict_operation(bool(expected_key), PredictRequest.__doc__)
            }
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi
    routes = {route.path for route in app.routes}
    app.add_middleware(
        RequestGuard, metrics=metrics, max_body_bytes=settings.max_body_bytes, routes=routes
    )
    return app


def _read_evaluation(bundle_dir: Path) -> dict | None:
    path = bundle_dir / "evaluation.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
