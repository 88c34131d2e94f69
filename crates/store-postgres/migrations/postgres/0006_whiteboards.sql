-- The whiteboards' Yjs documents (store::whiteboards): one counter row per board, whose row
-- lock orders its appends across nodes, its updates in seq order (a compaction leaves one state
-- row), and its named snapshots. All go with the whiteboard record.
CREATE TABLE whiteboard_docs (
    board_id uuid PRIMARY KEY REFERENCES records(id) ON DELETE CASCADE,
    last_seq bigint NOT NULL
);

CREATE TABLE whiteboard_updates (
    board_id uuid NOT NULL REFERENCES whiteboard_docs(board_id) ON DELETE CASCADE,
    seq      bigint NOT NULL,
    data     bytea NOT NULL,
    at       timestamptz NOT NULL,
    PRIMARY KEY (board_id, seq)
);

CREATE TABLE whiteboard_snapshots (
    id         uuid PRIMARY KEY,
    board_id   uuid NOT NULL REFERENCES records(id) ON DELETE CASCADE,
    name       text NOT NULL,
    state      bytea NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX whiteboard_snapshots_by_board ON whiteboard_snapshots (board_id, created_at);
