"""Settings: built once from the environment (and an optional ``.env``), then frozen.

Nothing reads the environment at import time. ``load_settings(environ, env_file)``
gathers the raw strings, a private cattrs converter structures them into
:class:`Settings`, and any malformed value becomes one :class:`ConfigError` line
naming the variable and the problem.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import tomllib
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import attrs
import cattrs
from attrs import frozen
from dotenv import dotenv_values

__all__ = [
    "ADMIN_CLIENT",
    "BUILTIN_PROVIDERS",
    "DIALECT_NAMES",
    "LOCAL",
    "PLAYGROUND_CLIENT",
    "PRIORITIES",
    "RESERVED_CLIENT_NAMES",
    "ClientKey",
    "ConfigError",
    "KeyLimit",
    "OtlpConfig",
    "PeerConfig",
    "PriceEntry",
    "ProviderConfig",
    "RoutePattern",
    "Settings",
    "load_settings",
    "redact_url_password",
    "url_password",
    "url_passwords",
]

PROVIDER_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
# The client names wlm gives requests itself (telemetry's client column, WLM_KEY_LIMITS):
# the admin key presented to the API, and the pages' playground, which has no key
# (docs/playground.md). A client key may take neither, or it would share their limits,
# budget and rows.
ADMIN_CLIENT = "admin"
PLAYGROUND_CLIENT = "playground"
RESERVED_CLIENT_NAMES = frozenset({ADMIN_CLIENT, PLAYGROUND_CLIENT})


class ConfigError(Exception):
    """A setting is malformed. ``str(err)`` is one line: ``VAR: problem``."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


@frozen
class ProviderConfig:
    """One upstream: where it is, how it speaks, and the key wlm injects."""

    name: str
    kind: str  # "openai" (OpenAI-compatible), "anthropic", "local"
    base_url: str
    api_key: str | None = attrs.field(default=None, repr=False)
    models: tuple[str, ...] | None = None
    keyless: bool = False
    extra_headers: tuple[tuple[str, str], ...] = ()
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 600.0
    # Client dialects the upstream serves natively (chat, messages, responses, rerank);
    # a request in another dialect is translated through chat (rerank never is).
    dialects: tuple[str, ...] = ("chat",)
    # How its /responses differs from OpenAI's. OpenAI keeps the responses it answers
    # (previous_response_id, GET /responses/{id}) and reads every tool and input item
    # type. A llama.cpp engine keeps none (wlm keeps them and resends the history) and
    # reads only some types: a request with another goes translated through chat.
    keeps_responses: bool = True
    responses_types: tuple[str, ...] | None = None  # None: every type

    @property
    def configured(self) -> bool:
        """A provider is usable when it has a key, or needs none (local/LAN)."""
        return self.api_key is not None or self.keyless

    @property
    def env_prefix(self) -> str:
        """``groq`` -> ``GROQ``: the prefix of this provider's variables."""
        return self.name.upper().replace("-", "_")

    @property
    def key_variable(self) -> str:
        return f"{self.env_prefix}_API_KEY"

    @property
    def base_url_variable(self) -> str:
        return f"{self.env_prefix}_BASE_URL"


@frozen
class RoutePattern:
    """``pattern=provider`` from ``WLM_ROUTES``; shell glob, first match wins."""

    pattern: str
    provider: str


@frozen
class ClientKey:
    """A key clients present to wlm (``WLM_API_KEYS=name:key``); ``key`` may be a SHA-256."""

    name: str
    key: str = attrs.field(repr=False)


@frozen
class KeyLimit:
    """One entry of ``WLM_KEY_LIMITS``: the limits of a client key name (``*``: everyone).

    None means "not limited by this entry".
    """

    key: str
    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None
    usd_per_day: float | None = None
    usd_per_month: float | None = None


@frozen
class PriceEntry:
    """One model's price from the ``WLM_PRICES`` file, in USD per million tokens.

    ``pattern`` is ``provider/upstream-model`` (a shell glob allowed). Cached reads and
    writes cost ``input_mtok`` and reasoning ``output_mtok`` unless priced apart.
    """

    pattern: str
    input_mtok: float
    output_mtok: float
    cache_read_mtok: float | None = None
    cache_write_mtok: float | None = None
    reasoning_mtok: float | None = None


@frozen
class OtlpConfig:
    """Where wlm exports a span per request: ``WLM_OTLP_ENDPOINT`` or the standard
    ``OTEL_*`` variables, read from the environment and ``.env`` alike."""

    # The OTLP/HTTP traces URL, ending in /v1/traces (its repr without a password).
    endpoint: str = attrs.field(repr=lambda url: repr(_without_password(url)))
    # OTEL_EXPORTER_OTLP_(TRACES_)HEADERS: may hold a token, so a secret (never shown).
    headers: tuple[tuple[str, str], ...] = attrs.field(default=(), repr=False)
    service_name: str = "wlm"  # OTEL_SERVICE_NAME
    resource_attributes: tuple[tuple[str, str], ...] = ()  # OTEL_RESOURCE_ATTRIBUTES
    timeout_s: float = 10.0  # OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT, per export
    compression: str = "none"  # OTEL_EXPORTER_OTLP_(TRACES_)COMPRESSION: none, gzip, deflate

    def secrets(self) -> list[str]:
        """What redaction hides: each header's value (and its part after ``Bearer`` or
        ``Basic``), and a password in the endpoint's URL."""
        values = [unquote(urlsplit(self.endpoint).password or "")]
        for _, value in self.headers:
            values += [value, *value.split()[1:]]
        return [v for v in values if v]

    @property
    def shown_endpoint(self) -> str:
        """The endpoint as pages and logs show it: no password."""
        return _without_password(self.endpoint)


