"""What the service tells its operators: Prometheus metrics and the prediction log."""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from ..problem_type import PROBLEM_TYPE
from .settings import Settings

log = logging.getLogger(__name__)


class PredictionLog:
    """Appends one JSON line per request, written in batches by a background thread.

    Each line: {"time", "request": {"instances": [...]}, "response": {"model_version",
    "predictions", ...}}. The request is the body as the client sent it, so the log may hold
    personal data: fields named in `redact` are logged as "[redacted]" (at any depth), and
    string values longer than `max_value_chars` are cut. A body that needs neither is copied
    into its line unparsed; `longest_string`, the longest the request model lets through,
    tells when no value can need cutting.

    The request path only appends to a deque, of at most `capacity` records and
    `max_queued_bytes` of bodies; the writer wakes a few times a second, so logging costs
    neither a thread hand-off nor a write per request. Past `max_bytes` the writer rotates
    the file as logging.RotatingFileHandler does: predictions.jsonl.1 is the newest of
    `backups` older files (with 0 backups the file starts again empty).

    Before writing, the writer reopens the file if its path names another file, as
    logging.handlers.WatchedFileHandler does: another worker rotated it, or someone moved
    it. An OSError (disk full, the file or its folder gone) is logged once, the records of
    that drain are dropped, and the next drain opens the file again. Records left out, by
    a full queue or a failed write, are counted through `dropped`.
    """

    def __init__(
        self,
        path: Path,
        max_bytes: int,
        backups: int,
        max_value_chars: int,
        redact: frozenset[str],
        longest_string: float = math.inf,
        capacity: int = 100_000,
        max_queued_bytes: int = 64_000_000,
        interval: float = 0.25,
        dropped: Callable[[int], object] = lambda count: None,
    ) -> None:
        self.path, self.max_bytes, self.backups = path, max_bytes, backups
        self.max_value_chars, self.redact = max_value_chars, redact
        self.may_cut = longest_string > max_value_chars
        self.capacity, self.max_queued_bytes = capacity, max_queued_bytes
        self.interval, self.dropped = interval, dropped
        self.pending: deque[tuple[str, bytes, bytes]] = deque()
        # Bytes queued and bytes taken, each counted by one thread only: no lock needed.
        self.queued = self.taken = 0
        self.failure: str | None = None  # the last error logged, until a write succeeds
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self.thread.start()

    def append(self, stamp: str, request: bytes, response: bytes) -> bool:
        """Queue a record; False (and nothing queued) when the writer has fallen behind."""
        size = len(request) + len(response)
        if (
            len(self.pending) >= self.capacity
            or self.queued - self.taken + size > self.max_queued_bytes
        ):
            return False
        self.queued += size
        self.pending.append((stamp, request, response))
        return True

    def _run(self) -> None:
        handle = self._drain(None)  # the file is there, or the error logged, from the start
        try:
            while not self.stopping.wait(self.interval):
                handle = self._drain(handle)
            handle = self._drain(handle)
        finally:
            if handle is not None:
                with suppress(OSError):
                    handle.close()

    def _drain(self, handle):
        """Write the queued records; the open file, or None after an OSError."""
        lines = []
        while self.pending:
            stamp, request, response = self.pending.popleft()
            self.taken += len(request) + len(response)
            lines.append(self._line(stamp, request, response))
        try:
            handle = self._reopened(handle)
            if lines:
                handle.writelines(lines)
                handle.flush()
            if handle.tell() >= self.max_bytes:
                handle.close()
                self._rotate()
                handle = self._reopened(None)
        except OSError as exc:
            self._failed(exc, len(lines))
            if handle is not None:
                with suppress(OSError):
                    handle.close()
            return None
        if self.failure is not None:
            log.warning("prediction log %s: writing again", self.path)
            self.failure = None
        return handle

    def _reopened(self, handle):
        """`handle`, or the file opened again when the path no longer names it."""
        if handle is not None:
            try:
                mine, named = os.fstat(handle.fileno()), os.stat(self.path)
                if (mine.st_dev, mine.st_ino) == (named.st_dev, named.st_ino):
                    return handle
            except FileNotFoundError:
                pass
            handle.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return self.path.open("ab")

    def _failed(self, exc: OSError, lost: int) -> None:
        if lost:
            self.dropped(lost)
        if str(exc) != self.failure:
            self.failure = str(exc)
            log.error("prediction log %s: cannot write, records dropped: %s", self.path, exc)

    def _rotate(self) -> None:
        """predictions.jsonl becomes .1, .1 becomes .2, and so on; the oldest is dropped.
        A file already gone (rotated by another worker, or removed) is skipped."""
        for n in range(self.backups - 1, 0, -1):
            with suppress(FileNotFoundError):
                self._backup(n).replace(self._backup(n + 1))
        if self.backups:
            with suppress(FileNotFoundError):
                self.path.replace(self._backup(1))
        else:
            self.path.unlink(missing_ok=True)

    def _backup(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{n}")

    def _line(self, stamp: str, request: bytes, response: bytes) -> bytes:
        """The record, spliced from both bodies (JSON already). A raw newline in valid JSON
        can only be whitespace: it is flattened to keep one record per line."""
        if self.redact or (self.may_cut and not self._short_strings(request)):
            body = json.dumps(self._clean(json.loads(request)), ensure_ascii=False).encode()
        else:
            body = request.replace(b"\n", b" ").replace(b"\r", b" ")
        return b'{"time": "%s", "request": %s, "response": %s}\n' % (
            stamp.encode(),
            body,
            response,
        )

    def _short_strings(self, body: bytes) -> bool:
        """Whether no string in the JSON body is longer than the cap: so when the body is
        shorter, or when no escaped quote splits a string and every quoted run is short
        (a character takes at least one byte)."""
        if len(body) <= self.max_value_chars:
            return True
        if b'\\"' in body:
            return False
        return max(map(len, body.split(b'"')[1::2]), default=0) <= self.max_value_chars

    def _clean(self, value: Any, key: str | None = None) -> Any:
        if key in self.redact:
            return "[redacted]"
        if isinstance(value, dict):
            return {name: self._clean(item, name) for name, item in value.items()}
        if isinstance(value, list):
            return [self._clean(item) for item in value]
        if isinstance(value, str) and len(value) > self.max_value_chars:
            return value[: self.max_value_chars] + "…"
        return value

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)


