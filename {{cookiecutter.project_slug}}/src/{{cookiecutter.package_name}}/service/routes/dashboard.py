"""The operator dashboard and its runbook page, behind the API key when one is set."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from ... import dashboard
from ..auth import ApiKey
from ..models import ServedModel
from ..settings import Settings
from ..telemetry import Telemetry


def add_routes(
    app: FastAPI, served: ServedModel, key: ApiKey, telemetry: Telemetry, settings: Settings
) -> None:
    @app.get("/dashboard", response_class=HTMLResponse, dependencies=key.for_operators())
    async def operator_dashboard() -> HTMLResponse:
        """The operator dashboard: model, metrics, drift, traffic, registry, runbook."""
        page = dashboard.render(
            served, telemetry.metrics, settings.models_dir, settings.reports_dir
        )
        return HTMLResponse(page)

    @app.get("/dashboard/runbook", response_class=HTMLResponse, dependencies=key.for_operators())
    async def operator_runbook() -> HTMLResponse:
        return HTMLResponse(dashboard.runbook(settings.docs_dir))
