-- Per provider over the last `hours` whole clock hours (default 24, the
-- current hour included): requests, errors, cancelled, error rate, latency and
-- time-to-first-token percentiles (ms, successful requests, within 2.5%),
-- tokens in and out, generation speed (tokens/s: the median request, and
-- completion tokens over generation time), cost.  The columns are those of
-- wlm_summary (analytics/_summary.sql) without `model`.
-- Variables: hours.  Reads the hourly rollups, so it stays fast at any size.
SELECT
    provider, requests, errors, cancelled, error_rate,
    latency_p50_ms, latency_p95_ms, latency_p99_ms, ttft_p50_ms, ttft_p95_ms, ttft_p99_ms,
    latency_avg_ms, prompt_tokens, completion_tokens, tokens_per_s_p50, gen_tokens_per_s,
    cost_usd
FROM wlm_summary(coalesce(CAST(getvariable('hours') AS INTEGER), 24), false)
ORDER BY requests DESC, provider;
