-- Every endpoint gets an id, random, given when it is created: what an aml_token signs besides the
-- name, so a token of a deleted endpoint does not open one re-created under the same name. The table
-- is copied (like migration 3) to have the column NOT NULL; endpoints from before get an id here.
-- From this version on, primary_key and secondary_key hold sealed values (appliance.registry.sealed:
-- AES-GCM under the home's secrets.key); the Registry seals the plaintext ones in the same transaction.
CREATE TABLE online_endpoints_new (
    name VARCHAR PRIMARY KEY,
    id VARCHAR NOT NULL,            -- 32 hex digits, new for each creation of the name
    spec JSON NOT NULL,             -- traffic and mirror_traffic live here too
    primary_key VARCHAR NOT NULL,   -- sealed
    secondary_key VARCHAR NOT NULL, -- sealed
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp::TIMESTAMP,
    updated_at TIMESTAMP NOT NULL DEFAULT current_timestamp::TIMESTAMP
);
INSERT INTO online_endpoints_new
    SELECT name, replace(uuid()::VARCHAR, '-', ''), spec, primary_key, secondary_key, created_at, updated_at
    FROM online_endpoints;
DROP TABLE online_endpoints;
ALTER TABLE online_endpoints_new RENAME TO online_endpoints;
-- Work the Registry does when it opens the file, kept with the change that calls for it (so a crash
-- in between leaves it to do). 'rewrite': copy the database into a fresh file and swap it in, since
-- DuckDB keeps old row versions (the plaintext keys) in the file's free blocks.
CREATE TABLE registry_tasks (task VARCHAR PRIMARY KEY);
INSERT INTO registry_tasks SELECT 'rewrite' WHERE EXISTS (SELECT 1 FROM online_endpoints);
