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
    {
        "providers",
        "routes",
        "aliases",
        "api_keys",
        "admin_key",
        "default_provider",
        "key_limits",
        "otlp",
        "peers",
    }
)


def _variables() -> dict[str, str]:
    """Settings field -> the environment variable that sets it."""
    # config keeps its variable -> field table private; this page is its one other reader.
    return {field: variable for variable, field in config._SIMPLE.items()}


def _effective(settings: Settings, name: str) -> object:
    """The value a field has in use: ``telemetry_path`` unset means the default file."""
    if name == "telemetry_path":
        return settings.telemetry_file
    if name == "telemetry_url":  # the URL without its password
        return settings.telemetry_url_shown
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
        "limits": _limits(settings, gateway),
        "otlp": _otlp(settings),
        "peers": _peers(settings, gateway),
    }


def _peers(settings: Settings, gateway: Gateway) -> list[dict[str, Any]]:
    """Each peer (WLM_PEERS): where, its key only "set"/"not set", and how it answers."""
    status = {s["name"]: s for s in gateway.peers.status()}
    return [
        {
            "name": p.name,
            "provider": p.provider,
            "base_url": gateway.redactor.text(p.base_url),
            "key_variable": p.key_variable,
            "key": _set(p.key),
            "up": status.get(p.name, {}).get("up"),
            "models": status.get(p.name, {}).get("models", 0),
            "in_flight": status.get(p.name, {}).get("in_flight", 0),
            "error": status.get(p.name, {}).get("error"),
        }
        for p in settings.peers
    ]


def _otlp(settings: Settings) -> dict[str, Any] | None:
    """Where spans go: the endpoint (no password) and the service name; the headers,
    which may hold a token, only as "set" or "not set"."""
    otlp = settings.otlp
    if otlp is None:
        return None
    return {
        "endpoint": otlp.shown_endpoint,
        "headers": _set(otlp.headers),
        "service_name": otlp.service_name,
        "timeout_s": otlp.timeout_s,
        "compression": otlp.compression,
    }


def _limits(settings: Settings, gateway: Gateway) -> list[dict[str, Any]]:
    """Each client key's use against its WLM_KEY_LIMITS (empty when none are set)."""
    if not settings.key_limits:
        return []
    clients: list[str | None] = [k.name for k in settings.api_keys]
    if any(e.key == "*" for e in settings.key_limits):
        clients.append(None)  # anonymous clients share one set of counters
    slots = gateway.client_slots
    rows = []
    for use in gateway.key_limits.usage(clients):
        limits = use.limits
        rows.append(
            {
                "client": use.client,
                "rpm": limits.rpm,
                "requests_used": use.requests_used,
                "tpm": limits.tpm,
                "tokens_used": use.tokens_used,
                "concurrency": slots.limit_for(use.client) if use.client else limits.concurrency,
                "usd_per_day": limits.usd_per_day,
                "usd_today": round(use.usd_today, 6),
                "usd_per_month": limits.usd_per_month,
                "usd_this_month": round(use.usd_this_month, 6),
                "refused": sum(
                    n for (key, _), n in gateway.key_limits.refusals.items() if key == use.client
                ),
            }
        )
    return rows


@get(["/settings", "/settings.json"])
async def settings_page(request: Request[Any, Any, Any]) -> Response[Any]:
    """The effective configuration (environment, ``.env`` and defaults merged)."""
    gateway = gateway_of(request)
    context = settings_view(gateway.settings, gateway)
    return page(request, "settings.html", context, active="/settings")


SETTINGS_ROUTES = [settings_page]
