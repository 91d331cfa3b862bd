"""What a request cost, from the usage its provider reported.

In order, the first that knows wins:

1. the cost the provider reported itself (OpenRouter's ``usage.cost``): the caller
   keeps it and does not ask (:meth:`Prices.cost_of` does this);
2. ``WLM_PRICES``: the user's own prices for ``provider/model`` (globs allowed);
3. the ``genai-prices`` data shipped with wlm, for the provider matched by its base
   URL (else by its name) and the model sent upstream;
4. a local model costs 0;
5. otherwise None: unknown, never a made-up 0.

Usage is counted the OpenAI way, as telemetry stores it: ``prompt_tokens`` include
cached reads and cache writes, ``completion_tokens`` include reasoning. Each
(provider, model) is looked up once and kept as flat per-token rates, so pricing a
request is a few multiplications; the few models whose price depends on the
request's size (tiers) are priced by ``genai-prices`` itself.

>>> from wlm.config import PriceEntry
>>> prices = Prices([PriceEntry("lab/*", input_mtok=1.0, output_mtok=2.0)], [])
>>> prices.cost_usd("lab", "qwen", TokenUsage(input_tokens=1000, output_tokens=500))
0.002
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import Any

from attrs import frozen
from genai_prices import Usage
from genai_prices.data_snapshot import DataSnapshot, get_snapshot
from genai_prices.types import ModelInfo, ModelPrice, Provider, TieredPrices

from wlm.config import LOCAL, PriceEntry, ProviderConfig, Settings

__all__ = ["Prices", "Rates", "TokenUsage"]

log = logging.getLogger("wlm.telemetry")

_MAX_CACHED = 4096  # (provider, model) pairs; model names come from clients


@frozen
class TokenUsage:
    """A request's tokens: all input (cached included) and all output (reasoning included)."""

    input_tokens: int
    output_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @classmethod
    def from_counts(cls, counts: Mapping[str, Any]) -> TokenUsage | None:
        """From telemetry's token counts (``ResponseAccount.token_counts()``); None if unknown."""
        prompt, completion = counts.get("prompt_tokens"), counts.get("completion_tokens")
        if prompt is None and completion is None:
            return None
        return cls(
            prompt or 0,
            completion or 0,
            counts.get("cached_tokens") or 0,
            counts.get("cache_write_tokens") or 0,
            counts.get("reasoning_tokens") or 0,
        )


@frozen
class Rates:
    """Flat USD per million tokens of each kind (and per request)."""

    input: float
    output: float
    cache_read: float
    cache_write: float
    reasoning: float
    per_request: float = 0.0

    @classmethod
    def of_entry(cls, entry: PriceEntry) -> Rates:
        return cls(
            entry.input_mtok,
            entry.output_mtok,
            _or(entry.cache_read_mtok, entry.input_mtok),
            _or(entry.cache_write_mtok, entry.input_mtok),
            _or(entry.reasoning_mtok, entry.output_mtok),
        )

    def cost(self, usage: TokenUsage) -> float:
        cached = min(usage.input_tokens, usage.cache_read_tokens + usage.cache_write_tokens)
        reasoning = min(usage.output_tokens, usage.reasoning_tokens)
        millionths = (
            (usage.input_tokens - cached) * self.input
            + usage.cache_read_tokens * self.cache_read
            + usage.cache_write_tokens * self.cache_write
            + (usage.output_tokens - reasoning) * self.output
            + reasoning * self.reasoning
        )
        return millionths / 1_000_000 + self.per_request


_FREE = Rates(0.0, 0.0, 0.0, 0.0, 0.0)
_Priced = Rates | tuple[ModelInfo, Provider] | None


