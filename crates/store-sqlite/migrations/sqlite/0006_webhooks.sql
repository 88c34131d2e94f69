-- Per-project webhooks (store::webhooks): the subscription, its durable cursor over the
-- project's stream (the last seq handled), the lease that lets one node at a time send it, and
-- the time before which a waiting retry makes it not due. Deliveries: one row per (webhook,
-- seq), made before the first attempt, so the delivery id is stable. Both go with the project.
CREATE TABLE webhooks (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    url         TEXT NOT NULL,
    events      TEXT NOT NULL,
    secret      TEXT NOT NULL,
    active      INTEGER NOT NULL,
    cursor      INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until TEXT,
    retry_at    TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX webhooks_by_project ON webhooks (project_id, created_at);

CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,
    webhook_id      TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    event           TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    response_status INTEGER,
    error           TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    UNIQUE (webhook_id, seq)
);
