"""W3C trace context (wlm/tracecontext.py) and the OTLP settings (WLM_OTLP_ENDPOINT, OTEL_*)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wlm.config import ConfigError, load_settings
from wlm.tracecontext import parse_traceparent, start_span

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"


def test_a_valid_traceparent_makes_wlms_span_its_child_and_is_rewritten() -> None:
    headers = [
        ("x-request-id", "rid"),
        ("traceparent", f"00-{TRACE}-{PARENT}-01"),
        ("tracestate", "congo=t61rcWkgMzE"),
    ]
    context, forwarded = start_span(headers)
    assert f"{context.trace_id:032x}" == TRACE
    assert context.parent_id == int(PARENT, 16)
    assert context.span_id not in (0, int(PARENT, 16))
    assert context.sampled
    assert forwarded == [
        ("x-request-id", "rid"),
        ("tracestate", "congo=t61rcWkgMzE"),
        ("traceparent", f"00-{TRACE}-{context.span_id:016x}-01"),
    ]


def test_no_traceparent_starts_a_trace_and_an_unsampled_one_stays_unsampled() -> None:
    context, forwarded = start_span([("tracestate", "orphan=1")])
    assert context.parent_id is None and context.trace_id and context.span_id
    assert forwarded == [("traceparent", context.traceparent)]  # no tracestate without parent
    unsampled, forwarded = start_span([("traceparent", f"00-{TRACE}-{PARENT}-00")])
    assert not unsampled.sampled
    assert forwarded[-1][1].endswith("-00")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        f"00-{'0' * 32}-{PARENT}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"ff-{TRACE}-{PARENT}-01",  # the forbidden version
        f"00-{TRACE.upper()}-{PARENT}-01",  # upper case
        f"00-{TRACE}-{PARENT}-01-extra",  # version 00 has exactly four fields
        f"00-{TRACE[:-1]}-{PARENT}-01",
    ],
)
def test_an_invalid_traceparent_is_ignored(value: str) -> None:
    assert parse_traceparent(value) is None
    context, _ = start_span([("traceparent", value)])
    assert context.parent_id is None


def test_a_later_version_may_carry_more_fields() -> None:
    assert parse_traceparent(f"01-{TRACE}-{PARENT}-03-whatever") == (
        int(TRACE, 16),
        int(PARENT, 16),
        3,
    )


@given(st.integers(1, 2**128 - 1), st.integers(1, 2**64 - 1), st.booleans())
def test_what_wlm_sends_parses_back(trace_id: int, parent_id: int, sampled: bool) -> None:
    flags = "01" if sampled else "00"
    context, forwarded = start_span(
        [("traceparent", f"00-{trace_id:032x}-{parent_id:016x}-{flags}")]
    )
    parsed = parse_traceparent(dict(forwarded)["traceparent"])
    assert parsed == (trace_id, context.span_id, int(sampled))


# -- settings --------------------------------------------------------------------------


def test_otlp_is_off_unless_an_endpoint_is_set() -> None:
    assert load_settings({}).otlp is None
    assert load_settings({"OTEL_SERVICE_NAME": "x"}).otlp is None


@pytest.mark.parametrize(
    ("env", "endpoint"),
    [
        ({"WLM_OTLP_ENDPOINT": "http://collector:4318"}, "http://collector:4318/v1/traces"),
        ({"WLM_OTLP_ENDPOINT": "http://collector:4318/"}, "http://collector:4318/v1/traces"),
        ({"WLM_OTLP_ENDPOINT": "https://c/v1/traces"}, "https://c/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "http://c:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:9/custom"}, "http://c:9/custom"),
        (
            {"WLM_OTLP_ENDPOINT": "http://wins:1", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:2"},
            "http://wins:1/v1/traces",
        ),
    ],
)
def test_the_traces_url_comes_from_wlm_or_the_standard_variables(
    env: dict[str, str], endpoint: str
) -> None:
    otlp = load_settings(env).otlp
    assert otlp is not None and otlp.endpoint == endpoint


def test_the_standard_switches_turn_it_off() -> None:
    base = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}
    assert load_settings({**base, "OTEL_SDK_DISABLED": "true"}).otlp is None
    assert load_settings({**base, "OTEL_TRACES_EXPORTER": "none"}).otlp is None
    assert load_settings({**base, "OTEL_TRACES_EXPORTER": "otlp"}).otlp is not None


def test_headers_service_and_resource_are_read_and_headers_are_secrets() -> None:
    settings = load_settings(
        {
            "WLM_OTLP_ENDPOINT": "http://user:pa55word@c:4318",
            "OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer%20tok-123456,x-tenant=acme",
            "OTEL_SERVICE_NAME": "gateway",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,team=ml",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2.5",
            "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
        }
    )
    otlp = settings.otlp
    assert otlp is not None
    assert otlp.headers == (("Authorization", "Bearer tok-123456"), ("x-tenant", "acme"))
    assert (otlp.service_name, otlp.timeout_s, otlp.compression) == ("gateway", 2.5, "gzip")
    assert otlp.resource_attributes == (("deployment.environment", "prod"), ("team", "ml"))
    assert {"Bearer tok-123456", "tok-123456", "acme", "pa55word"} <= set(settings.secrets())
    assert "tok-123456" not in repr(settings) and "pa55word" not in repr(settings)
    assert otlp.shown_endpoint == "http://user:[redacted]@c:4318/v1/traces"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"WLM_OTLP_ENDPOINT": "collector:4318"}, "WLM_OTLP_ENDPOINT"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "soon"}, "OTEL_EXPORTER_OTLP_TIMEOUT"),
        ({"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"}, "OTEL_EXPORTER_OTLP_COMPRESSION"),
        ({"OTEL_EXPORTER_OTLP_HEADERS": "secret-token-no-equals"}, "OTEL_EXPORTER_OTLP_HEADERS"),
    ],
)
def test_malformed_otlp_settings_name_the_variable_not_the_secret(
    env: dict[str, str], variable: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"WLM_OTLP_ENDPOINT": "http://c:4318", **env})
    assert caught.value.variable == variable
    assert "secret-token" not in str(caught.value)
