"""Scenario names a test puts in the request's `model` field, and recorded replies to replay.

A test drives the fake upstream through a real SDK client, so the only knob it has is the
request body. The `model` field selects what the fake does:

    <anything else>           an ordinary answer (stream or not, as the request asks)
    replay:<fixture-stem>     a recorded response from tests/fixtures/wire, byte for byte
    error:<status>[-<variant>]  the vendor's error body for that status (variants: echo, quota)
    flaky:<n>-<status>[:<tag>]  the first n requests naming this very model get the error for
                              that status, the later ones an ordinary answer (a provider
                              that fails, then recovers; the tag keeps tests apart)
    tools                     two parallel tool calls
    paced:<ms>[:<n>]          a stream of n content chunks (default 5) sent <ms> apart
    hang                      read the request, never answer
    hang-body                 send 200 and the stream headers, then nothing
    reset:<n>                 send n stream events, then abort the TCP connection
    midstream-error           200, two content chunks, then the vendor's mid-stream error
    malformed                 200 stream with a truncated JSON data line
    slow-first:<ms>           wait <ms> before the first byte, then an ordinary answer
    stop:<reason>             an ordinary answer that ends with this stop reason (Anthropic's
                              `stop_reason`, or OpenAI's `finish_reason`), e.g. stop:max_tokens
    thinking                  Anthropic only: a signed `thinking` block, then a text block
                              (stream or not); the other flavors answer 400
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from attrs import frozen

WIRE_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "wire"
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
_STOP_REASON = re.compile(r"[a-z][a-z_]{0,63}")

# Recorded headers that describe the original transfer rather than the reply: the fake
# sends the decoded body itself, with its own framing and date.
_TRANSFER_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "content-encoding", "connection", "date", "keep-alive"}
)


class Kind(enum.Enum):
    """What the fake does with one request."""

    ORDINARY = "ordinary"
    REPLAY = "replay"
    ERROR = "error"
    FLAKY = "flaky"
    TOOLS = "tools"
    PACED = "paced"
    HANG = "hang"
    HANG_BODY = "hang-body"
    RESET = "reset"
    MIDSTREAM_ERROR = "midstream-error"
    MALFORMED = "malformed"
    SLOW_FIRST = "slow-first"
    STOP = "stop"
    THINKING = "thinking"


# Scenarios that always answer with a 200 event stream, whatever `stream` says.
STREAM_ONLY = frozenset(
    {Kind.PACED, Kind.HANG_BODY, Kind.RESET, Kind.MIDSTREAM_ERROR, Kind.MALFORMED}
)


class ScenarioError(ValueError):
    """A `model` value that names a scenario but whose parameters do not parse."""


@frozen
class Scenario:
    """One parsed scenario; only the fields its kind uses are meaningful."""

    kind: Kind
    fixture: str = ""
    status: int = 0
    failures: int = 0
    variant: str = ""
    interval_ms: int = 0
    chunks: int = 5
    delay_ms: int = 0
    stop_reason: str = ""


@frozen
class Reply:
    """A complete HTTP answer: status, headers in order (repeats allowed) and body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def is_event_stream(self) -> bool:
        """True when the reply is `text/event-stream` (written event by event)."""
        return any(
            name.lower() == "content-type" and value.startswith("text/event-stream")
            for name, value in self.headers
        )


