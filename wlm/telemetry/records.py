"""What one request leaves behind: a narrow RequestRecord and, apart, its conversation.

Records are frozen values built once, when the request ends (ok, error or
cancelled), and handed to the writer's queue. ``None`` means unknown: a token
count the upstream did not report is ``None``, never a made-up 0.
"""

from __future__ import annotations

from datetime import datetime

from attrs import frozen

__all__ = [
    "AttemptRecord",
    "BoxSampleRecord",
    "ConversationRecord",
    "EngineEventRecord",
    "RequestRecord",
]


@frozen
class RequestRecord:
    """One row of the ``requests`` table."""

    id: str
    started_at: datetime  # UTC
    ended_at: datetime  # UTC
    endpoint: str  # "chat/completions", "completions", "embeddings"
    model: str  # as requested by the client
    provider: str | None  # lowercase configured name; None when routing failed
    upstream_model: str | None
    stream: bool
    status: str  # "ok" | "error" | "cancelled"
    http_status: int | None
    client: str | None = None  # client key name when client keys are on
    request_id: str | None = None  # the x-request-id returned to the client
    error_type: str | None = None
    error_message: str | None = None  # redacted
    ttft_ms: float | None = None
    latency_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    tokens_per_s: float | None = None
    cost_usd: float | None = None  # when the upstream reports it (OpenRouter)
    finish_reason: str | None = None
    attempts: int = 1
    bytes_in: int | None = None
    bytes_out: int | None = None
    # llama.cpp timings for local requests
    local_prompt_n: int | None = None
    local_prompt_ms: float | None = None
    local_predicted_n: int | None = None
    local_predicted_ms: float | None = None
    local_cache_n: int | None = None
    error_code: str | None = None  # the error's specific code (upstream_timeout, ...)
    # What was called upstream: the client's endpoint when the backend speaks its
    # dialect, "chat/completions" when wlm translated (None when nothing was called).
    upstream_endpoint: str | None = None
    cache_write_tokens: int | None = None  # prompt tokens written to a cache, when reported
    fallback_from: str | None = None  # the first target's model, when another one answered
    queue_ms: float | None = None  # waited in the local engines' queue (None: not local)


@frozen
class ConversationRecord:
    """One row of the ``conversations`` table, keyed by the request id.

    ``request_json`` is the client's request as JSON text: its messages, prompt or
    input, and beside them the system prompt (Anthropic's ``system``, the Responses
    ``instructions``) and the generation settings (temperature, the token limit...), so
    the playground can replay it; ``response_text`` the assembled reply text;
    ``tool_calls_json`` the assembled tool calls as a JSON list. All are ``None`` when
    content logging is off.
    """

    request_id: str
    request_json: str | None
    response_text: str | None
    reasoning_text: str | None = None
    tool_calls_json: str | None = None


@frozen
class AttemptRecord:
    """One upstream try of a request that took more than one (a row of ``attempt_rows``).

    A request answered by its first try stores none: the ``attempts`` view derives that
    try from the ``requests`` row, so the common case writes one row, not two.
    """

    request_id: str  # the requests row's id
    number: int  # 1, 2, ... in the order tried
    provider: str | None
    upstream_model: str | None
    started_at: datetime  # UTC
    latency_ms: float | None  # until the answer's status, or the failure
    http_status: int | None  # the upstream's status; None when none came (refused, timeout)
    error_type: str | None
    # Why the request went on past this try: "retry", "fallback", "cooldown_skip",
    # "spillover"; None for the try that answered, or the last one when all failed.
    moved_on: str | None = None


@frozen
class BoxSampleRecord:
    """One row of ``box_samples``: one device of the box at one sample (docs/telemetry.md).

    ``kind`` says which: ``cpu`` (the whole box: CPU use, memory), ``gpu`` (one GPU:
    its utilisation and memory) or ``engine`` (one local engine: its resident memory
    and the requests on its slots). Figures that do not apply to a kind are ``None``.
    """

    sampled_at: datetime  # naive UTC, the sample's moment: a sample's rows share it
    host: str  # the machine that took it (replicas may share a PostgreSQL)
    kind: str  # "cpu" | "gpu" | "engine"
    name: str | None  # the GPU's name, the engine's model id; None for the cpu row
    gpu_index: int | None = None
    util_percent: float | None = None  # cpu: all cores together; gpu: its utilisation
    mem_used_bytes: int | None = None  # cpu: RAM in use; gpu: its memory; engine: RSS
    mem_total_bytes: int | None = None  # cpu: RAM; gpu: its memory
    slots_busy: int | None = None  # engine: requests on its slots


@frozen
class EngineEventRecord:
    """One row of ``engine_events``: something that happened to a local engine by itself.

    ``event`` is ``crash`` (the engine exited on its own; ``detail``: its exit status and
    last error line) or ``held`` (a crash loop: no request restarts it for a while, see
    docs/local-models.md#guards; ``detail``: the reason with its last log lines).
    """

    happened_at: datetime  # naive UTC
    host: str  # the machine whose engine it was (replicas may share a PostgreSQL)
    model: str
    event: str  # "crash" | "held"
    detail: str | None = None