@frozen
class PeerConfig:
    """Another wlm whose local models this one lists and routes to (``WLM_PEERS``)."""

    name: str  # lowercase; its models are listed as <name>/<id>
    base_url: str  # http://gpu-box-2:5250 (no /v1)
    # WLM_PEER_<NAME>_KEY: a client key of the peer's WLM_API_KEYS, a secret like the keys.
    key: str | None = attrs.field(default=None, repr=False)

    @property
    def provider(self) -> str:
        """The provider name its requests carry (telemetry, headers, cooldowns)."""
        return f"{PEER_PREFIX}{self.name}"

    @property
    def key_variable(self) -> str:
        return f"WLM_PEER_{self.name.upper().replace('-', '_')}_KEY"


# Requests a peer answers have provider "peer:<name>" (docs/telemetry.md).
PEER_PREFIX = "peer:"


@frozen
class Settings:
    """Everything wlm is configured with. Build with :func:`load_settings`."""

    host: str = "127.0.0.1"
    port: int = 5250
    workers: int = 1
    data_dir: Path = Path("data")
    telemetry_path: Path | None = None
    # postgresql://user:password@host:port/db: telemetry in a shared PostgreSQL database
    # instead of the DuckDB file (docs/deploy.md); the password is a secret like keys.
    telemetry_url: str | None = attrs.field(default=None, repr=False)
    spool_max_mb: int = 256  # rows kept in WLM_DATA_DIR while PostgreSQL is unreachable
    models_dir: Path = Path("~/models")
    llama_server: str | None = None
    max_loaded_models: int = 1
    idle_unload_s: float = 600.0
    local_threads: int | None = None
    local_ctx_size: int = 4096
    local_parallel: int = 4
    local_load_timeout_s: float = 120.0
    local_options_file: Path | None = None
    local_rescan_s: float = 3.0
    # End a local request that gets no token for this long while its engine is not
    # reading a prompt (the stall watchdog, wlm/local/watchdog.py); 0 turns it off.
    local_stall_s: float = 60.0
    # Send a conversation back to the engine slot that holds its prompt (docs/local-models.md,
    # "Cache-aware slots").
    local_slot_affinity: bool = True
    # What local engines serve natively (WLM_LOCAL_DIALECTS); chat is always among them.
    local_dialects: tuple[str, ...] = ("chat", "messages", "responses")
    providers: tuple[ProviderConfig, ...] = ()
    routes: tuple[RoutePattern, ...] = ()
    default_provider: str | None = None
    aliases: tuple[tuple[str, str], ...] = ()
    api_keys: tuple[ClientKey, ...] = ()
    admin_key: str | None = attrs.field(default=None, repr=False)
    allow_open: bool = False
    log_content: bool = True
    retention_days: int | None = None
    telemetry_memory_limit: str = "512MB"
    telemetry_threads: int | None = None  # DuckDB threads; None: half the CPUs, at least 1
    anthropic_max_tokens: int = 4096
    models_cache_s: float = 300.0
    max_body_bytes: int = 20 * 1024 * 1024
    body_timeout_s: float = 30.0
    max_concurrency_per_client: int | None = None
    log_level: str = "INFO"
    retries: int = 2
    retry_max_wait_s: float = 10.0
    fallbacks: tuple[tuple[str, tuple[str, ...]], ...] = ()
    cooldown_failures: int = 3
    cooldown_s: float = 30.0
    local_max_wait_s: float | None = None  # None: wait for a local engine as long as it takes
    key_limits: tuple[KeyLimit, ...] = ()
    # WLM_KEY_PRIORITY: a client key's default place in the local engines' queue
    # (name or *, and interactive, normal or batch); x-wlm-priority overrides it.
    key_priority: tuple[tuple[str, str], ...] = ()
    prices_file: Path | None = None
    prices: tuple[PriceEntry, ...] = ()  # read from prices_file at start
    # The Hugging Face Hub (wlm pull, the Models page): a token for gated or private
    # repos (a secret like the keys), and another Hub-compatible endpoint (a mirror).
    hf_token: str | None = attrs.field(default=None, repr=False)
    hf_endpoint: str | None = None
    # Other wlm servers whose local models are listed and routed to (docs/routing.md).
    peers: tuple[PeerConfig, ...] = ()
    peer_poll_s: float = 5.0  # how often each peer's model list is read
    # How often the box's CPU, memory, GPUs and engines are sampled (GET /api/stats,
    # the dashboard, box_samples); 0: never.
    stats_every_s: float = 5.0
    otlp: OtlpConfig | None = None  # spans out (WLM_OTLP_ENDPOINT, OTEL_*); None: off

    @property
    def telemetry_file(self) -> Path:
        return self.telemetry_path or self.data_dir / "telemetry.duckdb"

    @property
    def telemetry_url_shown(self) -> str | None:
        """``telemetry_url`` with its password replaced, for pages and logs."""
        return redact_url_password(self.telemetry_url) if self.telemetry_url else None

    @property
    def models_path(self) -> Path:
        return self.models_dir.expanduser()

    def provider(self, name: str) -> ProviderConfig | None:
        for provider in self.providers:
            if provider.name == name:
                return provider
        return None

    def secrets(self) -> tuple[str, ...]:
        """Every configured secret value, for redaction (longest first)."""
        values = [p.api_key for p in self.providers if p.api_key]
        values += [k.key for k in self.api_keys]
        if self.admin_key:
            values.append(self.admin_key)
        if self.hf_token:
            values.append(self.hf_token)
        values += [peer.key for peer in self.peers if peer.key]
        if self.otlp is not None:
            values += self.otlp.secrets()
        if self.telemetry_url:
            values += url_passwords(self.telemetry_url)
        return tuple(sorted({v for v in values if len(v) >= 4}, key=len, reverse=True))


