-- +goose Up
-- Presence of the status module (see the sqlite migration for the
-- meaning of each column). Codes compared exactly are utf8mb4_bin.
CREATE TABLE status_users (
    user_id          bigint       NOT NULL,
    manual           varchar(16)  COLLATE utf8mb4_bin NOT NULL DEFAULT '',
    text             varchar(255) NOT NULL DEFAULT '',
    text_expires_at  datetime(6)  NULL,
    state            varchar(16)  COLLATE utf8mb4_bin NOT NULL DEFAULT 'offline',
    in_call          tinyint(1)   NOT NULL DEFAULT 0,
    last_seen_at     datetime(6)  NULL,
    updated_at       datetime(6)  NOT NULL,
    PRIMARY KEY (user_id),
    KEY status_users_text_expires (text_expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE status_devices (
    conn_key   varchar(64)  COLLATE utf8mb4_bin NOT NULL,
    node       varchar(32)  COLLATE utf8mb4_bin NOT NULL,
    user_id    bigint       NOT NULL,
    session_id varchar(64)  COLLATE utf8mb4_bin NOT NULL,
    idle       tinyint(1)   NOT NULL DEFAULT 0,
    seen_at    datetime(6)  NOT NULL,
    PRIMARY KEY (conn_key),
    KEY status_devices_user (user_id),
    KEY status_devices_node (node),
    KEY status_devices_seen (seen_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE status_calls (
    user_id    bigint       NOT NULL,
    call_id    varchar(128) COLLATE utf8mb4_bin NOT NULL,
    started_at datetime(6)  NOT NULL,
    ended_at   datetime(6)  NULL,
    PRIMARY KEY (user_id, call_id),
    KEY status_calls_started (started_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- +goose Down
DROP TABLE status_calls;
DROP TABLE status_devices;
DROP TABLE status_users;
