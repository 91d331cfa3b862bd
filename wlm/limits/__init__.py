"""Every limit a client is held to, in one place.

- :mod:`~wlm.limits.slots`: requests in flight per client
  (``WLM_MAX_CONCURRENCY_PER_CLIENT`` and ``concurrency`` in ``WLM_KEY_LIMITS``);
- :mod:`~wlm.limits.windows`: a sliding window that admits exactly ``limit`` per
  window and says when the next one fits;
- :mod:`~wlm.limits.budgets`: dollars spent per key per UTC day and month;
- :mod:`~wlm.limits.key_limits`: ``WLM_KEY_LIMITS`` (rpm, tpm, usd_per_day,
  usd_per_month per client key) applied to one request.

No I/O: clocks are passed in; spend is seeded at start from telemetry by the caller.
"""

from wlm.limits.key_limits import BudgetExceeded, KeyLimiter, RateLimited
from wlm.limits.slots import ClientBusy, ClientSlots, client_slots

__all__ = [
    "BudgetExceeded",
    "ClientBusy",
    "ClientSlots",
    "KeyLimiter",
    "RateLimited",
    "client_slots",
]
