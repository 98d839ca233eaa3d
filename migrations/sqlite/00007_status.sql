-- +goose Up
-- Presence of the status module.
--
-- status_users: what a user chose and what was last announced. manual is
-- '' (automatic), 'away', 'dnd' or 'invisible'. text is the personal
-- status line, cleared once text_expires_at passes (NULL: no expiry).
-- state is the last state announced on the bus, compared with the newly
-- computed one so only real changes go out; last_seen_at is the last time
-- the user was seen anything but offline.
CREATE TABLE status_users (
    user_id          integer      NOT NULL PRIMARY KEY,
    manual           varchar(16)  NOT NULL DEFAULT '',
    text             varchar(255) NOT NULL DEFAULT '',
    text_expires_at  timestamp    NULL,
    state            varchar(16)  NOT NULL DEFAULT 'offline',
    in_call          integer      NOT NULL DEFAULT 0,
    last_seen_at     timestamp    NULL,
    updated_at       timestamp    NOT NULL
);
CREATE INDEX status_users_text_expires ON status_users (text_expires_at);

-- status_devices: the open client connections of every node, one row per
-- WebSocket. node is the process instance that holds it (random per
-- start); it refreshes seen_at of its rows periodically, so the rows of a
-- node that died stop counting after status.device_timeout. idle: the
-- client reported at least status.away_after of inactivity.
CREATE TABLE status_devices (
    conn_key   varchar(64)  NOT NULL PRIMARY KEY,
    node       varchar(32)  NOT NULL,
    user_id    integer      NOT NULL,
    session_id varchar(64)  NOT NULL,
    idle       integer      NOT NULL DEFAULT 0,
    seen_at    timestamp    NOT NULL
);
CREATE INDEX status_devices_user ON status_devices (user_id);
CREATE INDEX status_devices_node ON status_devices (node);
CREATE INDEX status_devices_seen ON status_devices (seen_at);

-- status_calls: call legs that make a user "in a call", from the call.*
-- events; ended_at set is a tombstone, so a late call.answered after
-- call.ended does not start the call again. Rows ended an hour ago are
-- purged.
CREATE TABLE status_calls (
    user_id    integer      NOT NULL,
    call_id    varchar(128) NOT NULL,
    started_at timestamp    NOT NULL,
    ended_at   timestamp    NULL,
    PRIMARY KEY (user_id, call_id)
);
CREATE INDEX status_calls_started ON status_calls (started_at);

-- +goose Down
DROP TABLE status_calls;
DROP TABLE status_devices;
DROP TABLE status_users;
