-- liveplan schema, SQLite flavour. Ids are UUID text; timestamps are RFC 3339 UTC text with
-- milliseconds, so they sort as text.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE COLLATE NOCASE,
    username      TEXT UNIQUE COLLATE NOCASE,
    display_name  TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    is_admin      INTEGER NOT NULL DEFAULT 0,
    is_active     INTEGER NOT NULL DEFAULT 1,
    version       INTEGER NOT NULL DEFAULT 1,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

CREATE TABLE sessions (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE INDEX sessions_by_user ON sessions(user_id);

-- WebSocket tickets are stored only as a SHA-256 hash of the secret.
CREATE TABLE ws_tickets (
    hash       TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    session_id TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT
);
CREATE INDEX ws_tickets_by_expiry ON ws_tickets(expires_at);

CREATE TABLE projects (
    id           TEXT PRIMARY KEY,
    key          TEXT UNIQUE COLLATE NOCASE,
    name         TEXT NOT NULL,
    body         TEXT NOT NULL,
    record_count INTEGER NOT NULL DEFAULT 0,
    version      INTEGER NOT NULL DEFAULT 1,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);

CREATE TABLE memberships (
    id         TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role       INTEGER NOT NULL CHECK (role IN (1, 100, 200, 300, 400)),
    version    INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (project_id, user_id)
);
CREATE INDEX memberships_by_user ON memberships(user_id);

-- Every project-scoped record of every collection: the typed fields the domain validates live in
-- `body` (JSON object, unknown client fields included); what integrity needs lives in columns.
CREATE TABLE records (
    id         TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    collection TEXT NOT NULL,
    body       TEXT NOT NULL,
    version    INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX records_by_collection ON records(project_id, collection, id);

-- The references a record makes to other records, kept so deletes can cascade and references can
-- be checked without parsing every body.
CREATE TABLE record_refs (
    record_id  TEXT NOT NULL REFERENCES records(id) ON DELETE CASCADE,
    field      TEXT NOT NULL,
    target_id  TEXT NOT NULL,
    project_id TEXT NOT NULL,
    PRIMARY KEY (record_id, field, target_id)
);
CREATE INDEX record_refs_by_target ON record_refs(target_id);

-- The event log. Each stream's next seq is allocated from `streams` inside the writing transaction.
CREATE TABLE streams (
    stream   TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL
);

CREATE TABLE events (
    stream     TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    payload    TEXT NOT NULL,
    data       TEXT NOT NULL,
    actor_id   TEXT,
    tab_id     TEXT,
    ts         TEXT NOT NULL,
    project_id TEXT,
    PRIMARY KEY (stream, seq)
) WITHOUT ROWID;
