-- What the Bryntum dialect needs to answer the same whatever node a client reached.

-- The echo the first event of a Bryntum revision carries back to its writer's socket (NULL for
-- every other event).
ALTER TABLE events ADD COLUMN echo jsonb;

-- Phantom ids (the temporary ids a Bryntum client gives new records) and the real ids they got,
-- per project, so a phantom sent again, even after a restart or on another node, updates the
-- record made the first time. `n` numbers a project's entries in the order they were made, so
-- the oldest can go; the project's stream lock (held by the writer) keeps `n` unique.
CREATE TABLE phantom_ids (
    project_id uuid NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    phantom    text NOT NULL,
    record_id  uuid NOT NULL,
    n          bigint NOT NULL,
    PRIMARY KEY (project_id, phantom)
);
CREATE UNIQUE INDEX phantom_ids_by_age ON phantom_ids (project_id, n);
