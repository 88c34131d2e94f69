-- The crash sentinel of the lost-tail guard (src/durability.rs). PostgreSQL empties unlogged
-- tables in every crash recovery and keeps them across a clean shutdown, so a missing row means
-- the server crashed (or a standby was promoted) since the row was written: commits made with
-- synchronous_commit=off may have been lost with it.
CREATE UNLOGGED TABLE crash_sentinel (
    id         smallint PRIMARY KEY CHECK (id = 1),
    written_at timestamptz NOT NULL DEFAULT now()
);
