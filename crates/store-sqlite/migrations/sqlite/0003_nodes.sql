-- The node registry (store::nodes): the liveplan nodes running on this database.
CREATE TABLE nodes (
    id           TEXT PRIMARY KEY,
    has_redis    INTEGER NOT NULL,
    address      TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL
);
