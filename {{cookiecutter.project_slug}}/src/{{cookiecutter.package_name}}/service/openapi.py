"""The OpenAPI document and its pages. POST /v1/predict is not a FastAPI route (see
routes.predict), so its entry is written here, with the request model built from the
bundle's schema. The document shows the training range of every feature: with a key set,
it and its pages (/docs, /redoc) need the key unless SERVICE_PUBLIC_DOCS=true."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel

from ..problem_type import PROBLEM_TYPE
from .auth import ApiKey

COMPONENTS = "#/components/schemas/"


class ValidationErrors(BaseModel):
    """A 4xx body: each problem with where it is (`loc`), what is wrong and its type."""

    detail: list[dict[str, Any]]


def _json(name: str) -> dict:
    return {"content": {"application/json": {"schema": {"$ref": COMPONENTS + name}}}}


def predict_operation(with_key: bool, description: str) -> dict:
    """The OpenAPI entry of POST /v1/predict."""
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
            "415": {"description": "The body is not sent as application/json"},
            "503": {"description": "The model is not loaded"},
        },
    }
    if with_key:
        operation["parameters"] = [
            {"name": "x-api-key", "in": "header", "required": False, "schema": {"type": "string"}}
        ]
        operation["responses"]["401"] = {"description": "Missing or invalid X-API-Key"}
    return operation


def install(app: FastAPI, request_model: type[BaseModel], key: ApiKey, public: bool) -> None:
    """Make `app.openapi` build the document once, with the predict entry and its models,
    and serve it at /openapi.json with its pages, behind the key unless `public`."""

    def openapi() -> dict:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for model in (request_model, PROBLEM_TYPE.PredictResponse, ValidationErrors):
                schema = model.model_json_schema(ref_template=COMPONENTS + "{model}")
                schemas.update(schema.pop("$defs", {}))
                schemas[model.__name__] = schema
            document["paths"]["/v1/predict"] = {
                "post": predict_operation(key.required, request_model.__doc__)
            }
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi
    guard = [] if public else key.for_operators()

    @app.get("/openapi.json", include_in_schema=False, dependencies=guard)
    async def document() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=guard)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - Swagger UI")

    @app.get("/redoc", include_in_schema=False, dependencies=guard)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - ReDoc")
