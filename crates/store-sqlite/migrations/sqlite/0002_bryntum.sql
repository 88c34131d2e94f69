-- What the Bryntum dialect needs to answer the same whatever node a client reached.

-- The echo the first event of a Bryntum revision carries back to its writer's socket (JSON, or
-- NULL for every other event).
ALTER TABLE events ADD COLUMN echo TEXT;

-- Phantom ids (the temporary ids a Bryntum client gives new records) and the real ids they got,
-- per project, so a phantom sent again, even after a restart, updates the record made the first
-- time. `n` numbers a project's entries in the order they were made, so the oldest can go.
CREATE TABLE phantom_ids (
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    phantom    TEXT NOT NULL,
    record_id  TEXT NOT NULL,
    n          INTEGER NOT NULL,
    PRIMARY KEY (project_id, phantom)
) WITHOUT ROWID;
CREATE UNIQUE INDEX phantom_ids_by_age ON phantom_ids(project_id, n);
