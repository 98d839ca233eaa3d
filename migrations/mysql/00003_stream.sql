-- +goose Up
-- The per-user durable event stream of platform/stream. Every event a user
-- must see gets the next sequence number of that user (1, 2, 3… without
-- gaps); clients resume from the last one they saw. No foreign key to
-- users: the stream is platform machinery and knows no business tables.

-- stream_heads is the sequence counter of each user that ever had an
-- event. last_seq is the newest sequence handed out; oldest_seq the lowest
-- one still retained (1 until retention purges something, last_seq + 1
-- when everything was purged). Every event from oldest_seq to last_seq is
-- present in stream_events. Appends lock a user's head row, which is what
-- serialises sequence allocation across connections and nodes.
CREATE TABLE stream_heads (
    user_id    bigint NOT NULL,
    last_seq   bigint NOT NULL,
    oldest_seq bigint NOT NULL,
    PRIMARY KEY (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- data is the event's JSON (at most 64 KiB by default, so mediumtext).
-- type is compared exactly, hence utf8mb4_bin. created_at is indexed for
-- the retention purge.
CREATE TABLE stream_events (
    user_id    bigint      NOT NULL,
    seq        bigint      NOT NULL,
    type       varchar(64) COLLATE utf8mb4_bin NOT NULL,
    data       mediumtext  NOT NULL,
    created_at datetime(6) NOT NULL,
    PRIMARY KEY (user_id, seq),
    KEY stream_events_created_at (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- +goose Down
DROP TABLE stream_events;
DROP TABLE stream_heads;
