-- The node registry (store::nodes): the liveplan nodes running on this database.
CREATE TABLE nodes (
    id           uuid PRIMARY KEY,
    has_redis    boolean NOT NULL,
    address      text NOT NULL,
    started_at   timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL
);
