"""Prometheus metrics kept in memory and rendered as text on ``GET /metrics``.

Updating costs a few dictionary operations per request (done once, when the
request ends); rendering happens only when scraped.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from attrs import frozen

__all__ = ["Beat", "LabelledCounter", "Metrics", "Pulse", "PulseBucket"]

# Distinct model labels kept; beyond this, new names are counted as "(other)" so a
# client inventing model names cannot grow the series (and memory) without bound.
MAX_MODEL_LABELS = 500

# Seconds; LLM latencies run from milliseconds (local, cached) to minutes.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class _Histogram:
    __slots__ = ("count", "counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(_BUCKETS) + 1)
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(_BUCKETS, value)] += 1
        self.count += 1
        self.total += value


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    return ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True))


class Metrics:
    """Request counters and latency histograms per provider and model, plus gauges."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self.tokens: dict[tuple[str, str, str], int] = defaultdict(int)
        self.latency: dict[tuple[str, str], _Histogram] = defaultdict(_Histogram)
        self.ttft: dict[tuple[str, str], _Histogram] = defaultdict(_Histogram)
        self.in_flight = 0
        self.rejected: dict[str, int] = defaultdict(int)
        self._models: set[str] = set()

    def observe(
        self,
        provider: str,
        model: str,
        status: str,
        latency_s: float,
        ttft_s: float | None,
        prompt_tokens: int | None,
        completion_tokens: int | None,
    ) -> None:
        """Count one finished request."""
        if model not in self._models:
            if len(self._models) >= MAX_MODEL_LABELS:
                model = "(other)"
            else:
                self._models.add(model)
        self.requests[(provider, model, status)] += 1
        self.latency[(provider, model)].observe(latency_s)
        if ttft_s is not None:
            self.ttft[(provider, model)].observe(ttft_s)
        if prompt_tokens:
            self.tokens[(provider, model, "prompt")] += prompt_tokens
        if completion_tokens:
            self.tokens[(provider, model, "completion")] += completion_tokens

    def render(
        self,
        gauges: Iterable[tuple[str, str, float]] = (),
        counters: Iterable[LabelledCounter] = (),
    ) -> str:
        """Prometheus text exposition format (version 0.0.4); ``counters`` are kept by
        other parts (per-key limits, cooldowns)."""
        out: list[str] = []

        def counter(
            name: str,
            help_: str,
            labels: tuple[str, ...],
            data: Iterable[tuple[tuple[str, ...], int]],
        ) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} counter")
            for key, value in sorted(data):
                out.append(f"{name}{{{_labels(labels, key)}}} {value}")

        def histogram(name: str, help_: str, data: dict[tuple[str, str], _Histogram]) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} histogram")
            for key, hist in sorted(data.items()):
                base = _labels(("provider", "model"), key)
                running = 0
                for bound, count in zip((*_BUCKETS, float("inf")), hist.counts, strict=True):
                    running += count
                    le = "+Inf" if bound == float("inf") else repr(bound)
                    out.append(f'{name}_bucket{{{base},le="{le}"}} {running}')
                out.append(f"{name}_sum{{{base}}} {hist.total}")
                out.append(f"{name}_count{{{base}}} {hist.count}")

        counter(
            "wlm_requests_total",
            "Requests finished, by provider, model and status (ok, error, cancelled).",
            ("provider", "model", "status"),
            self.requests.items(),
        )
        counter(
            "wlm_tokens_total",
            "Tokens reported by providers, by kind (prompt, completion).",
            ("provider", "model", "kind"),
            self.tokens.items(),
        )
        counter(
            "wlm_rejected_total",
            "Requests refused before routing (auth, limits), by reason.",
            ("reason",),
            [((k,), v) for k, v in self.rejected.items()],
        )
        for extra in counters:
            counter(extra.name, extra.help, extra.labels, extra.values.items())
        histogram("wlm_request_duration_seconds", "Total request latency.", self.latency)
        histogram("wlm_ttft_seconds", "Time to the first generated token.", self.ttft)
        out.append("# HELP wlm_in_flight Requests being served now.")
        out.append("# TYPE wlm_in_flight gauge")
        out.append(f"wlm_in_flight {self.in_flight}")
        for name, help_, value in gauges:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} gauge")
            out.append(f"{name} {value}")
        return "\n".join(out) + "\n"


@frozen
class LabelledCounter:
    """A counter kept outside :class:`Metrics`, rendered with it."""

    name: str
    help: str
    labels: tuple[str, ...]
    values: Mapping[Any, int]  # label values (a tuple) -> count


GaugeSource = Callable[[], Iterable[tuple[str, str, float]]]


@frozen
class Beat:
    """One second of the pulse: requests finished and errors per provider, in flight."""

    at: float  # seconds since the epoch
    finished: Mapping[str, int]
    errors: Mapping[str, int]
    in_flight: int


@frozen
class PulseBucket:
    """A few seconds of the pulse, for a chart: rates per provider and the most in flight."""

    at: float  # start, seconds since the epoch
    seconds: int
    requests_per_s: Mapping[str, float]
    errors: Mapping[str, int]
    in_flight: int


class Pulse:
    """The last few minutes of traffic, one beat a second, for the dashboard's live charts.

    :meth:`beat` reads the counters :class:`Metrics` keeps anyway (requests by provider
    and status, the in-flight gauge) and stores what changed since the last beat, so
    the request path pays nothing for it. Someone calls :meth:`beat` once a second
    (the gateway does, while it runs); :meth:`buckets` sums the beats into buckets.
    """

    def __init__(self, metrics: Metrics, seconds: int = 300) -> None:
        self._metrics = metrics
        self._seconds = seconds
        self._beats: deque[Beat] = deque(maxlen=seconds)
        self._seen: dict[str, tuple[int, int]] = {}

    def beat(self, at: float) -> None:
        """Record the second ending at ``at`` (seconds since the epoch)."""
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for (provider, _model, status), n in self._metrics.requests.items():
            counts = totals[provider]
            counts[0] += n
            if status == "error":
                counts[1] += n
        finished, errors = {}, {}
        for provider, (n, failed) in totals.items():
            seen_n, seen_failed = self._seen.get(provider, (0, 0))
            if n > seen_n:
                finished[provider] = n - seen_n
            if failed > seen_failed:
                errors[provider] = failed - seen_failed
            self._seen[provider] = (n, failed)
        self._beats.append(Beat(at, finished, errors, self._metrics.in_flight))

    def buckets(self, now: float, bucket_s: int = 5) -> list[PulseBucket]:
        """The beats of the last ``seconds`` before ``now`` summed per ``bucket_s``
        seconds (aligned to multiples of it), oldest first; seconds without a beat
        (the server had not started) are left out."""
        since = now - self._seconds
        grouped: dict[int, list[Beat]] = defaultdict(list)
        for beat in self._beats:
            if beat.at > since:
                grouped[int(beat.at // bucket_s)].append(beat)
        out = []
        for key, beats in sorted(grouped.items()):
            finished: dict[str, int] = defaultdict(int)
            errors: dict[str, int] = defaultdict(int)
            for beat in beats:
                for provider, n in beat.finished.items():
                    finished[provider] += n
                for provider, n in beat.errors.items():
                    errors[provider] += n
            out.append(
                PulseBucket(
                    at=float(key * bucket_s),
                    seconds=bucket_s,
                    requests_per_s={p: n / bucket_s for p, n in sorted(finished.items())},
                    errors=dict(sorted(errors.items())),
                    in_flight=max(b.in_flight for b in beats),
                )
            )
        return out
