"""The served model: loaded and hash-verified, swapped when `models/current` moves."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path

from fastapi import HTTPException

from .. import bundle
from ..contract import Predictor
from ..problem_type import PROBLEM_TYPE

log = logging.getLogger(__name__)


def read_schema(models_dir: Path) -> list[dict] | None:
    """The current bundle's feature schema, read before the model itself is loaded."""
    try:
        path = bundle.resolve(models_dir, "current") / bundle.METADATA
        return json.loads(path.read_text(encoding="utf-8"))["features"]
    except (OSError, ValueError, KeyError, bundle.BundleError):
        return None


def read_evaluation(bundle_dir: Path) -> dict | None:
    path = bundle_dir / "evaluation.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


class ServedModel:
    """What the service serves now: the predictor, its test-set evaluation, and why not
    when it serves nothing. Requests read `predictor` once; a reload swaps it in one
    reference assignment, so a request never sees half a model."""

    def __init__(self, models_dir: Path, schema: list[dict] | None) -> None:
        self.models_dir, self.schema = models_dir, schema
        self.predictor: Predictor | None = None
        self.evaluation: dict | None = None
        self.reason = "model not loaded yet"
        self.reload_error: str | None = None
        self._reloading = asyncio.Lock()

    def _load_current(self) -> tuple[Predictor, dict | None]:
        loaded = bundle.load(bundle.resolve(self.models_dir, "current"))
        if self.schema is None or loaded.metadata["features"] != self.schema:
            raise bundle.BundleError(
                f"{loaded.version} has other features than this process was started with; "
                "restart the service to serve it"
            )
        return PROBLEM_TYPE.predictor(loaded), read_evaluation(loaded.path)

    async def ready(self) -> Predictor:
        """The predictor to answer with, as a route dependency: 503 while there is none."""
        if self.predictor is None:
            raise HTTPException(503, f"model not ready: {self.reason}")
        return self.predictor

    def load(self) -> None:
        """At start-up: load `models/current`, or stay up and say why /ready is 503."""
        self.predictor, self.evaluation, self.reload_error = None, None, None
        try:
            self.predictor, self.evaluation = self._load_current()
            fast = self.predictor.fast is not None
            log.info("serving %s (fast path: %s)", self.predictor.version, fast)
        except bundle.BundleError as exc:
            self.reason = str(exc)
            log.error("model not loaded, /ready answers 503: %s", exc)
        except Exception as exc:  # a corrupt file can fail in many ways: stay up, not ready
            self.reason = f"{type(exc).__name__}: {exc}"
            log.exception("model not loaded, /ready answers 503")

    async def reload(self) -> bool:
        """Serve the bundle `models/current` names, if it changed. Loading and verifying
        happen off the event loop; requests keep the old model until one reference swap.

        The watcher and POST /v1/reload may call this at once: loads run one at a time,
        and each caller learns whether the served version changed since it asked."""
        asked_while_serving = self.predictor and self.predictor.version
        async with self._reloading:
            await self._reload_if_moved()
        return (self.predictor and self.predictor.version) != asked_while_serving

    async def _reload_if_moved(self) -> None:
        version = bundle.read_pointer(self.models_dir, "current")
        served = self.predictor
        if version is None or (served is not None and served.version == version):
            return
        try:
            self.predictor, self.evaluation = await asyncio.to_thread(self._load_current)
        except Exception as exc:
            self.reload_error = f"{version}: {exc}"
            log.error("kept serving %s; could not load %s", served and served.version, exc)
            raise
        self.reason, self.reload_error = "", None
        log.info("now serving %s", version)

    async def watch(self, interval: float) -> None:
        """Follow promotions and rollbacks without a restart."""
        while True:
            await asyncio.sleep(interval)
            pointed = bundle.read_pointer(self.models_dir, "current")
            if self.reload_error and self.reload_error.startswith(f"{pointed}:"):
                continue  # this version already failed; wait for the pointer to move
            with contextlib.suppress(Exception):
                await self.reload()
