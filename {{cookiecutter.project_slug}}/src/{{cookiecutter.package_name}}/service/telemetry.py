"""What the service tells its operators: Prometheus metrics and the prediction log."""

from __future__ import annotations

import threading
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from ..problem_type import PROBLEM_TYPE


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
            "Log records dropped because the queue was full.",
            registry=self.registry,
        )

    def count_predictions(self, counts: dict[str, int]) -> None:
        for value, count in counts.items():
            if value not in self.predicted:
                self.predicted[value] = self.predictions.labels(value)
            self.predicted[value].inc(count)


class Telemetry:
    """Metrics for the process, and the prediction log while the service runs."""

    def __init__(self) -> None:
        self.metrics = Metrics()
        self.log: PredictionLog | None = None

    def open_log(self, path: Path) -> None:
        self.log = PredictionLog(path)

    def close(self) -> None:
        if self.log:
            self.log.close()
            self.log = None

    def record(self, request_body: bytes, response_body: bytes) -> None:
        """Log one prediction. Both bodies are JSON already: the line is spliced, not
        serialised again. A raw newline in valid JSON can only be whitespace: it is
        flattened to keep one record per line."""
        if self.log is None:
            return
        stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        body = request_body.replace(b"\n", b" ").replace(b"\r", b" ")
        line = b'{"time": "%s", "request": %s, "response": %s}\n' % (
            stamp.encode(),
            body,
            response_body,
        )
        if not self.log.append(line):
            self.metrics.log_dropped.inc()
