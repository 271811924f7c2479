-- `appliance deployment profile`: the measured curve and the sizing it recommends, one per online
-- deployment (the newest replaces the last); `export` takes its CPU and memory for the containers.
CREATE TABLE deployment_profiles (
    endpoint_name VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    profile JSON NOT NULL,          -- appliance.telemetry.sizing.Profile
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp::TIMESTAMP,
    PRIMARY KEY (endpoint_name, name)
);
