"""Body-size limit plus request count and latency, as plain ASGI to stay cheap."""

from __future__ import annotations

import json
import time

from starlette.requests import ClientDisconnect

from .telemetry import Metrics

# Not an HTTP status, but the one proxies (nginx) log for a client that went away.
CLIENT_CLOSED = 499


class BodyTooLarge(Exception):
    """A body sent without a length (chunked) went past the limit while it was read."""


def _error(status: int, message: str) -> tuple[dict, dict]:
    return {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json")],
    }, {"type": "http.response.body", "body": json.dumps({"detail": message}).encode()}


class RequestGuard:
    """Refuses bodies over the limit, and counts and times every request by route (unknown
    paths count as "other") and status. A body with a Content-Length is refused before it
    is read; a chunked one is counted as it arrives and refused once past the limit, so it
    is never buffered whole. A client that leaves before its body is in counts as 499.
    `limits` gives routes their own limit (the console's upload)."""

    def __init__(
        self,
        app,
        metrics: Metrics,
        max_body_bytes: int,
        routes: set[str],
        limits: dict[str, int] | None = None,
    ) -> None:
        self.app, self.metrics, self.max_body_bytes, self.routes = (
            app,
            metrics,
            max_body_bytes,
            routes,
        )
        self.limits = limits or {}
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

        limit = self.limits.get(route, self.max_body_bytes)
        try:
            rejection, chunked = self._reject(scope, limit)
            if rejection:
                for message in _error(*rejection):
                    await send_status(message)
            else:
                limited = self._limited(receive, limit) if chunked else receive
                await self.app(scope, limited, send_status)
        except ClientDisconnect:
            status = CLIENT_CLOSED
        except BodyTooLarge:  # raised while the route read its body: nothing was sent yet
            for message in _error(413, f"body is over the limit of {limit} bytes"):
                await send_status(message)
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

    def _reject(self, scope, limit: int) -> tuple[tuple[int, str] | None, bool]:
        """A refusal before the body is read, if any, and whether the body is chunked.
        Without Content-Length or Transfer-Encoding the body is empty (`curl -X POST`)."""
        if scope["method"] not in {"POST", "PUT", "PATCH"}:
            return None, False
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is None:
            return None, b"transfer-encoding" in headers
        if int(length) > limit:
            message = f"body of {int(length)} bytes is over the limit of {limit}"
            return (413, message), False
        return None, False

    def _limited(self, receive, limit: int):
        """`receive` that counts the body's bytes and stops past the limit."""
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge
            return message

        return limited
