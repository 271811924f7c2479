CREATE TABLE artifacts (
    digest VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL,          -- the file or folder name the content was registered from
    size BIGINT NOT NULL,
    files INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp::TIMESTAMP
);

CREATE TABLE models (
    name VARCHAR NOT NULL,
    version VARCHAR NOT NULL,
    type VARCHAR NOT NULL,
    framework VARCHAR NOT NULL,
    digest VARCHAR NOT NULL,
    signature JSON,
    tags JSON NOT NULL,
    description VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp::TIMESTAMP,
    PRIMARY KEY (name, version)
);

CREATE TABLE environments (
    name VARCHAR NOT NULL,
    version VARCHAR NOT NULL,
    digest VARCHAR NOT NULL,        -- of the canonical spec: same spec, same venv or image
    spec JSON NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp::TIMESTAMP,
    PRIMARY KEY (name, version)
);

CREATE TABLE online_endpoints (
    name VARCHAR PRIMARY KEY,
    spec JSON NOT NULL,             -- traffic and mirror_traffic live here too
    primary_key VARCHAR NOT NULL,
    secondary_key VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp::TIMESTAMP,
    updated_at TIMESTAMP NOT NULL DEFAULT current_timestamp::TIMESTAMP
);

CREATE TABLE online_deployments (
    endpoint_name VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    spec JSON NOT NULL,             -- model and environment resolved to azureml:name:version
    code_digest VARCHAR,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp::TIMESTAMP,
    updated_at TIMESTAMP NOT NULL DEFAULT current_timestamp::TIMESTAMP,
    PRIMARY KEY (endpoint_name, name)
);

CREATE SEQUENCE event_ids START 1;
CREATE TABLE events (
    id BIGINT PRIMARY KEY DEFAULT nextval('event_ids'),
    "at" TIMESTAMP NOT NULL DEFAULT current_timestamp::TIMESTAMP,
    kind VARCHAR NOT NULL,          -- e.g. endpoint.created, deployment.deleted, traffic.changed
    subject VARCHAR NOT NULL,       -- e.g. my-ep or my-ep/blue
    detail JSON NOT NULL
);
