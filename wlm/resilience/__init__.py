"""Keeping requests answered when upstreams fail: pure decisions, no I/O.

- :mod:`~wlm.resilience.retry_policy`: whether a failure before the first byte is
  worth another try on the same target, and how long to wait first;
- :mod:`~wlm.resilience.fallbacks`: the ordered model names a request may try;
- :mod:`~wlm.resilience.cooldowns`: (provider, upstream model) pairs that failed
  too often in a row, skipped for a while.

Every clock is passed in; the request path owns the sleeping and the sending.
"""
