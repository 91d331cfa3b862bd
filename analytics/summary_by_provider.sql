-- Per provider over the last `hours` whole clock hours (default 24, the
-- current hour included): requests, errors, cancelled, error rate, latency and
-- time-to-first-token percentiles (ms, successful requests, within 2.5%),
-- tokens in and out, generation speed (tokens/s: the median request, and
-- completion tokens over generation time), cost.  The columns are those of
-- wlm_summary (analytics/_summary.sql) without `model`.
-- Variables: hours.  Reads the hourly rollups, so it stays fast at any size.
SELECT * EXCLUDE (model)
FROM wlm_summary(coalesce(getvariable('hours'), 24), false)
ORDER BY requests DESC, provider;
