-- How requests ended over the last `hours` whole clock hours (default 24), per
-- provider and model, most first.  `outcome` is what the client saw:
--   'ok'               answered in full (HTTP 200);
--   '429', '502', ...  failed before the response started, with that HTTP status;
--   '499'              the client left (status 'cancelled'), whatever was stored:
--                      older rows kept the 200 of a stream the client left;
--   'error after 200'  a stream that started with 200 and then failed (status
--                      'error'): a failure, not a success;
--   'error'            failed without an HTTP status on record.
-- Variables: hours.  Reads the hourly rollups.
SELECT
    provider,
    model,
    wlm_outcome(status, http_status) AS outcome,
    sum(requests) AS requests
FROM requests_hourly
WHERE hour >= wlm_window_start(coalesce(CAST(getvariable('hours') AS INTEGER), 24))
GROUP BY 1, 2, 3
ORDER BY requests DESC, provider, model, outcome;
