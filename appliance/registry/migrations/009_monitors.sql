-- `appliance monitor create`: scheduled model monitors (Azure's monitor schedules) of online deployments,
-- each with when it last ran and runs next, and its last runs' signals (the newest MONITOR_RUNS kept).
CREATE TABLE monitors (
    name VARCHAR PRIMARY KEY,
    endpoint_name VARCHAR NOT NULL,
    deployment_name VARCHAR NOT NULL,
    spec JSON NOT NULL,             -- appliance.telemetry.signals.parse: trigger, target, signals
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp::TIMESTAMP,
    updated_at TIMESTAMP NOT NULL DEFAULT current_timestamp::TIMESTAMP,
    last_run_at TIMESTAMP,
    next_run_at TIMESTAMP           -- null: the trigger fires no more
);

CREATE SEQUENCE monitor_run_ids START 1;
CREATE TABLE monitor_runs (
    id BIGINT PRIMARY KEY DEFAULT nextval('monitor_run_ids'),
    monitor VARCHAR NOT NULL,
    "at" TIMESTAMP NOT NULL,
    status VARCHAR NOT NULL,        -- passed, failed, error, no_data
    result JSON NOT NULL            -- per signal: status, failed features, each feature's metric and threshold
);