def longest_string(schema: Any) -> float:
    """The longest string, key or value, that a JSON schema lets through (inf if any)."""
    if isinstance(schema, list):
        return max(map(longest_string, schema), default=0)
    if not isinstance(schema, dict):
        return 0
    if schema == {} or schema.get("additionalProperties", False) is not False:
        return math.inf  # anything, or keys of any length
    longest = schema.get("maxLength", math.inf) if schema.get("type") == "string" else 0
    properties = schema.get("properties", {})
    nested = [*properties.values(), *schema.get("$defs", {}).values()]
    nested += [schema[word] for word in ("items", "anyOf", "oneOf", "allOf") if word in schema]
    return max([longest, *map(len, properties), *map(longest_string, nested)])


class Metrics:
    """The Prometheus series of one service process, in a registry of its own."""

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
            "predictions_total",
            PROBLEM_TYPE.prediction_metric_help,
            ["value"],
            registry=self.registry,
        )
        self.predicted: dict[str, Any] = {}
        self.log_dropped = Counter(
            "prediction_log_dropped_total",
            "Log records dropped: the queue was full, or the log could not be written.",
            registry=self.registry,
        )

    def count_predictions(self, counts: dict[str, int]) -> None:
        for value, count in counts.items():
            if value not in self.predicted:
                self.predicted[value] = self.predictions.labels(value)
            self.predicted[value].inc(count)


class Telemetry:
    """Metrics for the process, and the prediction log while the service runs."""

    def __init__(self, longest_string: float) -> None:
        self.metrics = Metrics()
        self.longest_string = longest_string  # in a valid request: no need to cut shorter
        self.log: PredictionLog | None = None

    def open_log(self, settings: Settings) -> None:
        self.log = PredictionLog(
            settings.prediction_log_path,
            settings.prediction_log_max_bytes,
            settings.prediction_log_backups,
            settings.prediction_log_max_value_chars,
            settings.redacted_fields,
            self.longest_string,
            dropped=self.metrics.log_dropped.inc,
        )

    def close(self) -> None:
        if self.log:
            self.log.close()
            self.log = None

    def record(self, request_body: bytes, response_body: bytes) -> None:
        """Log one prediction (both bodies are JSON); the writer thread formats the line."""
        if self.log is None:
            return
        stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        if not self.log.append(stamp, request_body, response_body):
            self.metrics.log_dropped.inc()
