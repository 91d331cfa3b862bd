-- Per provider and model over the last `hours` whole clock hours (default 24,
-- the current hour included): the figures of summary_by_provider.sql, one row
-- per model.  The columns are those of wlm_summary (analytics/_summary.sql).
-- Variables: hours.  Reads the hourly rollups, so it stays fast at any size.
SELECT *
FROM wlm_summary(coalesce(CAST(getvariable('hours') AS INTEGER), 24), true)
ORDER BY requests DESC, provider, model;
