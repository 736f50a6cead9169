"""Body-size limit plus request count and latency, as plain ASGI to stay cheap."""

from __future__ import annotations

import json
import time

from .telemetry import Metrics


def _error(status: int, message: str) -> tuple[dict, dict]:
    return {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json")],
    }, {"type": "http.response.body", "body": json.dumps({"detail": message}).encode()}


class RequestGuard:
    """Refuses bodies without a length or over the limit, and counts and times every
    request by route (unknown paths count as "other") and status."""

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
