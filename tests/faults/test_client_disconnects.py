"""The client goes away: before the first byte, mid-stream, during a non-stream request.

What each case checks:
- the client: it left, so it sees what it read up to then (nothing, or some chunks);
- the upstream: wlm hangs up on it promptly (the fake's ``wait_closed``), so a
  provider stops generating and a llama.cpp slot is freed;
- telemetry: one row with status ``cancelled`` (http_status 499 when nothing was sent,
  200 when the stream had started);
- left running: nothing; wlm keeps serving and holds no extra upstream connection.
"""

from __future__ import annotations

import httpx
import pytest

from tests.faults.conftest import World
from tests.faults.helpers import RowChecks, chat, index_of, new_request_id
from tests.faults.test_upstream_faults import assert_nothing_left, warm

pytestmark = pytest.mark.e2e

# The client gives up after this long; the fake would answer much later.
CLIENT_PATIENCE_S = 0.5
# wlm must hang up on the upstream within this long of the client leaving.
HANG_UP_WITHIN_S = 1.5


@pytest.fixture(scope="module")
def rows() -> RowChecks:
    return RowChecks()


def hung_up_after(world: World, marker: str) -> float:
    """Seconds from the upstream request's arrival until wlm closed it (fails if never)."""
    fake = world.fakes["openai"]
    closed = fake.wait_closed(index_of(fake, marker), timeout=5)
    assert closed is not None, "the upstream never saw wlm hang up"
    return closed


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_client_leaving_before_the_first_byte_cancels_the_upstream(
    world: World, rows: RowChecks, stream: bool
) -> None:
    """slow-first: the upstream waits 5 s before answering; the client leaves after 0.5 s.
    Client: a read timeout, no byte. Upstream: closed. Telemetry: cancelled/499."""
    fake = world.fakes["openai"]
    before = warm(world, fake, "openai")
    request_id = new_request_id()
    body = chat("openai/slow-first:5000", stream=stream)
    impatient = world.client(timeout=CLIENT_PATIENCE_S)

    with pytest.raises(httpx.ReadTimeout):
        impatient.post("/v1/chat/completions", json=body, headers={"x-request-id": request_id})

    assert (
        hung_up_after(world, body["messages"][0]["content"]) < CLIENT_PATIENCE_S + HANG_UP_WITHIN_S
    )
    rows.expect(
        f"left before first byte, stream={stream}", request_id, status="cancelled", http_status=499
    )
    assert_nothing_left(world, fake, "openai", before)


def test_client_leaving_mid_stream_cancels_the_upstream(world: World, rows: RowChecks) -> None:
    """paced:300:20: a 6 s stream; the client reads two chunks and leaves.
    Client: the chunks it read. Upstream: closed long before its 6 s. Telemetry: cancelled."""
    fake = world.fakes["openai"]
    before = warm(world, fake, "openai")
    request_id = new_request_id()
    body = chat("openai/paced:300:20", stream=True)
    seen = 0

    with world.http.stream(
        "POST", "/v1/chat/completions", json=body, headers={"x-request-id": request_id}
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: {"):
                seen += 1
                if seen == 2:
                    break

    assert seen == 2
    assert hung_up_after(world, body["messages"][0]["content"]) < 2.0
    rows.expect("left mid-stream", request_id, status="cancelled", http_status=499)
    assert_nothing_left(world, fake, "openai", before)


def test_client_leaving_a_non_stream_request_cancels_the_upstream(
    world: World, rows: RowChecks
) -> None:
    """hang: the upstream never answers; the client leaves after 0.5 s.
    Client: a read timeout. Upstream: closed. Telemetry: cancelled/499."""
    fake = world.fakes["openai"]
    before = warm(world, fake, "openai")
    request_id = new_request_id()
    body = chat("openai/hang")
    impatient = world.client(timeout=CLIENT_PATIENCE_S)

    with pytest.raises(httpx.ReadTimeout):
        impatient.post("/v1/chat/completions", json=body, headers={"x-request-id": request_id})

    assert (
        hung_up_after(world, body["messages"][0]["content"]) < CLIENT_PATIENCE_S + HANG_UP_WITHIN_S
    )
    rows.expect("left a whole request", request_id, status="cancelled", http_status=499)
    assert_nothing_left(world, fake, "openai", before)


def test_client_leaving_an_anthropic_stream_cancels_the_upstream(
    world: World, rows: RowChecks
) -> None:
    """The translated path (OpenAI in, Anthropic out) cancels the same way."""
    fake = world.fakes["anthropic"]
    before = warm(world, fake, "anthropic")
    request_id = new_request_id()
    body = chat("anthropic/paced:300:20", stream=True)

    with world.http.stream(
        "POST", "/v1/chat/completions", json=body, headers={"x-request-id": request_id}
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: {") and '"content"' in line:
                break

    closed = fake.wait_closed(index_of(fake, body["messages"][0]["content"]), timeout=5)
    assert closed is not None and closed < 2.0
    rows.expect("left an anthropic stream", request_id, status="cancelled", http_status=499)
    assert_nothing_left(world, fake, "anthropic", before)


def test_zz_telemetry_recorded_every_cancellation(world: World, rows: RowChecks) -> None:
    if not rows.expected:
        pytest.skip("no disconnect case of this module ran")
    assert rows.verify(world.admin) == len(rows.expected)
