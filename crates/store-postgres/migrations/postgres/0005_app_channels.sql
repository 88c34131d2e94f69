-- The log of the Pusher app's own channels (store::app_channels): one counter row per channel,
-- whose row lock orders its appends across nodes, and its last events (at most 1,000 for 24 h;
-- callers check sizes: names of at most 200 characters, data of at most 10 KB).
CREATE TABLE app_channels (
    channel     text PRIMARY KEY,
    stream_id   text NOT NULL,
    last_serial bigint NOT NULL,
    last_at     timestamptz NOT NULL
);
CREATE INDEX app_channels_last_at ON app_channels (last_at);

CREATE TABLE app_channel_events (
    channel text NOT NULL,
    serial  bigint NOT NULL,
    event   text NOT NULL,
    data    text NOT NULL,
    at      timestamptz NOT NULL,
    PRIMARY KEY (channel, serial)
);
