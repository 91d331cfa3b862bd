"""Litestar guards: client keys on the OpenAI surface, the admin key on management."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection

from wlm.auth import presented_key
from wlm.errors import AuthenticationFailed
from wlm.gateway import Gateway

__all__ = ["admin_guard", "client_guard"]


def _gateway(connection: ASGIConnection[Any, Any, Any, Any]) -> Gateway:
    gateway: Gateway = connection.app.state.gateway  # set once by create_app
    return gateway


def client_guard(connection: ASGIConnection[Any, Any, Any, Any], _: Any) -> None:
    """When WLM_API_KEYS is set, a client key (or the admin key) is required."""
    gateway = _gateway(connection)
    if not gateway.client_keys:
        return
    key = presented_key(connection.scope["headers"])
    if gateway.client_keys.identify(key) is None and gateway.admin_keys.identify(key) is None:
        raise AuthenticationFailed(
            "Missing or invalid API key: send 'Authorization: Bearer <key>'."
        )


def admin_guard(connection: ASGIConnection[Any, Any, Any, Any], _: Any) -> None:
    """When WLM_ADMIN_KEY is set, management endpoints need it."""
    gateway = _gateway(connection)
    if not gateway.admin_keys:
        return
    if gateway.admin_keys.identify(presented_key(connection.scope["headers"])) is None:
        raise AuthenticationFailed(
            "This endpoint needs the admin key: send 'Authorization: Bearer <WLM_ADMIN_KEY>'."
        )