def url_password(url: str) -> str | None:
    """The password in a ``scheme://user:password@host/...`` URL or in its ``password``
    query parameter (libpq takes either), percent-decoded, if any."""
    passwords = url_passwords(url)
    return passwords[0] if passwords else None


def url_passwords(url: str) -> list[str]:
    """Every password ``url`` carries: the ``user:password@`` one and each
    ``?password=`` query parameter (percent-decoded)."""
    parts = urllib.parse.urlsplit(url)
    found: list[str] = []
    try:
        password = parts.password
    except ValueError:
        password = None
    if password:
        found.append(urllib.parse.unquote(password))
    for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if name == "password" and value:
            found.append(value)
    return found


def redact_url_password(url: str) -> str:
    """``url`` with the password (``user:password@`` and any ``password`` query
    parameter) replaced by ``[redacted]``."""
    parts = urllib.parse.urlsplit(url)
    if parts.query:
        fields = parts.query.split("&")
        for i, field in enumerate(fields):
            name, equals, _ = field.partition("=")
            if equals and urllib.parse.unquote_plus(name) == "password":
                fields[i] = f"{name}=[redacted]"
        parts = parts._replace(query="&".join(fields))
    if "@" in parts.netloc:
        userinfo, _, host = parts.netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        if colon:
            parts = parts._replace(netloc=f"{user}:[redacted]@{host}")
    return urllib.parse.urlunsplit(parts)


# The provider name of local GGUF models (``local/<id>`` routes there too).
LOCAL = "local"

DIALECT_NAMES = ("chat", "messages", "responses", "rerank")
# What an upstream serves natively: OpenAI itself chat and responses; any other
# OpenAI-compatible server chat; Anthropic messages (and chat, which its adapter
# translates).
_DIALECTS_BY_NAME: dict[str, tuple[str, ...]] = {"openai": ("chat", "responses")}
_DIALECTS_BY_KIND: dict[str, tuple[str, ...]] = {
    "openai": ("chat",),
    "anthropic": ("chat", "messages"),
}

