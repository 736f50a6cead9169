"""The served model: loaded, hash- and signature-verified, swapped when `models/current`
names other content."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from fastapi import HTTPException

from .. import bundle
from ..contract import Predictor
{%- if cookiecutter.problem_type != "forecasting" %}
from ..predictor import category_chars
{%- endif %}
from ..problem_type import PROBLEM_TYPE

log = logging.getLogger(__name__)


def read_schema(models_dir: Path) -> list[dict] | None:
    """The current bundle's feature schema, read before the model itself is loaded."""
    try:
        return bundle.read_metadata(bundle.resolve(models_dir, "current"))["features"]
    except (bundle.BundleError, LookupError, ValueError, TypeError, AttributeError):
        return None  # loading the bundle will say what is wrong with it


def request_shape(schema: list[dict]) -> list[dict]:
    """What the request model is built from: the features without what only describes them
    in the API documents (ranges and lengths seen in training, the example). A model
    retrained on new data is served without a restart; other features, kinds or limits
    need one."""
    shape = [{k: v for k, v in feature.items() if k not in DESCRIPTIVE} for feature in schema]
{%- if cookiecutter.problem_type != "forecasting" %}
    for feature in shape:
        if "categories" in feature:  # new categories are accepted; their length is checked
            feature["categories"] = category_chars(feature["categories"])
{%- endif %}
    return shape


DESCRIPTIVE = {"min", "max", "max_chars", "median_chars", "first", "last", "example"}


def read_evaluation(bundle_dir: Path) -> dict | None:
    """The bundle's signed test-set evaluation, or None."""
    return bundle.read_evaluation(bundle_dir)


class ServedModel:
    """What the service serves now: the predictor, its test-set evaluation, the bundle and
    content hash it came from, and why not when it serves nothing. Requests read `predictor`
    once; a reload swaps it in one reference assignment, so a request never sees half a
    model."""

    def __init__(self, models_dir: Path, schema: list[dict] | None) -> None:
        self.models_dir, self.schema = models_dir, schema
        self.predictor: Predictor | None = None
        self.evaluation: dict | None = None
        self.path: Path | None = None  # the served bundle's folder
        self.digest: str | None = None  # its verified content_sha256
        self.reason = "model not loaded yet"
        self.reload_error: str | None = None
        self._failed: tuple[Path, str | None] | None = None  # what the last reload could not load
        self._reloading = asyncio.Lock()

    def _load(self, path: Path) -> tuple[Predictor, dict | None]:
        loaded = bundle.load(path)
        if self.schema is None or request_shape(loaded.metadata["features"]) != request_shape(
            self.schema
        ):
            raise bundle.BundleError(
                f"{loaded.version} has other features than this process was started with; "
                "restart the service to serve it"
            )
        return PROBLEM_TYPE.predictor(loaded), read_evaluation(loaded.path)

    def _serve(self, path: Path, predictor: Predictor, evaluation: dict | None) -> None:
        self.predictor, self.evaluation = predictor, evaluation
        self.path, self.digest = path, predictor.metadata["content_sha256"]
        self.reason, self.reload_error, self._failed = "", None, None

    async def ready(self) -> Predictor:
        """The predictor to answer with, as a route dependency: 503 while there is none."""
        if self.predictor is None:
            raise HTTPException(503, f"model not ready: {self.reason}")
        return self.predictor

    def not_ready(self) -> str | None:
        """Why /ready answers 503: no model, or its bundle deleted since; None when ready."""
        if self.predictor is None:
            return self.reason
        if not (self.path / bundle.METADATA).is_file():
            return f"the served bundle {self.path} was deleted"
        return None

    def load(self) -> None:
        """At start-up: load `models/current`, or stay up and say why /ready is 503."""
        try:
            path = bundle.resolve(self.models_dir, "current")
            self._serve(path, *self._load(path))
            fast = self.predictor.fast is not None
            log.info("serving %s (fast path: %s)", self.predictor.version, fast)
        except bundle.BundleError as exc:
            self.reason = str(exc)
            log.error("model not loaded, /ready answers 503: %s", exc)
        except Exception as exc:  # a corrupt file can fail in many ways: stay up, not ready
            self.reason = f"{type(exc).__name__}: {exc}"
            log.exception("model not loaded, /ready answers 503")

    async def reload(self, retry: bool = True) -> bool:
        """Serve the bundle `models/current` names, if its content differs from the served
        one. Loading and verifying happen off the event loop; requests keep the old model
        until one reference swap. Without `retry`, a bundle that failed to load is tried
        again only once the pointer or its content hash moves.

        The watcher and POST /v1/reload may call this at once: loads run one at a time,
        and each caller learns whether the served content changed since it asked."""
        asked_while_serving = self.digest
        async with self._reloading:
            try:
                await self._reload_if_changed(retry)
            except Exception as exc:
                error = str(exc) or type(exc).__name__
                if error != self.reload_error:  # once per distinct failure, not every tick
                    served = self.predictor.version if self.predictor else "nothing"
                    log.error("reload failed, still serving %s: %s", served, error)
                self.reload_error = error
                raise
        return self.digest != asked_while_serving

    async def _reload_if_changed(self, retry: bool) -> None:
        path = bundle.resolve(self.models_dir, "current")
        target = (path, bundle.read_metadata(path).get("content_sha256"))
        if self.predictor is not None and target[1] == self.digest:
            self.reload_error = None
            return
        if not retry and target == self._failed:
            return  # it failed already: wait for the pointer or the bundle to change
        try:
            self._serve(path, *await asyncio.to_thread(self._load, path))
        except Exception:
            self._failed = target
            raise
        log.info("now serving %s", path.name)

    async def watch(self, interval: float) -> None:
        """Follow promotions and rollbacks without a restart. A failure is logged and the
        watching goes on, so the next promotion is followed."""
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(Exception):  # reload logged it
                await self.reload(retry=False)