class Prices:
    """Prices for the configured providers: ``WLM_PRICES`` first, then ``genai-prices``."""

    def __init__(
        self,
        entries: Iterable[PriceEntry],
        providers: Sequence[ProviderConfig],
        *,
        snapshot: DataSnapshot | None = None,
    ) -> None:
        entries = tuple(entries)
        self._exact = {e.pattern: Rates.of_entry(e) for e in entries if not _is_glob(e.pattern)}
        self._globs = tuple((e.pattern, Rates.of_entry(e)) for e in entries if _is_glob(e.pattern))
        self._urls = {p.name: p.base_url for p in providers}
        self._snapshot = snapshot
        self._providers: dict[str, Provider | None] = {}
        self._cache: dict[tuple[str, str], tuple[date, _Priced]] = {}
        self._unpriced: set[tuple[str, str]] = set()

    @classmethod
    def from_settings(cls, settings: Settings) -> Prices:
        return cls(settings.prices, settings.providers)

    def cost_of(
        self,
        provider: str | None,
        model: str | None,
        counts: Mapping[str, Any],
        when: datetime | None = None,
    ) -> float | None:
        """``counts["cost_usd"]`` when the provider reported one, else the priced usage."""
        reported = counts.get("cost_usd")
        if reported is not None:
            return float(reported)
        usage = TokenUsage.from_counts(counts)
        if usage is None or provider is None or model is None:
            return None
        return self.cost_usd(provider, model, usage, when)

    def cost_usd(
        self, provider: str, model: str, usage: TokenUsage, when: datetime | None = None
    ) -> float | None:
        """What ``usage`` of ``model`` at ``provider`` costs, in USD (None: no price known).

        ``when`` (default now) picks prices that changed on a date.
        """
        when = when or datetime.now(UTC)
        priced = self._priced(provider, model, when)
        if priced is None:
            return None
        if isinstance(priced, Rates):
            return priced.cost(usage)
        info, genai_provider = priced
        calc = info.calc_price(_genai_usage(usage), genai_provider, genai_request_timestamp=when)
        return float(calc.total_price)

    # -- looking up -----------------------------------------------------------------

    def _priced(self, provider: str, model: str, when: datetime) -> _Priced:
        key = (provider, model)
        day = when.date()
        cached = self._cache.get(key)
        if cached is not None and cached[0] == day:
            return cached[1]
        priced = self._look_up(provider, model, when)
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()
        self._cache[key] = (day, priced)
        if priced is None and key not in self._unpriced and len(self._unpriced) < _MAX_CACHED:
            self._unpriced.add(key)
            log.info(
                "no price for %s/%s: its requests get no cost_usd (add it to WLM_PRICES)",
                provider,
                model,
            )
        return priced

    def _look_up(self, provider: str, model: str, when: datetime) -> _Priced:
        name = f"{provider}/{model}"
        own = self._exact.get(name)
        if own is None:
            own = next((r for p, r in self._globs if fnmatchcase(name, p)), None)
        if own is not None:
            return own
        if provider == LOCAL:
            return _FREE
        genai_provider = self._genai_provider(provider)
        if genai_provider is None:
            return None
        try:
            _, info = self._data().find_provider_model(model, genai_provider, None, None)
        except LookupError:
            return None
        return _flat_rates(info.get_prices(when)) or (info, genai_provider)

    def _genai_provider(self, provider: str) -> Provider | None:
        """genai-prices' provider for a configured one: by base URL, else by name."""
        if provider in self._providers:
            return self._providers[provider]
        data = self._data()
        url = self._urls.get(provider)
        found = _find_provider(data, None, url) if url else None
        if found is None:
            found = _find_provider(data, provider, None)
        self._providers[provider] = found
        return found

    def _data(self) -> DataSnapshot:
        return self._snapshot or get_snapshot()


def _find_provider(data: DataSnapshot, name: str | None, url: str | None) -> Provider | None:
    try:
        return data.find_provider(None, name, url)
    except LookupError:
        return None


def _flat_rates(price: ModelPrice) -> Rates | None:
    """The model's per-token rates, unless one of them depends on the request's size."""
    values: dict[str, Decimal | None] = {}
    for key in (
        "input_mtok",
        "output_mtok",
        "cache_read_mtok",
        "cache_write_mtok",
        "output_reasoning_mtok",
        "requests_kcount",
    ):
        value = getattr(price, key, None)
        if isinstance(value, TieredPrices):
            return None
        values[key] = value
    input_mtok = float(values["input_mtok"] or 0)
    output_mtok = float(values["output_mtok"] or 0)
    return Rates(
        input_mtok,
        output_mtok,
        _or(_float(values["cache_read_mtok"]), input_mtok),
        _or(_float(values["cache_write_mtok"]), input_mtok),
        _or(_float(values["output_reasoning_mtok"]), output_mtok),
        float(values["requests_kcount"] or 0) / 1000,
    )


def _genai_usage(usage: TokenUsage) -> Usage:
    return Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        output_reasoning_tokens=usage.reasoning_tokens,
    )


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _is_glob(name: str) -> bool:
    return any(c in name for c in "*?[")
