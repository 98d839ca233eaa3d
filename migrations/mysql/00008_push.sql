-- +goose Up
-- The push module (modules/push, docs/push.md).
--
-- push_devices: the APNs and FCM tokens users register, one row per
-- (platform, token): re-registering a token moves it to the caller's user
-- and session. token_hash is the SHA-256 (hex) of the token, the unique
-- key (tokens are too long for an index). session_id is the sso session
-- that registered it: revoking the session removes the device. Tokens,
-- platforms and ids are compared exactly, hence ascii_bin / utf8mb4_bin.
-- No foreign keys: accounts are disabled, never deleted, and sessions
-- are removed through the sso.session.revoked event.
CREATE TABLE push_devices (
    id          bigint        NOT NULL AUTO_INCREMENT,
    user_id     bigint        NOT NULL,
    session_id  varchar(64)   COLLATE utf8mb4_bin NOT NULL DEFAULT '',
    platform    varchar(16)   CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    app_id      varchar(255)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    token       varchar(4096) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    token_hash  char(64)      CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    name        varchar(100)  NOT NULL DEFAULT '',
    created_at  datetime(6)   NOT NULL,
    updated_at  datetime(6)   NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY push_devices_token (platform, token_hash),
    KEY push_devices_user (user_id, platform),
    KEY push_devices_session (session_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- push_queue: the durable queue, one row per (device, notification).
-- The device's platform, app and token are copied so a worker needs no
-- join; payload is the platform-neutral notification (JSON), rendered for
-- APNs or FCM when sent. ref is the call id of call pushes (to drop them
-- when the call stops ringing). A worker claims a row by setting
-- lease_owner (unique per claim) and lease_until with a conditional
-- UPDATE, so of several nodes exactly one gets a row; a row whose lease
-- ran out is due again. Sent and given-up rows are deleted.
CREATE TABLE push_queue (
    id              bigint        NOT NULL AUTO_INCREMENT,
    device_id       bigint        NOT NULL,
    user_id         bigint        NOT NULL,
    platform        varchar(16)   CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    app_id          varchar(255)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    token           varchar(4096) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    kind            varchar(16)   CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    ref             varchar(128)  COLLATE utf8mb4_bin NOT NULL DEFAULT '',
    payload         mediumtext    NOT NULL,
    collapse_id     varchar(64)   CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT '',
    priority        int           NOT NULL,
    attempts        int           NOT NULL DEFAULT 0,
    next_attempt_at datetime(6)   NOT NULL,
    expires_at      datetime(6)   NOT NULL,
    last_error      varchar(255)  NOT NULL DEFAULT '',
    lease_owner     varchar(64)   CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT '',
    lease_until     datetime(6)   NULL,
    created_at      datetime(6)   NOT NULL,
    PRIMARY KEY (id),
    KEY push_queue_due (next_attempt_at),
    KEY push_queue_device (device_id),
    KEY push_queue_call (user_id, kind, ref),
    KEY push_queue_lease (lease_owner)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- push_call_log: which call pushes were decided, per (call, user, kind):
-- call (devices: how many rang), cancel (answered or ended), missed.
-- Call events arrive at least once and in any order, and sent queue rows
-- are deleted, so this ledger is what dedupes them. Purged after a day.
CREATE TABLE push_call_log (
    call_id    varchar(128) COLLATE utf8mb4_bin NOT NULL,
    user_id    bigint       NOT NULL,
    kind       varchar(16)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    devices    int          NOT NULL DEFAULT 0,
    created_at datetime(6)  NOT NULL,
    PRIMARY KEY (call_id, user_id, kind),
    KEY push_call_log_created (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- +goose Down
DROP TABLE push_call_log;
DROP TABLE push_queue;
DROP TABLE push_devices;
