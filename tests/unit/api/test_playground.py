"""The playground's requests: a page session and its CSRF token stand in for a key, only
with ``x-wlm-playground``, and are recorded as client ``playground``; and what the page
loads from a logged request."""

from __future__ import annotations

import json
from typing import Any

import pytest

from wlm.gateway import Gateway
from wlm.sessions import COOKIE_NAME, Session, SessionSigner, cookie_value, playground_refusal
from wlm.web import web_routes
from wlm.web.conversation import conversation_view
from wlm.web.playground import seed_from

from .pipeline import body, completion, drive, make_gateway

HELLO = [{"role": "user", "content": "hello"}]
ADMIN = "sk-admin-for-the-playground-01"
ALICE = "sk-client-alice-for-the-playground-02"


def session_headers(
    gateway: Gateway, *, admin: bool = True, token: str | None = None, header: bool = True
) -> list[tuple[bytes, bytes]]:
    """What the playground page's fetch sends: the cookie, the CSRF token, the header."""
    signer = gateway.sessions
    session = signer.new(admin=admin)
    cookie = f"theme=dark; {COOKIE_NAME}={signer.encode(session)}; other=1"
    headers = [
        (b"cookie", cookie.encode()),
        (b"x-csrf-token", (token if token is not None else signer.csrf_token(session)).encode()),
    ]
    return headers + ([(b"x-wlm-playground", b"1")] if header else [])


def keyed(**env: str) -> tuple[Gateway, Any]:
    gateway, _, sink = make_gateway(lambda request: completion("from the model"), env)
    return gateway, sink


async def test_an_admin_session_with_its_token_is_client_playground() -> None:
    gateway, sink = keyed(WLM_ADMIN_KEY=ADMIN, WLM_API_KEYS=f"alice:{ALICE}")
    reply = await drive(
        gateway, body(model="gpt-4o", messages=HELLO), headers=session_headers(gateway)
    )
    assert reply.status == 200
    assert json.loads(reply.body)["choices"][0]["message"]["content"] == "from the model"
    assert sink.only.client == "playground"
    assert reply.headers["x-request-id"] == sink.only.request_id


@pytest.mark.parametrize(
    "case",
    [
        "no cookie",
        "no token",
        "wrong token",
        "another session's token",
        "forged cookie",
        "not logged in",
        "no header",
    ],
)
async def test_without_a_logged_in_session_and_its_token_it_is_refused(case: str) -> None:
    gateway, sink = keyed(WLM_ADMIN_KEY=ADMIN, WLM_API_KEYS=f"alice:{ALICE}")
    headers = session_headers(gateway, admin=case != "not logged in", header=case != "no header")
    if case == "no cookie":
        headers = [h for h in headers if h[0] != b"cookie"]
    elif case == "no token":
        headers = [h for h in headers if h[0] != b"x-csrf-token"]
    elif case == "wrong token":
        headers = session_headers(gateway, token="not-the-token")
    elif case == "another session's token":
        # Both valid admin sessions of this process: a token binds to its own cookie only.
        another = gateway.sessions.new(admin=True)
        headers = session_headers(gateway, token=gateway.sessions.csrf_token(another))
    elif case == "forged cookie":
        other = SessionSigner(b"another secret, another process")
        forged = other.encode(other.new(admin=True))
        headers = [
            (b"cookie", f"{COOKIE_NAME}={forged}".encode()),
            (b"x-csrf-token", other.csrf_token(other.decode(forged)).encode()),  # type: ignore[arg-type]
            (b"x-wlm-playground", b"1"),
        ]
    reply = await drive(gateway, body(model="gpt-4o", messages=HELLO), headers=headers)
    assert reply.status == 401, case
    error = json.loads(reply.body)["error"]
    assert error["type"] == "authentication_error"
    assert sink.only.status == "error" and sink.only.client is None
    assert gateway.metrics.rejected["auth"] == 1


async def test_with_client_keys_but_no_admin_key_no_session_stands_in_for_a_key() -> None:
    gateway, _ = keyed(WLM_API_KEYS=f"alice:{ALICE}")
    reply = await drive(
        gateway, body(model="gpt-4o", messages=HELLO), headers=session_headers(gateway, admin=False)
    )
    assert reply.status == 401
    assert "WLM_ADMIN_KEY" in json.loads(reply.body)["error"]["message"]


async def test_with_no_keys_any_page_session_is_client_playground_and_the_header_needs_one() -> (
    None
):
    gateway, sink = keyed()
    ok = await drive(
        gateway, body(model="gpt-4o", messages=HELLO), headers=session_headers(gateway, admin=False)
    )
    assert ok.status == 200 and sink.rows[-1][0].client == "playground"
    bare = await drive(
        gateway, body(model="gpt-4o", messages=HELLO), headers=[(b"x-wlm-playground", b"1")]
    )
    assert bare.status == 401
    # An ordinary request (no header) is unchanged: anonymous, and no cookie is read.
    plain = await drive(gateway, body(model="gpt-4o", messages=HELLO))
    assert plain.status == 200 and sink.rows[-1][0].client is None


