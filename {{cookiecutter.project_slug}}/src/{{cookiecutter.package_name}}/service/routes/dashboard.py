"""The operator dashboard, its charts, job pages and runbook: for the viewer and operator
keys (any caller when the service runs without keys).

No `from __future__ import annotations` here: FastAPI reads the dependency in each route's
signature, and it names a local variable."""

import asyncio
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import HTMLResponse, Response

from ... import dashboard
from ...console import Caller
from ...errors import DataError
from ...trends import TrafficSamples
from ..auth import ApiKey
from ..models import ServedModel
from ..settings import Settings
from ..telemetry import Telemetry
from .console import Console


def add_routes(
    app: FastAPI,
    served: ServedModel,
    key: ApiKey,
    telemetry: Telemetry,
    settings: Settings,
    ops: Console,
    samples: TrafficSamples,
) -> None:
    Viewer = Annotated[Caller, Depends(key.viewer)]

    @app.get("/dashboard", response_class=HTMLResponse)
    async def operator_dashboard(caller: Viewer) -> HTMLResponse:
        """Alerts, model, metrics, drift, trends, traffic, registry, console, audit log."""
        page = await asyncio.to_thread(
            dashboard.render, served, telemetry.metrics, settings, caller, ops, samples
        )
        return HTMLResponse(page)

    @app.get("/dashboard/charts/{name}.svg")
    async def chart(name: str, caller: Viewer) -> Response:
        """A trend chart as SVG, drawn on the server."""
        svg = await asyncio.to_thread(dashboard.chart, name, settings, samples)
        if svg is None:
            raise HTTPException(404, f"no chart {name!r}, or nothing to draw yet")
        return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "no-store"})

    @app.get("/dashboard/jobs/{job}", response_class=HTMLResponse)
    async def job_page(job: str, caller: Viewer) -> HTMLResponse:
        """A retrain's progress, then its gate verdict and the promotion form."""
        try:
            state = ops.jobs.view(job)
        except DataError as exc:
            raise HTTPException(404, str(exc)) from None
        token = ops.forms.token() if caller.can_act else ""
        return HTMLResponse(dashboard.job_page(state, settings.models_dir, caller, token))

    @app.get("/dashboard/runbook", response_class=HTMLResponse)
    async def operator_runbook(caller: Viewer) -> HTMLResponse:
        return HTMLResponse(dashboard.runbook(settings.docs_dir))
