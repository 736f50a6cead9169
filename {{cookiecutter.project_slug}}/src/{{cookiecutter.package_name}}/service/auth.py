"""Keys and roles: SERVICE_API_KEY for prediction clients, SERVICE_VIEWER_KEY to see the
dashboard, SERVICE_OPERATOR_KEY to see it and act in its console. /metrics and the API
documentation take any of the three."""

from __future__ import annotations

import base64
import contextlib
import hmac
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from pydantic import SecretStr

from ..console import Caller

BASIC = {"WWW-Authenticate": 'Basic realm="operators"'}


def presented(request: Request) -> tuple[str, str | None]:
    """The Basic user name ("-" without one) and the key given, as X-API-Key or as the Basic
    password of a browser or of Prometheus' `basic_auth`."""
    name, given = "-", request.headers.get("x-api-key")
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        with contextlib.suppress(ValueError):  # not Base64, or not UTF-8
            user, _, given = base64.b64decode(credentials).decode().partition(":")
            name = user or "-"
    return name, given


class ApiKey:
    """Compares given keys with the expected ones in constant time. Without any key set
    (SERVICE_ALLOW_ANONYMOUS=true), every request is let through and no dependency runs;
    a role without its own key is closed otherwise."""

    def __init__(
        self,
        secret: SecretStr | None,
        viewer: SecretStr | None = None,
        operator: SecretStr | None = None,
    ) -> None:
        def expected(key: SecretStr | None) -> bytes | None:
            return key.get_secret_value().encode() if key else None

        self.expected = expected(secret)
        self.roles = {"operator": expected(operator), "viewer": expected(viewer)}
        self.anonymous = self.expected is None and not any(self.roles.values())

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

    def caller(self, request: Request) -> Caller:
        """Who is asking, and by which role; 401 for no key or a key of no dashboard role."""
        if self.anonymous:
            return Caller("anonymous", "anonymous")
        name, given = presented(request)
        for role, expected in self.roles.items():
            if expected and given and hmac.compare_digest(given.encode(), expected):
                return Caller(name, role)
        if not any(self.roles.values()):
            raise HTTPException(
                401,
                "the dashboard needs SERVICE_VIEWER_KEY or SERVICE_OPERATOR_KEY set on the "
                "service; the API key is for prediction clients",
                BASIC,
            )
        raise HTTPException(
            401, "this page needs the viewer or the operator key, as the Basic password", BASIC
        )

    async def viewer(self, request: Request) -> Caller:
        return self.caller(request)

    async def anyone(self, request: Request) -> None:
        """/metrics and the API documentation: any of the three keys."""
        given = presented(request)[1]
        keys = [self.expected, *self.roles.values()]
        if not any(k and given and hmac.compare_digest(given.encode(), k) for k in keys):
            raise HTTPException(
                401, "this page needs a key, as X-API-Key or as the Basic password", BASIC
            )

    def for_clients(self) -> list:
        """Route dependencies for client endpoints: none without a key, so the hot path
        skips the dependency machinery."""
        return [Depends(self.client)] if self.required else []

    def for_operators(self) -> list:
        """/metrics and the documentation pages: any key, none when the service has none."""
        return [] if self.anonymous else [Depends(self.anyone)]
