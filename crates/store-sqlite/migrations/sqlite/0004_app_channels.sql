-- The log of the Pusher app's own channels (store::app_channels): one counter row per channel,
-- and its last events (at most 1,000 for 24 h; callers check sizes: names of at most 200
-- characters, data of at most 10 KB).
CREATE TABLE app_channels (
    channel     TEXT PRIMARY KEY,
    stream_id   TEXT NOT NULL,
    last_serial INTEGER NOT NULL,
    last_at     TEXT NOT NULL
);
CREATE INDEX app_channels_last_at ON app_channels (last_at);

CREATE TABLE app_channel_events (
    channel TEXT NOT NULL,
    serial  INTEGER NOT NULL,
    event   TEXT NOT NULL,
    data    TEXT NOT NULL,
    at      TEXT NOT NULL,
    PRIMARY KEY (channel, serial)
) WITHOUT ROWID;
