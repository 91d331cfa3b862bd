-- Per local model over the last `hours` whole clock hours (default 24): how often its
-- engine exited by itself (crashes) and how often three crashes within a minute held
-- it from restarting (holds; docs/local-models.md#guards), and when it last crashed.
-- Variables: hours.  Reads engine_events (a row written as each happens).
SELECT
    model,
    count(*) FILTER (WHERE event = 'crash') AS crashes,
    count(*) FILTER (WHERE event = 'held') AS holds,
    max(happened_at) FILTER (WHERE event = 'crash') AS last_crash_at
FROM engine_events
WHERE happened_at >= wlm_window_start(coalesce(CAST(getvariable('hours') AS INTEGER), 24))
GROUP BY model
ORDER BY crashes DESC, model
