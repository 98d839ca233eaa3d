-- +goose Up
-- The push module (modules/push, docs/push.md).
--
-- push_devices: the APNs and FCM tokens users register, one row per
-- (platform, token): re-registering a token moves it to the caller's user
-- and session. token_hash is the SHA-256 (hex) of the token, the unique
-- key (tokens are too long for a MySQL index). session_id is the sso
-- session that registered it: revoking the session removes the device.
-- No foreign keys: accounts are disabled, never deleted, and sessions
-- are removed through the sso.session.revoked event.
-- Timestamps are "timestamp" text in UTC (see 00002_sso.sql).
CREATE TABLE push_devices (
    id          integer       NOT NULL PRIMARY KEY AUTOINCREMENT,
    user_id     integer       NOT NULL,
    session_id  varchar(64)   NOT NULL DEFAULT '',
    platform    varchar(16)   NOT NULL,
    app_id      varchar(255)  NOT NULL,
    token       varchar(4096) NOT NULL,
    token_hash  varchar(64)   NOT NULL,
    name        varchar(100)  NOT NULL DEFAULT '',
    created_at  timestamp     NOT NULL,
    updated_at  timestamp     NOT NULL
);
CREATE UNIQUE INDEX push_devices_token ON push_devices (platform, token_hash);
CREATE INDEX push_devices_user ON push_devices (user_id, platform);
CREATE INDEX push_devices_session ON push_devices (session_id);

-- push_queue: the durable queue, one row per (device, notification).
-- The device's platform, app and token are copied so a worker needs no
-- join; payload is the platform-neutral notification (JSON), rendered for
-- APNs or FCM when sent. ref is the call id of call pushes (to drop them
-- when the call stops ringing). A worker claims a row by setting
-- lease_owner (unique per claim) and lease_until; a row whose lease ran
-- out is due again. Sent and given-up rows are deleted.
CREATE TABLE push_queue (
    id              integer       NOT NULL PRIMARY KEY AUTOINCREMENT,
    device_id       integer       NOT NULL,
    user_id         integer       NOT NULL,
    platform        varchar(16)   NOT NULL,
    app_id          varchar(255)  NOT NULL,
    token           varchar(4096) NOT NULL,
    kind            varchar(16)   NOT NULL,
    ref             varchar(128)  NOT NULL DEFAULT '',
    payload         text          NOT NULL,
    collapse_id     varchar(64)   NOT NULL DEFAULT '',
    priority        integer       NOT NULL,
    attempts        integer       NOT NULL DEFAULT 0,
    next_attempt_at timestamp     NOT NULL,
    expires_at      timestamp     NOT NULL,
    last_error      varchar(255)  NOT NULL DEFAULT '',
    lease_owner     varchar(64)   NOT NULL DEFAULT '',
    lease_until     timestamp     NULL,
    created_at      timestamp     NOT NULL
);
CREATE INDEX push_queue_due ON push_queue (next_attempt_at);
CREATE INDEX push_queue_device ON push_queue (device_id);
CREATE INDEX push_queue_call ON push_queue (user_id, kind, ref);
CREATE INDEX push_queue_lease ON push_queue (lease_owner);

-- push_call_log: which call pushes were decided, per (call, user, kind):
-- call (devices: how many rang), cancel (answered or ended), missed.
-- Call events arrive at least once and in any order, and sent queue rows
-- are deleted, so this ledger is what dedupes them. Purged after a day.
CREATE TABLE push_call_log (
    call_id    varchar(128) NOT NULL,
    user_id    integer      NOT NULL,
    kind       varchar(16)  NOT NULL,
    devices    integer      NOT NULL DEFAULT 0,
    created_at timestamp    NOT NULL,
    PRIMARY KEY (call_id, user_id, kind)
);
CREATE INDEX push_call_log_created ON push_call_log (created_at);

-- +goose Down
DROP TABLE push_call_log;
DROP TABLE push_queue;
DROP TABLE push_devices;
