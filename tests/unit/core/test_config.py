"""Settings from the environment; malformed values stop start-up with one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from wlm.config import ConfigError, load_settings


@pytest.mark.parametrize(
    ("env", "variable", "fragment"),
    [
        ({"WLM_ROUTES": "gpt-*"}, "WLM_ROUTES", "pattern=provider"),
        ({"WLM_ROUTES": "gpt-*=nope"}, "WLM_ROUTES", "unknown provider 'nope'"),
        ({"WLM_PORT": "eighty"}, "WLM_PORT", "whole number"),
        ({"WLM_PORT": "70000"}, "WLM_PORT", "at most 65535"),
        ({"WLM_MAX_LOADED_MODELS": "0"}, "WLM_MAX_LOADED_MODELS", "at least 1"),
        ({"WLM_LOG_CONTENT": "maybe"}, "WLM_LOG_CONTENT", "true or false"),
        ({"WLM_DEFAULT_PROVIDER": "nope"}, "WLM_DEFAULT_PROVIDER", "unknown provider"),
        ({"WLM_PROVIDERS": "Bad Name"}, "WLM_PROVIDERS", "not a usable provider name"),
        ({"WLM_PROVIDERS": "groq"}, "GROQ_BASE_URL", "has no URL"),
        ({"WLM_PROVIDERS": "groq", "GROQ_BASE_URL": "ftp://x"}, "GROQ_BASE_URL", "http(s) URL"),
        ({"WLM_API_KEYS": "justakey"}, "WLM_API_KEYS", "name:key"),
        # Names wlm gives itself: a client key so named would share their limits and rows.
        ({"WLM_API_KEYS": "playground:sk-client-1"}, "WLM_API_KEYS", "'playground' is a name"),
        ({"WLM_API_KEYS": "app:sk-0,Admin:sk-client-1"}, "WLM_API_KEYS", "'Admin' is a name"),
        ({"WLM_ALIASES": "fast"}, "WLM_ALIASES", "alias=model"),
        ({"WLM_TELEMETRY_MEMORY_LIMIT": "lots"}, "WLM_TELEMETRY_MEMORY_LIMIT", "512MB"),
        ({"WLM_TELEMETRY_MEMORY_LIMIT": "80%"}, "WLM_TELEMETRY_MEMORY_LIMIT", "512MB"),
        (
            {
                "WLM_PROVIDERS": "cloud",
                "CLOUD_BASE_URL": "https://example.com/v1",
                "CLOUD_NO_KEY": "1",
            },
            "CLOUD_NO_KEY",
            "loopback or LAN",
        ),
    ],
)
def test_malformed_values_name_the_variable(
    env: dict[str, str], variable: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert info.value.variable == variable
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_defaults_match_the_contract() -> None:
    settings = load_settings({})
    assert (settings.host, settings.port) == ("127.0.0.1", 5250)
    assert settings.telemetry_file == Path("data/telemetry.duckdb")
    assert settings.models_dir == Path("~/models")
    assert (settings.max_loaded_models, settings.idle_unload_s) == (1, 600.0)
    assert settings.log_content is True
    assert settings.telemetry_memory_limit == "512MB"
    assert [p.name for p in settings.providers] == ["openai", "anthropic", "openrouter"]
    assert not any(p.configured for p in settings.providers)


def test_user_defined_providers_and_keyless_lan_servers() -> None:
    settings = load_settings(
        {
            "WLM_PROVIDERS": "groq,lab",
            "GROQ_BASE_URL": "https://api.groq.com/openai/v1/",
            "GROQ_API_KEY": "gsk-123456",
            "LAB_BASE_URL": "http://192.168.1.20:8080/v1",
            "WLM_GROQ_MODELS": "llama-3.1-8b-instant, mixtral",
        }
    )
    groq, lab = settings.provider("groq"), settings.provider("lab")
    assert groq is not None and lab is not None
    assert groq.base_url == "https://api.groq.com/openai/v1"
    assert groq.configured and groq.models == ("llama-3.1-8b-instant", "mixtral")
    assert lab.configured and lab.keyless and lab.api_key is None


def test_openrouter_attribution_headers_come_from_settings() -> None:
    settings = load_settings(
        {
            "OPENROUTER_API_KEY": "k-123456",
            "OPENROUTER_REFERER": "https://me.example",
            "OPENROUTER_TITLE": "Mine",
        }
    )
    openrouter = settings.provider("openrouter")
    assert openrouter is not None
    assert dict(openrouter.extra_headers) == {
        "HTTP-Referer": "https://me.example",
        "X-Title": "Mine",
    }


def test_env_file_is_read_and_real_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / "custom.env"
    env_file.write_text("WLM_PORT=6001\nOPENAI_API_KEY=sk-from-file\n")
    settings = load_settings({"WLM_PORT": "6002"}, env_file)
    assert settings.port == 6002
    openai = settings.provider("openai")
    assert openai is not None and openai.api_key == "sk-from-file"


def test_missing_env_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_settings({}, tmp_path / "absent.env")


def test_keys_never_show_in_repr() -> None:
    settings = load_settings({"OPENAI_API_KEY": "sk-very-secret", "WLM_ADMIN_KEY": "admin-secret"})
    assert "sk-very-secret" not in repr(settings)
    assert "admin-secret" not in repr(settings)
    assert set(settings.secrets()) == {"sk-very-secret", "admin-secret"}


def test_every_setting_is_in_env_example_and_configuration_md() -> None:
    """A user finds every variable, with its default, in both places."""
    from wlm.config import _SIMPLE

    root = Path(__file__).resolve().parents[3]
    example = (root / ".env.example").read_text()
    reference = (root / "docs" / "configuration.md").read_text()
    missing = [v for v in _SIMPLE if v not in example or f"`{v}`" not in reference]
    assert not missing, f"undocumented settings: {missing}"


def test_provider_dialects_default_by_provider_and_can_be_set() -> None:
    settings = load_settings(
        {
            "OPENAI_API_KEY": "k",
            "ANTHROPIC_API_KEY": "k",
            "OPENROUTER_API_KEY": "k",
            "WLM_PROVIDERS": "vllm",
            "VLLM_BASE_URL": "http://127.0.0.1:8000/v1",
            "WLM_VLLM_DIALECTS": "chat,responses",
        }
    )
    dialects = {p.name: p.dialects for p in settings.providers}
    assert dialects["openai"] == ("chat", "responses")
    assert dialects["anthropic"] == ("chat", "messages")
    assert dialects["openrouter"] == ("chat",)
    assert dialects["vllm"] == ("chat", "responses")


@pytest.mark.parametrize(
    ("value", "dialects"),
    [
        (None, ("chat", "messages", "responses")),
        ("chat", ("chat",)),
        ("messages", ("chat", "messages")),  # chat, the hub, is always served
        (" responses , chat ", ("chat", "responses")),
    ],
)
def test_local_dialects_default_to_all_three(value: str | None, dialects: tuple[str, ...]) -> None:
    env = {} if value is None else {"WLM_LOCAL_DIALECTS": value}
    assert load_settings(env).local_dialects == dialects


def test_an_unknown_local_dialect_names_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"WLM_LOCAL_DIALECTS": "chat,completions"})
    assert str(caught.value).startswith("WLM_LOCAL_DIALECTS:")


def test_an_unknown_dialect_names_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"OPENAI_API_KEY": "k", "WLM_OPENAI_DIALECTS": "chat,grpc"})
    assert str(caught.value).startswith("WLM_OPENAI_DIALECTS:")
    assert "grpc" in str(caught.value)


def test_a_password_in_the_telemetry_urls_query_is_a_secret_and_redacted() -> None:
    """libpq takes ``?password=`` as well as ``user:password@``: both are hidden."""
    url = "postgresql://wlm@127.0.0.1:1/db?sslmode=disable&password=S3cretPw"
    settings = load_settings({"WLM_TELEMETRY_URL": url})
    assert "S3cretPw" in settings.secrets()
    shown = settings.telemetry_url_shown
    assert shown == "postgresql://wlm@127.0.0.1:1/db?sslmode=disable&password=[redacted]"
    both = "postgresql://wlm:Userinfo9@h/db?password=Query99pw"
    settings = load_settings({"WLM_TELEMETRY_URL": both})
    assert {"Userinfo9", "Query99pw"} <= set(settings.secrets())
    assert settings.telemetry_url_shown == "postgresql://wlm:[redacted]@h/db?password=[redacted]"
    assert "S3cretPw" not in repr(load_settings({"WLM_TELEMETRY_URL": url}))
