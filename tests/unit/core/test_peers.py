"""Peers (WLM_PEERS): the settings, the ranking of boxes, the router and the directory."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from wlm.config import ConfigError, load_settings
from wlm.errors import ModelNotFound, UpstreamUnreachable
from wlm.providers.base import Call
from wlm.providers.peer import UNREACHABLE, PeerDirectory
from wlm.redaction import Redactor
from wlm.resilience.cooldowns import Admission, Cooldowns
from wlm.routing.peers import Candidate, rank
from wlm.routing.resolve import Router
from wlm.transport import UpstreamRequest
from wlm.transport.mock import MockResponse, MockTransport

PEERS = {"WLM_PEERS": "box2=http://127.0.0.1:5251,box3=http://127.0.0.1:5252"}


# -- settings -----------------------------------------------------------------------------


def test_peers_parse_with_their_keys_as_secrets() -> None:
    settings = load_settings(
        {
            "WLM_PEERS": "box2=http://gpu-box-2:5250/v1/, Box3=http://10.0.0.3:5250",
            "WLM_PEER_BOX2_KEY": "sk-box2-key",
        }
    )
    box2, box3 = settings.peers
    assert (box2.name, box2.base_url, box2.provider) == (
        "box2",
        "http://gpu-box-2:5250",
        "peer:box2",
    )
    assert (box3.name, box3.base_url, box3.key) == ("box3", "http://10.0.0.3:5250", None)
    assert box2.key == "sk-box2-key"
    assert "sk-box2-key" in settings.secrets()
    assert "sk-box2-key" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WLM_PEERS": "box2"}, "WLM_PEERS: expected name=http://host:port, got 'box2'"),
        ({"WLM_PEERS": "box2=gpu-box-2:5250"}, "WLM_PEERS: expected an http(s) URL"),
        ({"WLM_PEERS": "2box=http://h:1"}, "is not a usable peer name"),
        ({"WLM_PEERS": "openai=http://h:1"}, "has the name of a provider"),
        ({"WLM_PEERS": "local=http://h:1"}, "has the name of a provider"),
        ({"WLM_PEERS": "a=http://h:1,a=http://h:2"}, "peer 'a' is listed twice"),
        ({"WLM_PEERS": "a=http://u:pw@h:1"}, "put its key in WLM_PEER_<NAME>_KEY"),
        ({"WLM_PEERS": "a=http://h:1", "WLM_PEER_B_KEY": "k"}, "WLM_PEER_B_KEY: no such peer"),
        ({"WLM_PEER_POLL_S": "0"}, "WLM_PEER_POLL_S: must be more than 0"),
    ],
)
def test_bad_peer_settings_are_clear_startup_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert message in str(caught.value)
    assert "pw" not in str(caught.value).replace("WLM_PEERS", "")


# -- ranking ------------------------------------------------------------------------------


def test_rank_prefers_up_then_loaded_then_least_busy_then_name() -> None:
    assert rank([Candidate("b", "stopped"), Candidate("a", "stopped")]) == ("a", "b")
    assert rank(
        [Candidate("a", "stopped"), Candidate("b", "starting"), Candidate("c", "ready")]
    ) == (
        "c",
        "b",
        "a",
    )
    busy = [Candidate("a", "ready", in_flight=2), Candidate("b", "ready", queued=1)]
    assert rank(busy) == ("b", "a")
    # Loaded beats idle: a busy box with the model loaded still wins over loading it elsewhere.
    assert rank([Candidate("a", "stopped"), Candidate("b", "ready", in_flight=5)]) == ("b", "a")
    # Down or cooling goes last, whatever its state.
    assert rank([Candidate("a", "ready", up=False), Candidate("b", "stopped")]) == ("b", "a")
    assert rank([Candidate("a", "ready", cooling=True), Candidate("b", "failed")]) == ("b", "a")
    assert rank([]) == ()


# -- the directory and the router --------------------------------------------------------


def _listing(models: list[tuple[str, str]]) -> MockResponse:
    data = [{"id": i, "object": "model", "provider": "local", "state": s} for i, s in models]
    # What the peer lists of its own providers and peers is never taken.
    data.append({"id": "gpt-4o", "object": "model", "provider": "openai"})
    data.append({"id": "box9/x", "object": "model", "provider": "peer:box9", "state": "ready"})
    return MockResponse.json({"object": "list", "data": data})


class Boxes:
    """Two fake peers whose listings and liveness a test changes."""

    def __init__(self) -> None:
        self.models = {
            "5251": [("qwen", "stopped"), ("only2", "stopped")],
            "5252": [("qwen", "ready"), ("only3", "starting")],
        }
        self.down: set[str] = set()
        self.seen: list[UpstreamRequest] = []

    def handler(self, request: UpstreamRequest) -> MockResponse:
        self.seen.append(request)
        port = request.url.split(":")[2][:4]
        if port in self.down:
            raise UpstreamUnreachable(f"Provider connection to port {port} refused.")
        if request.method == "GET":
            return _listing(self.models[port])
        return MockResponse.json({"id": "c", "object": "chat.completion", "choices": []})


def _directory(
    boxes: Boxes, env: dict[str, str] | None = None
) -> tuple[PeerDirectory, Router, Cooldowns, Callable[[], None]]:
    settings = load_settings({**PEERS, "WLM_PEER_BOX2_KEY": "sk-box2-key", **(env or {})})
    transport = MockTransport(boxes.handler)
    directory = PeerDirectory(
        settings.peers, transport.factory, poll_s=1, redactor=Redactor(settings.secrets())
    )
    cooldowns = Cooldowns(1, 30, clock=lambda: 0.0)
    directory.watch(cooldowns)
    local = frozenset({"mine"})
    return directory, Router(settings, lambda: local, directory), cooldowns, lambda: None


async def test_polled_models_route_bare_and_prefixed_to_the_best_box() -> None:
    boxes = Boxes()
    directory, router, _, _ = _directory(boxes)
    assert directory.model_ids() == frozenset()
    await directory.poll()
    assert directory.model_ids() == {"qwen", "only2", "only3"}
    # The key goes to the peer that wants it, as a client key.
    listing = [r for r in boxes.seen if r.url == "http://127.0.0.1:5251/v1/models"]
    assert listing[0].headers["authorization"] == "Bearer sk-box2-key"
    assert "authorization" not in next(r for r in boxes.seen if "5252" in r.url).headers

    qwen = router.resolve("qwen")  # loaded on box3: box3 first, box2 to fail over to
    assert (qwen.provider, qwen.upstream_model, qwen.rule, qwen.also) == (
        "peer:box3",
        "qwen",
        "peer",
        ("peer:box2",),
    )
    assert router.resolve("only2").provider == "peer:box2"
    assert router.resolve("only2").also == ()
    prefixed = router.resolve("box2/qwen")
    assert (prefixed.provider, prefixed.upstream_model, prefixed.rule) == (
        "peer:box2",
        "qwen",
        "prefix",
    )
    assert router.resolve("mine").provider == "local"  # this box first
    with pytest.raises(ModelNotFound):
        router.resolve("nowhere")
    assert router.routes_to("box3/only3", "peer:box3")


async def test_busy_cooling_and_down_boxes_rank_last_and_come_back() -> None:
    boxes = Boxes()
    boxes.models["5251"] = [("qwen", "ready")]
    directory, router, cooldowns, _ = _directory(boxes)
    await directory.poll()
    assert router.resolve("qwen").provider == "peer:box2"  # both loaded: by name
    # A request in flight to box2 makes box3 the less busy one.
    adapter = directory.adapters["peer:box2"]
    call = Call(
        "chat/completions", {"model": "qwen"}, b'{"model":"qwen"}', "qwen", "qwen", False, False
    )
    response = await adapter.open(call, None)  # type: ignore[arg-type]
    assert router.resolve("qwen").provider == "peer:box3"
    response.release()
    assert router.resolve("qwen").provider == "peer:box2"

    # A cooling box goes last; the poll that reaches it again clears its cooldown.
    cooldowns.failed(("peer:box2", "qwen"), Admission.GO)
    assert router.resolve("qwen").provider == "peer:box3"

    boxes.down.add("5251")
    await directory.poll()
    states = {(m.peer, m.id): m.state for m in directory.models()}
    assert states[("box2", "qwen")] == UNREACHABLE  # listed as it was, but unreachable
    assert router.resolve("qwen").provider == "peer:box3"
    with pytest.raises(UpstreamUnreachable):
        await adapter.open(call, None)  # type: ignore[arg-type]
    assert directory.status()[0]["in_flight"] == 0

    boxes.down.clear()
    await directory.poll()
    assert cooldowns.quiet
    assert router.resolve("qwen").provider == "peer:box2"
    assert directory.status()[0]["up"] is True
