-- One row per live or mirrored request (appliance.telemetry.events.FIELDS), written in batches.
-- No primary key or index: an ART index would slow every batch, and rows arrive in id and time order,
-- so DuckDB's per-row-group min/max already prunes the `id > ?` and `"at" >= ?` scans.
CREATE SEQUENCE request_log_ids START 1;
CREATE TABLE request_log (
    id BIGINT NOT NULL DEFAULT nextval('request_log_ids'),  -- stable order; `logs --follow` polls past it
    "at" TIMESTAMP NOT NULL,        -- arrival, UTC (naive, like every timestamp here)
    request_id VARCHAR NOT NULL,    -- shared by a live request and its mirrored copy
    endpoint VARCHAR NOT NULL,
    deployment VARCHAR NOT NULL,    -- '' when rejected before a deployment was chosen
    instance VARCHAR NOT NULL,      -- '' when no instance was reached (401, 404, 429 ...)
    mirrored BOOLEAN NOT NULL,
    status INTEGER NOT NULL,        -- 0: no response (a mirror that failed or timed out)
    latency_ms DOUBLE NOT NULL,
    bytes_in BIGINT NOT NULL,
    bytes_out BIGINT NOT NULL,
    key_id VARCHAR NOT NULL,        -- primary, secondary, token or '': never the secret
    body_digest VARCHAR NOT NULL
);
