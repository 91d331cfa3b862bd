"""Adapters by provider kind: the one place that knows which class speaks which protocol."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from wlm.config import ProviderConfig, Settings
from wlm.local.protocol import LocalModels
from wlm.providers.anthropic import AnthropicAdapter
from wlm.providers.base import Adapter
from wlm.providers.local import LOCAL, LocalAdapter, local_provider_config
from wlm.providers.openai_compat import OpenAICompatAdapter
from wlm.transport import Transport, TransportFactory

__all__ = ["ADAPTERS", "AdapterFactory", "build_adapters"]

AdapterFactory = Callable[[ProviderConfig, Transport, Settings, "LocalModels | None"], Adapter]


def _openai(
    config: ProviderConfig, transport: Transport, _: Settings, __: LocalModels | None
) -> Adapter:
    return OpenAICompatAdapter(config, transport)


def _anthropic(
    config: ProviderConfig, transport: Transport, settings: Settings, _: LocalModels | None
) -> Adapter:
    return AnthropicAdapter(config, transport, settings.anthropic_max_tokens)


def _local(
    config: ProviderConfig, transport: Transport, settings: Settings, local: LocalModels | None
) -> Adapter:
    assert local is not None, "the local adapter is built only when local models are on"
    return LocalAdapter(
        config,
        transport,
        local,
        stall_s=settings.local_stall_s,
        slot_affinity=settings.local_slot_affinity,
    )


ADAPTERS: Mapping[str, AdapterFactory] = {
    "openai": _openai,
    "anthropic": _anthropic,
    LOCAL: _local,
}


def build_adapters(
    settings: Settings, transports: TransportFactory, local: LocalModels | None
) -> dict[str, Adapter]:
    """One adapter per usable provider, by provider name (``local`` when local models are on)."""
    configs = [p for p in settings.providers if p.configured]
    if local is not None:
        configs.append(
            local_provider_config(settings.local_load_timeout_s, settings.local_dialects)
        )
    return {
        config.name: ADAPTERS[config.kind](
            config,
            transports(
                config.name,
                connect_timeout_s=config.connect_timeout_s,
                read_timeout_s=config.read_timeout_s,
            ),
            settings,
            local,
        )
        for config in configs
    }
