-- Failed and cancelled requests over the last `hours` whole clock hours
-- (default 24), by provider, model, status, HTTP status and error type, most first.
-- A cancelled request's http_status is 499 (the client left), also for older
-- rows, which kept the 200 of a stream the client left.  A stream that failed
-- after its 200 start is status 'error' with http_status 200.
-- Variables: hours.  Reads the hourly rollups.
SELECT
    provider,
    model,
    status,
    CASE WHEN status = 'cancelled' THEN 499 ELSE http_status END AS http_status,
    error_type,
    sum(requests) AS requests
FROM requests_hourly
WHERE hour >= wlm_window_start(coalesce(CAST(getvariable('hours') AS INTEGER), 24))
    AND status <> 'ok'
GROUP BY 1, 2, 3, 4, 5
ORDER BY requests DESC, provider, model, status, http_status, error_type;