def _int_param(text: str, model: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ScenarioError(f"bad number {text!r} in fake scenario {model!r}") from None
    if value < minimum:
        raise ScenarioError(f"{value} is below {minimum} in fake scenario {model!r}")
    return value


def parse_scenario(model: str) -> Scenario:
    """Map a request's `model` value to a scenario; unknown names are ordinary answers."""
    head, _, rest = model.partition(":")
    if model in ("tools", "hang", "hang-body", "midstream-error", "malformed", "thinking"):
        return Scenario(Kind(model))
    if head == "replay" and rest:
        if "/" in rest or "\\" in rest or rest.startswith("."):
            raise ScenarioError(f"fixture stem {rest!r} must be a plain file stem")
        return Scenario(Kind.REPLAY, fixture=rest)
    if head == "error" and rest:
        status_text, _, variant = rest.partition("-")
        status = _int_param(status_text, model, 400)
        if status > 599 or variant not in ("", "echo", "quota"):
            raise ScenarioError(f"unknown error scenario {model!r}")
        return Scenario(Kind.ERROR, status=status, variant=variant)
    if head == "flaky" and rest:
        counts, _, _tag = rest.partition(":")
        failures_text, _, status_text = counts.partition("-")
        status = _int_param(status_text, model, 400)
        if status > 599:
            raise ScenarioError(f"unknown error status in fake scenario {model!r}")
        return Scenario(Kind.FLAKY, status=status, failures=_int_param(failures_text, model, 0))
    if head == "paced" and rest:
        interval, _, count = rest.partition(":")
        chunks = _int_param(count, model, 1) if count else 5
        return Scenario(Kind.PACED, interval_ms=_int_param(interval, model, 0), chunks=chunks)
    if head == "reset" and rest:
        return Scenario(Kind.RESET, chunks=_int_param(rest, model, 0))
    if head == "slow-first" and rest:
        return Scenario(Kind.SLOW_FIRST, delay_ms=_int_param(rest, model, 0))
    if head == "stop" and rest:
        if not _STOP_REASON.fullmatch(rest):
            raise ScenarioError(f"bad stop reason {rest!r} in fake scenario {model!r}")
        return Scenario(Kind.STOP, stop_reason=rest)
    return Scenario(Kind.ORDINARY)


def split_sse_events(body: bytes) -> list[bytes]:
    """Cut an SSE body after each blank line, so the pieces concatenate back to `body`."""
    pieces: list[bytes] = []
    start = 0
    while True:
        end = body.find(b"\n\n", start)
        if end < 0:
            break
        pieces.append(body[start : end + 2])
        start = end + 2
    if start < len(body):
        pieces.append(body[start:])
    return pieces


def _cassette_response(cassette: Path, index: int) -> tuple[int, tuple[tuple[str, str], ...]]:
    """Status and replayable headers of interaction `index` in a VCR cassette."""
    with cassette.open("rb") as handle:
        data = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    response = data["interactions"][index]["response"]
    headers = tuple(
        (name.lower(), str(value))
        for name, values in response.get("headers", {}).items()
        if name.lower() not in _TRANSFER_HEADERS
        for value in values
    )
    return int(response["status"]["code"]), headers


def load_replay(stem: str, wire_dir: Path = WIRE_DIR) -> Reply:
    """Load a recorded answer by fixture stem.

    `<cassette>.<n>` serves `extracted/<cassette>.<n>.response.sse|json` with the status and
    headers of interaction n of `<cassette>.vcr.yaml`; a bare stem serves `<stem>.sse` from
    the wire directory (raw SSE text with no HTTP wrapper) as a 200 event stream.
    """
    sse = wire_dir / "extracted" / f"{stem}.response.sse"
    recorded_json = sse.with_name(f"{stem}.response.json")
    if sse.is_file():
        path, content_type = sse, SSE_CONTENT_TYPE
    elif recorded_json.is_file():
        path, content_type = recorded_json, "application/json"
    else:
        raw = wire_dir / f"{stem}.sse"
        if not raw.is_file():
            raise ScenarioError(f"no recorded response for fixture stem {stem!r}")
        return Reply(200, (("content-type", SSE_CONTENT_TYPE),), raw.read_bytes())
    cassette_name, _, index_text = stem.rpartition(".")
    cassette = wire_dir / f"{cassette_name}.vcr.yaml"
    if cassette.is_file() and index_text.isdigit():
        status, headers = _cassette_response(cassette, int(index_text))
    else:
        status, headers = 200, ()
    if not any(name == "content-type" for name, _ in headers):
        headers = (("content-type", content_type), *headers)
    return Reply(status, headers, path.read_bytes())


# ---- agent-tool: one shell tool round trip for the real agent CLIs ------------------------
# The model name `agent-tool` parses as an ordinary scenario; the dialects check for it
# themselves (by the request's `model`) because the answer depends on the history: while
# the request carries no tool result, the answer calls the agent's shell tool (Claude
# Code's `Bash`, Codex's `exec_command`) to run AGENT_TOOL_COMMAND; once it does, the
# answer is text quoting that result. See tests/e2e/test_agents_e2e.py.
AGENT_TOOL = "agent-tool"
AGENT_TOOL_OUTPUT = "hi-from-tool"
AGENT_TOOL_COMMAND = f"echo {AGENT_TOOL_OUTPUT}"
AGENT_TOOL_PREAMBLE = "Running a command."
AGENT_TOOL_ANSWER = "The tool printed: "
# Each agent's shell tool and the arguments that run AGENT_TOOL_COMMAND with it.
_AGENT_SHELL_TOOLS: dict[str, dict[str, str]] = {
    "Bash": {"command": AGENT_TOOL_COMMAND, "description": "Print a greeting"},
    "exec_command": {"cmd": AGENT_TOOL_COMMAND},
}


def _tool_names(body: Mapping[str, Any]) -> list[str]:
    """Tool names in an Anthropic, chat (`function.name`) or Responses `tools` list."""
    names: list[str] = []
    for tool in body.get("tools") or ():
        if isinstance(tool, dict):
            function = tool.get("function")
            name = function.get("name") if isinstance(function, dict) else tool.get("name")
            if isinstance(name, str):
                names.append(name)
    return names


def _text_of(content: Any) -> str:
    """A tool result's text: a string, or the `text` of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def agent_tool_result(body: Mapping[str, Any]) -> str | None:
    """The last tool result in the request's history, in any dialect, or None.

    Anthropic: a `tool_result` block in a user message; chat: a `tool` message;
    Responses: a `function_call_output` item of `input`.
    """
    found: str | None = None
    for item in [*(body.get("messages") or ()), *(body.get("input") or ())]:
        if not isinstance(item, dict):
            continue
        if item.get("role") == "tool":
            found = _text_of(item.get("content"))
        elif item.get("type") == "function_call_output":
            found = _text_of(item.get("output"))
        elif isinstance(item.get("content"), list):
            for block in item["content"]:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    found = _text_of(block.get("content"))
    return found


def agent_tool_call(body: Mapping[str, Any]) -> tuple[str, dict[str, str]] | None:
    """(tool name, arguments) of the shell call to make, or None to answer with text.

    None once the request carries a tool result, or when it offers no known shell tool.
    """
    if agent_tool_result(body) is not None:
        return None
    for name in _tool_names(body):
        if name in _AGENT_SHELL_TOOLS:
            return name, _AGENT_SHELL_TOOLS[name]
    return None


def agent_tool_answer(body: Mapping[str, Any]) -> str:
    """The closing text: AGENT_TOOL_ANSWER and the tool's output, or a note that none came."""
    result = agent_tool_result(body)
    return AGENT_TOOL_ANSWER + (result.strip() if result is not None else "(no tool result)")