async def test_a_key_sent_with_the_header_names_the_client_as_usual() -> None:
    gateway, sink = keyed(WLM_ADMIN_KEY=ADMIN, WLM_API_KEYS=f"alice:{ALICE}")
    reply = await drive(
        gateway,
        body(model="gpt-4o", messages=HELLO),
        headers=[(b"authorization", f"Bearer {ALICE}".encode()), (b"x-wlm-playground", b"1")],
    )
    assert reply.status == 200 and sink.only.client == "alice"


@pytest.mark.parametrize(
    ("session", "admin_keys", "client_keys", "refused"),
    [
        (None, False, False, "reload /playground"),
        (None, True, True, "reload /playground"),
        ("page", False, False, None),  # no keys: any page session
        ("admin", True, False, None),
        ("admin", True, True, None),
        ("page", True, False, "log in at /login"),
        ("page", True, True, "log in at /login"),
        ("page", False, True, "WLM_ADMIN_KEY"),  # nobody can log in: never
    ],
)
def test_one_rule_says_which_sessions_the_playground_may_send_on(
    session: str | None, admin_keys: bool, client_keys: bool, refused: str | None
) -> None:
    found = None if session is None else Session("sid", 0, admin=session == "admin")
    reason = playground_refusal(found, admin_keys=admin_keys, client_keys=client_keys)
    assert reason is None if refused is None else refused in (reason or "")


def test_the_pages_take_the_gateways_signer_and_make_none_of_their_own() -> None:
    # A signer of their own would make every playground request a 401 at the proxy.
    with pytest.raises(TypeError):
        web_routes()  # type: ignore[call-arg]


def test_the_session_cookie_is_found_among_others_and_split_headers() -> None:
    headers = [(b"cookie", b"a=1; wlm_session=abc.1.1.mac"), (b"cookie", b"b=2")]
    assert cookie_value(headers) == "abc.1.1.mac"
    assert cookie_value([(b"cookie", b"a=1"), (b"cookie", b" wlm_session=xyz ")]) == "xyz"
    assert cookie_value([(b"cookie", b"wlm_session_other=1")]) is None
    assert cookie_value([]) is None


# -- what the page loads from a logged request ---------------------------------------------


def test_a_logged_chat_request_seeds_system_messages_and_settings() -> None:
    request = {
        "model": "gpt-4o",
        "temperature": 0.3,
        "max_completion_tokens": 99,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Look:"}, {"type": "image_url"}]},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
            {"role": "assistant", "content": "It is 42."},
            "not a message",
        ],
    }
    seed = seed_from({"request_json": json.dumps(request)})
    assert seed["system"] == "Be brief."
    assert seed["messages"] == [
        {"role": "user", "content": "Look:"},
        {"role": "assistant", "content": "It is 42."},
    ]
    assert seed["temperature"] == 0.3 and seed["max_tokens"] == 99
    assert seed["left_out"] == 4  # the image, the tool call, the tool result, the string


def test_anthropic_responses_and_completions_requests_seed_too() -> None:
    messages = seed_from(
        {
            "request_json": json.dumps(
                {
                    "system": [{"type": "text", "text": "Sys"}],
                    "max_tokens": 64,
                    "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
                }
            )
        }
    )
    assert messages["system"] == "Sys" and messages["max_tokens"] == 64
    assert messages["messages"] == [{"role": "user", "content": "Hi"}]
    responses = seed_from(
        {"request_json": json.dumps({"instructions": "Be kind", "input": "Hello there"})}
    )
    assert responses["system"] == "Be kind"
    assert responses["messages"] == [{"role": "user", "content": "Hello there"}]
    completions = seed_from({"request_json": json.dumps({"prompt": "Once upon"})})
    assert completions["messages"] == [{"role": "user", "content": "Once upon"}]
    nothing = seed_from({"request_json": None})
    assert nothing["messages"] == [] and nothing["temperature"] is None


async def test_the_playground_is_limited_like_any_client_under_its_own_name() -> None:
    gateway, sink = keyed(WLM_ADMIN_KEY=ADMIN, WLM_KEY_LIMITS="playground:rpm=1")
    payload = body(model="gpt-4o", messages=HELLO)
    first = await drive(gateway, payload, headers=session_headers(gateway))
    second = await drive(gateway, payload, headers=session_headers(gateway))
    assert first.status == 200 and second.status == 429
    assert first.headers["x-ratelimit-limit-requests"] == "1"
    assert [row[0].client for row in sink.rows] == ["playground", "playground"]


async def test_the_logged_content_keeps_the_system_prompt_and_settings_a_replay_needs() -> None:
    gateway, sink = keyed()
    await drive(
        gateway,
        body(
            model="gpt-4o",
            messages=HELLO,
            temperature=0.4,
            max_tokens=77,
            stream=False,
            user="not content",
        ),
    )
    _, conversation = sink.rows[0]
    assert conversation is not None and conversation.request_json is not None
    kept = json.loads(conversation.request_json)
    assert kept == {"messages": HELLO, "temperature": 0.4, "max_tokens": 77}
    seed = seed_from({"request_json": conversation.request_json})
    assert seed["temperature"] == 0.4 and seed["max_tokens"] == 77
    # Anthropic's system prompt, kept beside the messages, shows on the request page too.
    view = conversation_view(
        {"request_json": json.dumps({"system": "Be brief.", "messages": HELLO})}
    )
    assert [m["role"] for m in view["messages"]] == ["system", "user"]
    assert view["messages"][0]["parts"][0]["text"] == "Be brief."
