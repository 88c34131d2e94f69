-- The whiteboards' Yjs documents (store::whiteboards): one counter row per board, its updates
-- in seq order (a compaction leaves one state row), and its named snapshots. All go with the
-- whiteboard record.
CREATE TABLE whiteboard_docs (
    board_id TEXT PRIMARY KEY REFERENCES records(id) ON DELETE CASCADE,
    last_seq INTEGER NOT NULL
);

CREATE TABLE whiteboard_updates (
    board_id TEXT NOT NULL REFERENCES whiteboard_docs(board_id) ON DELETE CASCADE,
    seq      INTEGER NOT NULL,
    data     BLOB NOT NULL,
    at       TEXT NOT NULL,
    PRIMARY KEY (board_id, seq)
) WITHOUT ROWID;

CREATE TABLE whiteboard_snapshots (
    id         TEXT PRIMARY KEY,
    board_id   TEXT NOT NULL REFERENCES records(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    state      BLOB NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX whiteboard_snapshots_by_board ON whiteboard_snapshots (board_id, created_at);
