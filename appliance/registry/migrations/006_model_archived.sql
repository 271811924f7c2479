-- `appliance model archive` (az ml model archive): an archived version is hidden from `model list` and
-- still usable by name:version. The flag only; nothing else about a model changes.
ALTER TABLE models ADD COLUMN archived BOOLEAN NOT NULL DEFAULT false;
