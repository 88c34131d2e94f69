-- A whiteboard's last seq is its last update row's (store-sqlite's whiteboards.rs): the counter
-- column cost every append one more page of the write-ahead log. Its rows stay, one per board
-- with a document, as the parent its updates go with.
ALTER TABLE whiteboard_docs DROP COLUMN last_seq;
