-- +goose Up
-- The per-user durable event stream of platform/stream. Every event a user
-- must see gets the next sequence number of that user (1, 2, 3… without
-- gaps); clients resume from the last one they saw. No foreign key to
-- users: the stream is platform machinery and knows no business tables.

-- stream_heads is the sequence counter of each user that ever had an
-- event. last_seq is the newest sequence handed out; oldest_seq the lowest
-- one still retained (1 until retention purges something, last_seq + 1
-- when everything was purged). Every event from oldest_seq to last_seq is
-- present in stream_events.
CREATE TABLE stream_heads (
    user_id    integer NOT NULL PRIMARY KEY,
    last_seq   integer NOT NULL,
    oldest_seq integer NOT NULL
);

-- data is the event's JSON. Reads are ranges of one user's sequence, so
-- the table is clustered on (user_id, seq) (WITHOUT ROWID); created_at is
-- indexed for the retention purge.
CREATE TABLE stream_events (
    user_id    integer     NOT NULL,
    seq        integer     NOT NULL,
    type       varchar(64) NOT NULL,
    data       text        NOT NULL,
    created_at timestamp   NOT NULL,
    PRIMARY KEY (user_id, seq)
) WITHOUT ROWID;
CREATE INDEX stream_events_created_at ON stream_events (created_at);

-- +goose Down
DROP TABLE stream_events;
DROP TABLE stream_heads;
