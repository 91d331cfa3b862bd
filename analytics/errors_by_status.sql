-- Failed and cancelled requests over the last `hours` whole clock hours
-- (default 24), by provider, model, status, HTTP status and error type, most first.
-- Variables: hours.  Reads the hourly rollups.
SELECT
    provider,
    model,
    status,
    http_status,
    error_type,
    sum(requests) AS requests
FROM requests_hourly
WHERE hour >= wlm_window_start(coalesce(getvariable('hours'), 24))
    AND status <> 'ok'
GROUP BY ALL
ORDER BY requests DESC, provider, model, status, http_status, error_type;
