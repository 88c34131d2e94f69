-- Per-project webhooks (store::webhooks): the subscription, its durable cursor over the
-- project's stream (the last seq handled), the lease that lets one node at a time send it
-- (taken by one conditional UPDATE, so nodes sharing the database never both hold it), and the
-- time before which a waiting retry makes it not due. Deliveries: one row per (webhook, seq),
-- made before the first attempt, so the delivery id is stable. Both go with the project.
CREATE TABLE webhooks (
    id          uuid PRIMARY KEY,
    project_id  uuid NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    url         text NOT NULL,
    events      jsonb NOT NULL,
    secret      text NOT NULL,
    active      boolean NOT NULL,
    cursor      bigint NOT NULL,
    lease_owner uuid,
    lease_until timestamptz,
    retry_at    timestamptz,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX webhooks_by_project ON webhooks (project_id, created_at);

CREATE TABLE webhook_deliveries (
    id              uuid PRIMARY KEY,
    webhook_id      uuid NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    seq             bigint NOT NULL,
    event           text NOT NULL,
    outcome         text NOT NULL,
    attempts        integer NOT NULL,
    response_status integer,
    error           text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    UNIQUE (webhook_id, seq)
);
