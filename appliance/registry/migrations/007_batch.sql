-- Batch endpoints and deployments, data assets, and jobs with their ledger of mini-batches: a job's
-- progress lives here, so a daemon that was killed resumes each unfinished job where it stopped.
CREATE TABLE batch_endpoints (
    name VARCHAR PRIMARY KEY,
    id VARCHAR NOT NULL,            -- 32 hex digits, new for each creation of the name (tokens sign it)
    spec JSON NOT NULL,             -- defaults.deployment_name lives here
    primary_key VARCHAR NOT NULL,   -- sealed
    secondary_key VARCHAR NOT NULL, -- sealed
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp::TIMESTAMP,
    updated_at TIMESTAMP NOT NULL DEFAULT current_timestamp::TIMESTAMP
);

CREATE TABLE batch_deployments (
    endpoint_name VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    spec JSON NOT NULL,             -- model and environment resolved to azureml:name:version
    code_digest VARCHAR,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp::TIMESTAMP,
    updated_at TIMESTAMP NOT NULL DEFAULT current_timestamp::TIMESTAMP,
    PRIMARY KEY (endpoint_name, name)
);

CREATE TABLE data_assets (
    name VARCHAR NOT NULL,
    version VARCHAR NOT NULL,
    type VARCHAR NOT NULL,          -- uri_folder | uri_file
    digest VARCHAR NOT NULL,        -- the stored copy (artifacts)
    description VARCHAR NOT NULL,
    tags JSON NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp::TIMESTAMP,
    PRIMARY KEY (name, version)
);

CREATE TABLE jobs (
    name VARCHAR PRIMARY KEY,       -- batchjob-<uuid>
    endpoint_name VARCHAR NOT NULL,
    deployment_name VARCHAR NOT NULL,
    status VARCHAR NOT NULL,        -- Preparing, Running, Completed, Failed, Canceled (Azure's)
    spec JSON NOT NULL,             -- the deployment as it was at invoke, with the invoke's overrides
    code_digest VARCHAR,
    input JSON NOT NULL,            -- {path, type, asset}: what was scored
    output_dir VARCHAR NOT NULL,    -- the named output `score`
    error VARCHAR,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp::TIMESTAMP,
    started_at TIMESTAMP,
    ended_at TIMESTAMP
);

CREATE TABLE job_mini_batches (
    job VARCHAR NOT NULL,
    idx INTEGER NOT NULL,
    files VARCHAR[] NOT NULL,
    status VARCHAR NOT NULL,        -- pending, running, done, failed
    attempts INTEGER NOT NULL DEFAULT 0,
    succeeded INTEGER NOT NULL DEFAULT 0,  -- items run() returned
    failed INTEGER NOT NULL DEFAULT 0,     -- items it did not
    error VARCHAR,
    PRIMARY KEY (job, idx)
);
