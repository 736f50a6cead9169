"""The API key (SERVICE_API_KEY), for prediction clients and operators (the dashboard,
/metrics and the API documentation)."""

from __future__ import annotations

import base64
import contextlib
import hmac
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from pydantic import SecretStr


class ApiKey:
    """Compares a given key with the expected one in constant time. Without a key set
    (SERVICE_ALLOW_ANONYMOUS=true), every request is let through and no dependency runs."""

    def __init__(self, secret: SecretStr | None) -> None:
        self.expected = secret.get_secret_value().encode() if secret else None

    @property
    def required(self) -> bool:
        return self.expected is not None

    def matches(self, given: str | None) -> bool:
        if self.expected is None:
            return True
        return given is not None and hmac.compare_digest(given.encode(), self.expected)

    # Dependencies are async because they do no I/O: a plain `def` would be sent to the
    # thread pool on every request, which costs more than the prediction itself.
    async def client(self, x_api_key: Annotated[str | None, Header()] = None) -> None:
        """Prediction clients send the key as an X-API-Key header."""
        if not self.matches(x_api_key):
            raise HTTPException(401, "missing or invalid X-API-Key header")

    async def operator(self, request: Request) -> None:
        """Operators send the key as X-API-Key, or as the Basic password of a browser or of
        Prometheus' `basic_auth`."""
        given = request.headers.get("x-api-key")
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            with contextlib.suppress(ValueError):  # not Base64, or not UTF-8
                given = base64.b64decode(credentials).decode().partition(":")[2]
        if not self.matches(given):
            raise HTTPException(
                401,
                "this page needs the API key, as X-API-Key or as the Basic password",
                {"WWW-Authenticate": 'Basic realm="operators"'},
            )

    def for_clients(self) -> list:
        """Route dependencies for client endpoints: none without a key, so the hot path
        skips the dependency machinery."""
        return [Depends(self.client)] if self.required else []

    def for_operators(self) -> list:
        return [Depends(self.operator)] if self.required else []
