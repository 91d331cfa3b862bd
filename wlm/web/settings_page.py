"""``/settings``: the effective configuration; every secret is only "set" or "not set"."""

from __future__ import annotations

from typing import Any

import attrs
from litestar import Request, Response, get

from wlm import config
from wlm.config import Settings
from wlm.gateway import Gateway
from wlm.web.access import gateway_of
from wlm.web.render import page, plain

__all__ = ["SETTINGS_ROUTES", "settings_view"]

# Shown in their own sections (providers, routing, keys), not in the general table.
_SECTIONED = frozenset(
    {"providers", "routes", "aliases", "api_keys", "admin_key", "default_provider"}
)


def _variables() -> dict[str, str]:
    """Settings field -> the environment variable that sets it."""
    # config keeps its variable -> field table private; this page is its one other reader.
    return {field: variable for variable, field in config._SIMPLE.items()}


def _effective(settings: Settings, name: str) -> object:
    """The value a field has in use: ``telemetry_path`` unset means the default file."""
    if name == "telemetry_path":
        return settings.telemetry_file
    return getattr(settings, name)


def _set(value: Any) -> str:
    return "set" if value else "not set"


def settings_view(settings: Settings, gateway: Gateway) -> dict[str, Any]:
    """The configuration as plain data with every secret replaced by "set"/"not set"."""
    redact = gateway.redactor.text
    variables = _variables()
    general = []
    for field in attrs.fields(Settings):
        if field.name in _SECTIONED:
            continue
        value = plain(_effective(settings, field.name))
        general.append(
            {
                "name": field.name,
                "variable": variables.get(field.name, ""),
                "value": redact(str(value)) if isinstance(value, str) else value,
            }
        )
    providers = [
        {
            "name": p.name,
            "kind": p.kind,
            "base_url": redact(p.base_url),
            "key_variable": p.key_variable,
            "api_key": _set(p.api_key),
            "keyless": p.keyless,
            "configured": p.configured,
            "models": list(p.models) if p.models is not None else None,
            "extra_headers": [name for name, _ in p.extra_headers],
            "connect_timeout_s": p.connect_timeout_s,
            "read_timeout_s": p.read_timeout_s,
        }
        for p in settings.providers
    ]
    return {
        "general": general,
        "providers": providers,
        "routing": {
            "default_provider": settings.default_provider,
            "routes": [{"pattern": r.pattern, "provider": r.provider} for r in settings.routes],
            "aliases": [{"alias": a, "model": m} for a, m in settings.aliases],
        },
        "keys": {
            "admin_key": _set(settings.admin_key),
            "client_keys": [{"name": k.name, "key": _set(k.key)} for k in settings.api_keys],
        },
    }


@get(["/settings", "/settings.json"])
async def settings_page(request: Request[Any, Any, Any]) -> Response[Any]:
    """The effective configuration (environment, ``.env`` and defaults merged)."""
    gateway = gateway_of(request)
    context = settings_view(gateway.settings, gateway)
    return page(request, "settings.html", context, active="/settings")


SETTINGS_ROUTES = [settings_page]
