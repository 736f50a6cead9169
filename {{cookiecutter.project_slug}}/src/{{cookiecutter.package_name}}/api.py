"""Stage 6: the REST service for the current model.

The problem type builds the request schema from the bundle's feature schema, so the OpenAPI
page shows the real inputs, their types and ranges, and a valid example. Run it with
`make serve`, or `uvicorn {{ cookiecutter.package_name }}.api:create_app --factory`. The
parts live in `service/`: settings, the served model, the API key, telemetry, middleware
and routes.

With no SERVICE_API_KEY set, the service refuses to start unless
SERVICE_ALLOW_ANONYMOUS=true says to serve without one (`make serve` does, for local use).
"""

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from .problem_type import PROBLEM_TYPE
from .service import openapi
from .service.auth import ApiKey
from .service.middleware import RequestGuard
from .service.models import ServedModel, read_schema
from .service.routes import console, dashboard, health, operations
from .service.routes.predict import Predict
from .service.settings import Settings, from_environment
from .service.telemetry import Telemetry, longest_string
from .trends import TrafficSamples

__all__ = ["Settings", "create_app"]

log = logging.getLogger(__name__)


async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming the field and the rule, without echoing the input: it may be huge or
    hold NaN."""
    errors = [{"loc": e["loc"], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return JSONResponse({"detail": errors}, 422)


def lifespan(
    settings: Settings, served: ServedModel, telemetry: Telemetry, samples: TrafficSamples
):
    """Load the model, open the prediction log, follow `models/current` and sample traffic
    for the dashboard's chart while serving."""

    @asynccontextmanager
    async def run(app: FastAPI):
        served.load()
        if settings.prediction_log:
            telemetry.open_log(settings)
        tasks = [asyncio.create_task(samples.run(telemetry.metrics, settings.trends_interval))]
        if settings.reload_interval > 0:
            tasks.append(asyncio.create_task(served.watch(settings.reload_interval)))
        yield
        for task in tasks:
            task.cancel()
        telemetry.close()

    return run


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for the bundle that `models/current` names. Settings default to the
    environment's; invalid ones end the process with one line saying what is wrong."""
    settings = settings or from_environment()
    key = ApiKey(settings.api_key, settings.viewer_key, settings.operator_key)
    if key.anonymous:
        log.warning("SERVICE_ALLOW_ANONYMOUS=true: every route is open, the console's too")
    elif settings.api_key is None:
        log.warning("SERVICE_ALLOW_ANONYMOUS=true: the prediction routes ask for no key")
    schema = read_schema(settings.models_dir)
    served = ServedModel(settings.models_dir, schema)
    PredictRequest = PROBLEM_TYPE.request_model(schema, settings.max_batch_rows)
    telemetry = Telemetry(longest_string(PredictRequest.model_json_schema()))
    samples = TrafficSamples()

    app = FastAPI(
        title="{{ cookiecutter.project_slug }}",
        description=f"Predictions of the {PROBLEM_TYPE.name} model. Schema: the current bundle's features.",
        version="1",
        openapi_url=None,  # served by `openapi.install`, with the docs pages, behind the key
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan(settings, served, telemetry, samples),
    )
    app.state.telemetry = telemetry  # its metrics feed /metrics and the dashboard's trends
    app.add_exception_handler(RequestValidationError, invalid_request)
    health.add_routes(app, served, key, telemetry, settings.public_metrics)
    Predict(served, PredictRequest, key, telemetry).mount(app)
    operations.add_routes(app, served, key)
    ops = console.add_routes(app, served, key, settings)
    dashboard.add_routes(app, served, key, telemetry, settings, ops, samples)
    openapi.install(app, PredictRequest, key, settings.public_docs)
    routes = {route.path for route in app.routes}
    app.add_middleware(
        RequestGuard,
        metrics=telemetry.metrics,
        max_body_bytes=settings.max_body_bytes,
        routes=routes,
        limits={"/dashboard/upload": settings.max_upload_bytes},
    )
    return app