# Built-in providers: name -> (kind, default base URL).
BUILTIN_PROVIDERS: dict[str, tuple[str, str]] = {
    "openai": ("openai", "https://api.openai.com/v1"),
    "anthropic": ("anthropic", "https://api.anthropic.com"),
    "openrouter": ("openai", "https://openrouter.ai/api/v1"),
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _parse_int(value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise ValueError(f"expected a whole number, got {value!r}") from None


def _parse_float(value: str) -> float:
    try:
        return float(value.strip())
    except ValueError:
        raise ValueError(f"expected a number, got {value!r}") from None


def _split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _parse_pairs(value: str, sep: str, what: str) -> list[tuple[str, str]]:
    pairs = []
    for item in _split_list(value):
        left, found, right = item.partition(sep)
        if not found or not left.strip() or not right.strip():
            raise ValueError(f"expected {what}, got {item!r}")
        pairs.append((left.strip(), right.strip()))
    return pairs


def _is_local_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host in ("localhost",) or host.endswith(".local") or host.endswith(".lan"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local


def _check_url(variable: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(variable, f"expected an http(s) URL, got {url!r}")
    return url.rstrip("/")


def _converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_structure_hook(
        bool, lambda v, _: v if isinstance(v, bool) else _parse_bool(v)
    )
    converter.register_structure_hook(int, lambda v, _: v if isinstance(v, int) else _parse_int(v))
    converter.register_structure_hook(
        float, lambda v, _: float(v) if isinstance(v, int | float) else _parse_float(v)
    )
    converter.register_structure_hook(Path, lambda v, _: Path(v).expanduser())
    return converter


# Simple settings: env name -> Settings field.
_SIMPLE: dict[str, str] = {
    "WLM_HOST": "host",
    "WLM_PORT": "port",
    "WLM_WORKERS": "workers",
    "WLM_DATA_DIR": "data_dir",
    "WLM_TELEMETRY_PATH": "telemetry_path",
    "WLM_TELEMETRY_URL": "telemetry_url",
    "WLM_SPOOL_MAX_MB": "spool_max_mb",
    "WLM_MODELS_DIR": "models_dir",
    "WLM_LLAMA_SERVER": "llama_server",
    "WLM_MAX_LOADED_MODELS": "max_loaded_models",
    "WLM_IDLE_UNLOAD_S": "idle_unload_s",
    "WLM_LOCAL_THREADS": "local_threads",
    "WLM_LOCAL_CTX_SIZE": "local_ctx_size",
    "WLM_LOCAL_PARALLEL": "local_parallel",
    "WLM_LOCAL_LOAD_TIMEOUT_S": "local_load_timeout_s",
    "WLM_LOCAL_OPTIONS": "local_options_file",
    "WLM_LOCAL_RESCAN_S": "local_rescan_s",
    "WLM_LOCAL_STALL_S": "local_stall_s",
    "WLM_LOCAL_SLOT_AFFINITY": "local_slot_affinity",
    "WLM_DEFAULT_PROVIDER": "default_provider",
    "WLM_ADMIN_KEY": "admin_key",
    "WLM_ALLOW_OPEN": "allow_open",
    "WLM_LOG_CONTENT": "log_content",
    "WLM_RETENTION_DAYS": "retention_days",
    "WLM_TELEMETRY_MEMORY_LIMIT": "telemetry_memory_limit",
    "WLM_TELEMETRY_THREADS": "telemetry_threads",
    "WLM_ANTHROPIC_MAX_TOKENS": "anthropic_max_tokens",
    "WLM_MODELS_CACHE_S": "models_cache_s",
    "WLM_MAX_BODY_BYTES": "max_body_bytes",
    "WLM_BODY_TIMEOUT_S": "body_timeout_s",
    "WLM_MAX_CONCURRENCY_PER_CLIENT": "max_concurrency_per_client",
    "WLM_LOG_LEVEL": "log_level",
    "WLM_RETRIES": "retries",
    "WLM_RETRY_MAX_WAIT_S": "retry_max_wait_s",
    "WLM_COOLDOWN_FAILURES": "cooldown_failures",
    "WLM_COOLDOWN_S": "cooldown_s",
    "WLM_LOCAL_MAX_WAIT_S": "local_max_wait_s",
    "WLM_PRICES": "prices_file",
    "HF_TOKEN": "hf_token",
    "HF_ENDPOINT": "hf_endpoint",
    "WLM_PEER_POLL_S": "peer_poll_s",
    "WLM_STATS_EVERY_S": "stats_every_s",
}
# A size DuckDB's memory_limit accepts, kept to the unambiguous forms.
_MEMORY_SIZE = re.compile(
    r"^[1-9][0-9]*(\.[0-9]+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", re.IGNORECASE
)
_POSTGRES_URL = re.compile(r"^postgres(ql)?://[^\s]+$")
_POSITIVE = {
    "port",
    "workers",
    "max_loaded_models",
    "local_ctx_size",
    "local_parallel",
    "cooldown_failures",
    "telemetry_threads",
    "spool_max_mb",
}
_NON_NEGATIVE = {
    "retries",
    "retry_max_wait_s",
    "cooldown_s",
    "local_max_wait_s",
    "stats_every_s",
    "local_stall_s",
}


def _provider(env: Mapping[str, str], name: str) -> ProviderConfig:
    prefix = name.upper().replace("-", "_")
    kind, default_url = BUILTIN_PROVIDERS.get(name, ("openai", ""))
    kind = env.get(f"{prefix}_KIND", kind).strip().lower() or kind
    if kind not in ("openai", "anthropic"):
        raise ConfigError(f"{prefix}_KIND", f"expected openai or anthropic, got {kind!r}")
    url_var = f"{prefix}_BASE_URL"
    raw_url = env.get(url_var, "").strip() or default_url
    if not raw_url:
        raise ConfigError(url_var, f"provider {name!r} is listed in WLM_PROVIDERS but has no URL")
    base_url = _check_url(url_var, raw_url)
    api_key = env.get(f"{prefix}_API_KEY", "").strip() or None
    keyless_var = f"{prefix}_NO_KEY"
    keyless_raw = env.get(keyless_var)
    if keyless_raw is not None:
        try:
            keyless = _parse_bool(keyless_raw)
        except ValueError as exc:
            raise ConfigError(keyless_var, str(exc)) from None
    else:
        # A user-defined provider on loopback or the LAN may need no key.
        keyless = name not in BUILTIN_PROVIDERS and _is_local_url(base_url)
    if keyless and api_key is None and not _is_local_url(base_url):
        raise ConfigError(
            keyless_var,
            f"only a loopback or LAN server may run without a key, {base_url} is neither",
        )
    models_raw = env.get(f"WLM_{prefix}_MODELS")
    models = tuple(_split_list(models_raw)) if models_raw is not None else None
    headers: list[tuple[str, str]] = []
    if name == "openrouter":
        referer = env.get("OPENROUTER_REFERER", "").strip() or "https://github.com/wlm-gateway/wlm"
        title = env.get("OPENROUTER_TITLE", "").strip() or "wlm"
        headers = [("HTTP-Referer", referer), ("X-Title", title)]
    timeouts: dict[str, Any] = {}  # seconds, by ProviderConfig field
    for field, suffix in (
        ("connect_timeout_s", "CONNECT_TIMEOUT_S"),
        ("read_timeout_s", "TIMEOUT_S"),
    ):
        variable = f"{prefix}_{suffix}"
        if env.get(variable, "").strip():
            try:
                timeouts[field] = _parse_float(env[variable])
            except ValueError as exc:
                raise ConfigError(variable, str(exc)) from None
            if timeouts[field] <= 0:
                raise ConfigError(variable, "must be greater than 0")
    dialects_var = f"WLM_{prefix}_DIALECTS"
    if env.get(dialects_var, "").strip():
        dialects = _dialects(dialects_var, env[dialects_var])
        if kind == "anthropic" and "rerank" in dialects:
            raise ConfigError(dialects_var, "Anthropic's API has no rerank endpoint")
        if kind == "anthropic":
            dialects = tuple(dict.fromkeys(("chat", "messages", *dialects)))
    else:
        dialects = _DIALECTS_BY_NAME.get(name) or _DIALECTS_BY_KIND[kind]
    return ProviderConfig(
        name=name,
        kind=kind,
        base_url=base_url,
        api_key=api_key,
        models=models,
        keyless=keyless,
        extra_headers=tuple(headers),
        dialects=dialects,
        **timeouts,
    )


def _dialects(variable: str, value: str) -> tuple[str, ...]:
    dialects = tuple(_split_list(value))
    unknown = [d for d in dialects if d not in DIALECT_NAMES]
    if unknown:
        raise ConfigError(
            variable, f"expected a list of {', '.join(DIALECT_NAMES)}; got {unknown[0]!r}"
        )
    return dialects


def _read_env(environ: Mapping[str, str], env_file: Path | None) -> dict[str, str]:
    merged: dict[str, str] = {}
    path = env_file if env_file is not None else Path(".env")
    if env_file is not None and not env_file.is_file():
        raise ConfigError("--env-file", f"no such file: {env_file}")
    if path.is_file():
        merged.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    # The real environment wins over the file, as with most dotenv tools.
    merged.update(environ)
    return merged


def load_settings(
    environ: Mapping[str, str] | None = None,
    env_file: Path | None = None,
    **overrides: Any,
) -> Settings:
    """Build :class:`Settings` from ``environ`` (default ``os.environ``) and a ``.env`` file.

    With the default environment, ``./.env`` is read when ``env_file`` is not given.

    ``overrides`` (e.g. ``host=``, ``port=`` from the command line) win over both.
    Raises :class:`ConfigError` naming the first malformed variable.
    """
    if environ is None:
        env = _read_env(os.environ, env_file)
    elif env_file is not None:
        env = _read_env(environ, env_file)
    else:  # an explicit environment (tests) reads no stray ./.env
        env = dict(environ)
    raw: dict[str, Any] = {}
    for variable, field in _SIMPLE.items():
        value = env.get(variable)
        if value is not None and value.strip() != "":
            raw[field] = value.strip()
    raw.update({k: v for k, v in overrides.items() if v is not None})

    converter = _converter()
    fields = attrs.fields_dict(attrs.resolve_types(Settings))
    values: dict[str, Any] = {}
    field_to_var = {field: var for var, field in _SIMPLE.items()}
    for field, value in raw.items():
        variable = field_to_var.get(field, f"--{field.replace('_', '-')}")
        try:
            values[field] = converter.structure(value, fields[field].type or str)
        except Exception as exc:  # cattrs wraps the hook's ValueError
            cause = exc.__cause__ or exc
            if isinstance(exc, cattrs.BaseValidationError) and exc.exceptions:
                cause = exc.exceptions[0]
            raise ConfigError(variable, str(cause)) from None
        if field in _POSITIVE and values[field] < 1:
            raise ConfigError(variable, f"must be at least 1, got {values[field]}")
        if field in _NON_NEGATIVE and not 0 <= values[field] < math.inf:
            raise ConfigError(variable, f"must be 0 or more, got {value!r}")
        if field == "local_rescan_s" and not 0 <= values[field] < float("inf"):
            raise ConfigError(variable, f"must be 0 (off) or a number of seconds, got {value!r}")
        if field == "peer_poll_s" and not 0 < values[field] < math.inf:
            raise ConfigError(variable, f"must be more than 0 seconds, got {value!r}")
        if field == "port" and values[field] > 65535:
            raise ConfigError(variable, f"must be at most 65535, got {values[field]}")
        if field == "telemetry_url" and not _POSTGRES_URL.match(values[field]):
            raise ConfigError(
                variable, "expected postgresql://user:password@host:port/database (or empty)"
            )
        if field == "hf_endpoint":
            values[field] = _check_url(variable, values[field])
        if field == "telemetry_memory_limit" and not _MEMORY_SIZE.match(values[field]):
            raise ConfigError(variable, f"expected a size such as 512MB or 2GB, got {value!r}")

    if env.get("WLM_LOCAL_DIALECTS", "").strip():
        # Chat is the hub every local engine serves; the rest go translated through it.
        local = _dialects("WLM_LOCAL_DIALECTS", env["WLM_LOCAL_DIALECTS"])
        values["local_dialects"] = tuple(dict.fromkeys(("chat", *local)))

    names = list(BUILTIN_PROVIDERS)
    for name in _split_list(env.get("WLM_PROVIDERS", "")):
        name = name.lower()
        if not PROVIDER_NAME.match(name) or name == "local":
            raise ConfigError("WLM_PROVIDERS", f"{name!r} is not a usable provider name")
        if name not in names:
            names.append(name)
    providers = tuple(_provider(env, name) for name in names)
    values["providers"] = providers
    known = {p.name for p in providers} | {"local"}

    try:
        routes = [
            RoutePattern(p, prov.lower())
            for p, prov in _parse_pairs(env.get("WLM_ROUTES", ""), "=", "pattern=provider")
        ]
    except ValueError as exc:
        raise ConfigError("WLM_ROUTES", str(exc)) from None
    for route in routes:
        if route.provider not in known:
            raise ConfigError(
                "WLM_ROUTES",
                f"route {route.pattern!r} names unknown provider {route.provider!r} "
                f"(known: {', '.join(sorted(known))})",
            )
    values["routes"] = tuple(routes)

    default = values.get("default_provider")
    if default is not None:
        default = default.lower()
        if default not in known:
            raise ConfigError(
                "WLM_DEFAULT_PROVIDER",
                f"unknown provider {default!r} (known: {', '.join(sorted(known))})",
            )
        values["default_provider"] = default

    try:
        values["aliases"] = tuple(_parse_pairs(env.get("WLM_ALIASES", ""), "=", "alias=model"))
        keys = _parse_pairs(env.get("WLM_API_KEYS", ""), ":", "name:key")
    except ValueError as exc:
        variable = "WLM_ALIASES" if "alias" in str(exc) else "WLM_API_KEYS"
        raise ConfigError(variable, str(exc)) from None
    values["api_keys"] = tuple(ClientKey(name, key) for name, key in keys)
    for name, _ in keys:
        if name.lower() in RESERVED_CLIENT_NAMES:
            raise ConfigError(
                "WLM_API_KEYS",
                f"{name!r} is a name wlm keeps for itself ({ADMIN_CLIENT!r}: the admin key, "
                f"{PLAYGROUND_CLIENT!r}: the pages' playground); give the key another name",
            )
    values["fallbacks"] = _parse_fallbacks(env.get("WLM_FALLBACKS", ""))
    key_names = {k.name for k in values["api_keys"]} | (
        {ADMIN_CLIENT} if values.get("admin_key") else set()
    )
    values["key_limits"] = _parse_key_limits(env.get("WLM_KEY_LIMITS", ""), key_names)
    values["key_priority"] = _parse_key_priority(env.get("WLM_KEY_PRIORITY", ""), key_names)
    if values.get("prices_file") is not None:
        values["prices"] = _read_prices(values["prices_file"])
    values["otlp"] = _parse_otlp(env)
    values["peers"] = _parse_peers(env, known)
    return Settings(**values)


_PEER_KEY = re.compile(r"^WLM_PEER_(.+)_KEY$")


def _parse_peers(env: Mapping[str, str], providers: set[str]) -> tuple[PeerConfig, ...]:
    """``WLM_PEERS=box2=http://gpu-box-2:5250,box3=...`` and each ``WLM_PEER_<NAME>_KEY``.

    A peer's name prefixes its model ids (``box2/qwen2.5-7b``), so it may not be a
    provider's name; a key for a peer that is not listed is a typo, and an error."""
    variable = "WLM_PEERS"
    peers: dict[str, PeerConfig] = {}
    for item in _split_list(env.get(variable, "")):
        name, found, url = (s.strip() for s in item.partition("="))
        name = name.lower()
        if not found or not name or not url:
            raise ConfigError(variable, f"expected name=http://host:port, got {item!r}")
        if not PROVIDER_NAME.match(name):
            raise ConfigError(
                variable,
                f"{name!r} is not a usable peer name "
                "(a lowercase letter, then letters, digits, - or _)",
            )
        if name in providers:
            raise ConfigError(
                variable, f"peer {name!r} has the name of a provider; name it otherwise"
            )
        if name in peers:
            raise ConfigError(variable, f"peer {name!r} is listed twice")
        base_url = _check_url(variable, url)
        if urlsplit(base_url).password or urlsplit(base_url).username:
            raise ConfigError(
                variable, f"peer {name!r}: put its key in WLM_PEER_<NAME>_KEY, not in the URL"
            )
        base_url = base_url.removesuffix("/v1").removesuffix("/api")
        peers[name] = PeerConfig(name, base_url)
    by_variable = {peer.key_variable: peer for peer in peers.values()}
    for key_variable, value in env.items():
        if not _PEER_KEY.match(key_variable) or not value.strip():
            continue
        peer = by_variable.get(key_variable)
        if peer is None:
            listed = ", ".join(sorted(by_variable)) or "none: WLM_PEERS is empty"
            raise ConfigError(key_variable, f"no such peer in WLM_PEERS (keys it reads: {listed})")
        peers[peer.name] = attrs.evolve(peer, key=value.strip())
    return tuple(peers.values())


def _parse_fallbacks(value: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``model=alt|alt,glob=alt``: entries by ``,``, alternatives by ``|``."""
    rules = []
    for item in _split_list(value):
        pattern, found, right = item.partition("=")
        alternatives = tuple(a.strip() for a in right.split("|") if a.strip())
        if not found or not pattern.strip() or not alternatives:
            raise ConfigError(
                "WLM_FALLBACKS", f"expected model=alternative|alternative, got {item!r}"
            )
        for alternative in alternatives:
            if any(c in alternative for c in "*?["):
                raise ConfigError(
                    "WLM_FALLBACKS",
                    f"alternative {alternative!r} is a glob; alternatives are model names",
                )
        rules.append((pattern.strip(), alternatives))
    return tuple(rules)


_RATE_LIMITS = ("rpm", "tpm", "concurrency")
_BUDGETS = ("usd_per_day", "usd_per_month")


def _parse_key_limits(value: str, key_names: set[str]) -> tuple[KeyLimit, ...]:
    """``name:rpm=60;tpm=200000;usd_per_day=5,*:concurrency=8``."""
    variable = "WLM_KEY_LIMITS"
    entries: dict[str, KeyLimit] = {}
    for item in _split_list(value):
        key, found, settings = item.partition(":")
        key = key.strip()
        if not found or not key or not settings.strip():
            raise ConfigError(variable, f"expected name:limit=value;limit=value, got {item!r}")
        # PLAYGROUND_CLIENT: the pages' playground, which has no key (docs/playground.md)
        if key not in ("*", PLAYGROUND_CLIENT) and key not in key_names:
            known = ", ".join(sorted(key_names)) or "none: set WLM_API_KEYS"
            raise ConfigError(
                variable, f"{key!r} is not a key name from WLM_API_KEYS (known: {known}) nor *"
            )
        if key in entries:
            raise ConfigError(variable, f"{key!r} has two entries; put its limits in one")
        limits: dict[str, Any] = {}
        for part in settings.split(";"):
            if not part.strip():
                continue
            name, found, number = (s.strip() for s in part.partition("="))
            if name not in _RATE_LIMITS + _BUDGETS or not found:
                raise ConfigError(
                    variable,
                    f"{key}: expected limit=value with a limit among "
                    f"{', '.join(_RATE_LIMITS + _BUDGETS)}, got {part.strip()!r}",
                )
            try:
                parsed: float = _parse_int(number) if name in _RATE_LIMITS else _parse_float(number)
            except ValueError as exc:
                raise ConfigError(variable, f"{key}: {name}: {exc}") from None
            if not 0 < parsed < math.inf:
                raise ConfigError(variable, f"{key}: {name} must be more than 0, got {number!r}")
            limits[name] = parsed
        entries[key] = KeyLimit(key, **limits)
    return tuple(entries.values())


# The local engines' queue (wlm/local/queue.py), best first.
PRIORITIES = ("interactive", "normal", "batch")


def _parse_key_priority(value: str, key_names: set[str]) -> tuple[tuple[str, str], ...]:
    """``name:priority`` pairs, ``,``-separated: ``ci:batch,alice:interactive,*:normal``."""
    variable = "WLM_KEY_PRIORITY"
    entries: dict[str, str] = {}
    for item in _split_list(value):
        key, found, priority = (s.strip() for s in item.partition(":"))
        if not found or not key or not priority:
            raise ConfigError(variable, f"expected name:priority, got {item!r}")
        if key not in ("*", PLAYGROUND_CLIENT) and key not in key_names:
            known = ", ".join(sorted(key_names)) or "none: set WLM_API_KEYS"
            raise ConfigError(
                variable, f"{key!r} is not a key name from WLM_API_KEYS (known: {known}) nor *"
            )
        if key in entries:
            raise ConfigError(variable, f"{key!r} has two entries")
        if priority.lower() not in PRIORITIES:
            raise ConfigError(
                variable, f"{key}: unknown priority {priority!r}; use {', '.join(PRIORITIES)}"
            )
        entries[key] = priority.lower()
    return tuple(entries.items())


_PRICE_FIELDS = {f.name for f in attrs.fields(PriceEntry)} - {"pattern"}


def _read_prices(path: Path) -> tuple[PriceEntry, ...]:
    """The ``WLM_PRICES`` TOML file: a table per ``provider/model`` (glob) of USD per MTok."""
    variable = "WLM_PRICES"
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(variable, f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(variable, f"{path} is not valid TOML: {exc}") from None
    entries = []
    for pattern, table in document.items():
        where = f"{path}: [{pattern!r}]"
        provider, slash, model = pattern.partition("/")
        if not isinstance(table, dict) or not slash or not provider or not model:
            raise ConfigError(
                variable,
                f'{where}: expected a table named provider/model, e.g. ["groq/llama-3.3-70b"]',
            )
        unknown = sorted(set(table) - _PRICE_FIELDS)
        if unknown:
            raise ConfigError(
                variable,
                f"{where}: unknown field {unknown[0]!r} (known: {', '.join(sorted(_PRICE_FIELDS))})",
            )
        for field in ("input_mtok", "output_mtok"):
            if field not in table:
                raise ConfigError(variable, f"{where}: {field} is missing")
        for field, number in table.items():
            if (
                isinstance(number, bool)
                or not isinstance(number, int | float)
                or not 0 <= number < math.inf
            ):
                raise ConfigError(
                    variable, f"{where}: {field} must be a number of dollars, 0 or more"
                )
        entries.append(PriceEntry(pattern, **{k: float(v) for k, v in table.items()}))
    return tuple(entries)


_TRACES_PATH = "/v1/traces"
_COMPRESSIONS = ("none", "gzip", "deflate")


def _otel(env: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """``(variable, value)`` of ``OTEL_EXPORTER_OTLP_TRACES_<name>``, else of
    ``OTEL_EXPORTER_OTLP_<name>`` (the signal's own variable wins), when set."""
    for variable in (f"OTEL_EXPORTER_OTLP_TRACES_{name}", f"OTEL_EXPORTER_OTLP_{name}"):
        value = env.get(variable, "").strip()
        if value:
            return variable, value
    return None


def _parse_otlp(env: Mapping[str, str]) -> OtlpConfig | None:
    """Spans out: ``WLM_OTLP_ENDPOINT`` (a collector's base URL, ``/v1/traces`` added
    unless there), else ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (as it is), else
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` (``/v1/traces`` added); None when none is set, or
    with ``OTEL_SDK_DISABLED=true``, or ``OTEL_TRACES_EXPORTER=none`` and no
    ``WLM_OTLP_ENDPOINT``. Errors about headers never quote a value: it may be a token."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    wlm_endpoint = env.get("WLM_OTLP_ENDPOINT", "").strip()
    exporters = _split_list(env.get("OTEL_TRACES_EXPORTER", "").lower())
    if not wlm_endpoint and exporters and "otlp" not in exporters:
        return None
    if wlm_endpoint:
        variable, url = "WLM_OTLP_ENDPOINT", wlm_endpoint.rstrip("/")
        if not url.endswith(_TRACES_PATH):
            url += _TRACES_PATH
    elif traces := env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip():
        variable, url = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces
    elif base := env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip():
        variable, url = "OTEL_EXPORTER_OTLP_ENDPOINT", base.rstrip("/") + _TRACES_PATH
    else:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(variable, f"expected an http(s) URL, got {_without_password(url)!r}")
    found = _otel(env, "PROTOCOL")
    if found is not None and found[1] != "http/protobuf":
        raise ConfigError(
            found[0], f"wlm exports OTLP over HTTP with protobuf (http/protobuf), not {found[1]!r}"
        )
    values: dict[str, Any] = {"endpoint": url}
    if found := _otel(env, "HEADERS"):
        values["headers"] = _parse_otel_pairs(*found)
    if found := _otel(env, "TIMEOUT"):
        try:
            # Seconds, as the OpenTelemetry Python SDK reads this variable.
            values["timeout_s"] = _parse_float(found[1])
        except ValueError as exc:
            raise ConfigError(found[0], str(exc)) from None
        if not 0 < values["timeout_s"] < math.inf:
            raise ConfigError(found[0], f"must be more than 0 seconds, got {found[1]!r}")
    if found := _otel(env, "COMPRESSION"):
        values["compression"] = found[1].lower()
        if values["compression"] not in _COMPRESSIONS:
            raise ConfigError(
                found[0], f"expected one of {', '.join(_COMPRESSIONS)}, got {found[1]!r}"
            )
    if service := env.get("OTEL_SERVICE_NAME", "").strip():
        values["service_name"] = service
    if attributes := env.get("OTEL_RESOURCE_ATTRIBUTES", "").strip():
        values["resource_attributes"] = _parse_otel_pairs("OTEL_RESOURCE_ATTRIBUTES", attributes)
    return OtlpConfig(**values)


def _parse_otel_pairs(variable: str, value: str) -> tuple[tuple[str, str], ...]:
    """``key=value,key=value`` with percent-encoded values (the format of the OTEL_*
    variables); an error names the entry by its position, never its value."""
    pairs = []
    for index, item in enumerate(value.split(","), start=1):
        if not item.strip():
            continue
        key, found, raw = item.partition("=")
        if not found or not key.strip() or not raw.strip():
            raise ConfigError(variable, f"entry {index} is not key=value")
        pairs.append((key.strip(), unquote(raw.strip())))
    return tuple(pairs)


def _without_password(url: str) -> str:
    """``url`` with the password of its user part, if any, replaced by ``[redacted]``."""
    parts = urlsplit(url)
    user, colon, _ = parts.netloc.rpartition("@")[0].partition(":")
    if not colon:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:[redacted]@{host}").geturl()
