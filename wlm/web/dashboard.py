"""``/``: providers, local engines, the last hour in numbers, the last minutes live, and
a live request feed."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from typing import Any

from litestar import Request, Response, get

from wlm.local.box_stats import sample_json
from wlm.metrics import PulseBucket
from wlm.web.access import gateway_of
from wlm.web.charts import Series, time_columns, time_lines
from wlm.web.common import instances, live_figures, providers
from wlm.web.figures import Figure, Numbers, series_classes
from wlm.web.render import page, plain, wants_json

__all__ = ["DASHBOARD_ROUTES"]

PULSE_BUCKET_S = 5
QUIET = "No requests in the last 5 minutes"


def _moment(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).replace(tzinfo=None)


def pulse_figures(buckets: Sequence[PulseBucket], now: float) -> list[Figure]:
    """Requests per second by provider, requests in flight and errors, per
    ``PULSE_BUCKET_S`` seconds over the last five minutes."""
    step = dt.timedelta(seconds=PULSE_BUCKET_S)
    end = _moment((now // PULSE_BUCKET_S + 1) * PULSE_BUCKET_S)
    start = end - dt.timedelta(minutes=5)
    names = sorted({p for b in buckets for p in (*b.requests_per_s, *b.errors)})
    classes = series_classes(names)
    legend = tuple((classes[n], n) for n in names)
    at = [(_moment(b.at), b) for b in buckets]
    clock = f"{_moment(now):%H:%M:%S}"
    rates = time_columns(
        "requests per second",
        [(moment, b.requests_per_s) for moment, b in at],
        [(n, classes[n]) for n in names],
        start,
        end,
        step,
        unit="req/s",
        now=_moment(now),
        width=440,
        height=170,
        empty=QUIET,
    )
    in_flight = time_lines(
        "in flight",
        [Series("in flight", "series-0", [(m + step / 2, float(b.in_flight)) for m, b in at])],
        start,
        end,
        now=_moment(now),
        width=440,
        height=170,
        empty="Not sampled yet",
        whole=True,
    )
    errors = time_columns(
        "errors",
        [(moment, {p: float(n) for p, n in b.errors.items()}) for moment, b in at],
        [(n, classes[n]) for n in names],
        start,
        end,
        step,
        now=_moment(now),
        width=440,
        height=170,
        empty="No errors in the last 5 minutes",
        whole=True,
    )
    # Their numbers are the JSON twin's (`pulse`): a table here would close at each refresh.
    numbers = Numbers((), ())
    return [
        Figure("live-rate", "Requests per second, by provider", rates, numbers, "pulse", legend),
        Figure("live-in-flight", "In flight", in_flight, numbers, "pulse", note=f"now {clock} UTC"),
        Figure(
            "live-errors",
            f"Errors per {PULSE_BUCKET_S} s, by provider",
            errors,
            numbers,
            "pulse",
            legend,
        ),
    ]


@get(["/", "/index.json"])
async def dashboard(request: Request[Any, Any, Any]) -> Response[Any]:
    """The dashboard; ``?fragment=live`` is the part htmx refreshes every two seconds."""
    gateway = gateway_of(request)
    local = gateway.local
    now = time.time()
    buckets = gateway.pulse.buckets(now, PULSE_BUCKET_S)
    context: dict[str, Any] = {
        "providers": providers(gateway),
        "local_enabled": local is not None,
        "local_models": len(local.model_ids()) if local is not None else 0,
        "instances": instances(gateway),
        "in_flight": gateway.metrics.in_flight,
        # The box's latest sample (taken in the background; None before the first).
        "box": gateway.box,
        "box_every_s": gateway.settings.stats_every_s,
        "box_age_s": max(0.0, now - gateway.box.at) if gateway.box is not None else None,
        **await live_figures(request),
    }
    if wants_json(request):
        context["pulse"] = [{**plain(b), "at": _moment(b.at)} for b in buckets]
        context["box"] = sample_json(gateway.box) if gateway.box is not None else None
    else:
        context["pulse_figures"] = pulse_figures(buckets, now)
    return page(request, "dashboard.html", context, active="/", fragments={"live": "_live.html"})


DASHBOARD_ROUTES = [dashboard]
