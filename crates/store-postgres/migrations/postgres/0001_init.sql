-- liveplan schema, PostgreSQL flavour. The same tables as SQLite's, in native types: uuid ids,
-- timestamptz times (the store keeps milliseconds), jsonb bodies and payloads.
-- Unique rules have names the backend turns into words for clients (see `src/errors.rs`).

CREATE TABLE settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    email         text NOT NULL,
    username      text,
    display_name  text NOT NULL,
    password_hash text NOT NULL,
    is_admin      boolean NOT NULL DEFAULT false,
    is_active     boolean NOT NULL DEFAULT true,
    version       bigint NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
-- Case-insensitive uniqueness; logins are looked up through the same expressions.
CREATE UNIQUE INDEX users_email_unique ON users (lower(email));
CREATE UNIQUE INDEX users_username_unique ON users (lower(username));

CREATE TABLE sessions (
    id         uuid PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX sessions_by_user ON sessions(user_id);

-- WebSocket tickets are stored only as a SHA-256 hash of the secret.
CREATE TABLE ws_tickets (
    hash       text PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    session_id uuid NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX ws_tickets_by_expiry ON ws_tickets(expires_at);

CREATE TABLE projects (
    id           uuid PRIMARY KEY,
    key          text,
    name         text NOT NULL,
    body         jsonb NOT NULL,
    record_count bigint NOT NULL DEFAULT 0,
    version      bigint NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);
CREATE UNIQUE INDEX projects_key_unique ON projects (lower(key));

CREATE TABLE memberships (
    id         uuid PRIMARY KEY,
    project_id uuid NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role       bigint NOT NULL CHECK (role IN (1, 100, 200, 300, 400)),
    version    bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    CONSTRAINT memberships_project_user_unique UNIQUE (project_id, user_id)
);
CREATE INDEX memberships_by_user ON memberships(user_id);

CREATE TABLE records (
    id         uuid PRIMARY KEY,
    project_id uuid NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    collection text NOT NULL,
    body       jsonb NOT NULL,
    version    bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX records_by_collection ON records(project_id, collection, id);

CREATE TABLE record_refs (
    record_id  uuid NOT NULL REFERENCES records(id) ON DELETE CASCADE,
    field      text NOT NULL,
    target_id  uuid NOT NULL,
    project_id uuid NOT NULL,
    PRIMARY KEY (record_id, field, target_id)
);
CREATE INDEX record_refs_by_target ON record_refs(target_id);
CREATE INDEX record_refs_by_project ON record_refs(project_id);

-- The event log. A stream's row is its seq counter: a writer allocates the next seq by updating
-- it inside its transaction, and the row lock that takes makes every other writer of the stream,
-- on any node, wait for the commit. Seqs are thus gap-free and committed in order.
CREATE TABLE streams (
    stream   text PRIMARY KEY,
    last_seq bigint NOT NULL
);

CREATE TABLE events (
    stream     text NOT NULL,
    seq        bigint NOT NULL,
    event_type text NOT NULL,
    payload    jsonb NOT NULL,
    data       jsonb NOT NULL,
    actor_id   uuid,
    tab_id     text,
    ts         timestamptz NOT NULL,
    project_id uuid,
    PRIMARY KEY (stream, seq)
);
