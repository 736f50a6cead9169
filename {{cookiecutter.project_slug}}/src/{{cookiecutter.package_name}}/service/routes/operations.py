"""Operations: serve the promoted model now, instead of at the next pointer check."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from ..auth import ApiKey
from ..models import ServedModel


def add_routes(app: FastAPI, served: ServedModel, key: ApiKey) -> None:
    @app.post("/v1/reload", dependencies=key.for_clients())
    async def reload_model() -> JSONResponse:
        """Serve the bundle `models/current` names now, instead of at the next check.
        `changed` says whether the served content changed, whatever the version's name."""
        try:
            changed = await served.reload()
        except Exception as exc:
            return JSONResponse(
                {"detail": f"reload failed, still serving the old model: {exc}"}, 409
            )
        return JSONResponse({"model_version": served.predictor.version, "changed": changed})
