-- The requests a client tagged with its own x-request-id, newest first. wlm gives
-- every row its own unique `id` and keeps the client's value in `request_id`, so a
-- client that reuses an id finds every request it sent with it.
-- Variables: request_id (required).
SELECT id, started_at, model, provider, status, http_status
FROM requests
WHERE request_id = CAST(getvariable('request_id') AS VARCHAR)
ORDER BY started_at DESC;
