-- +goose Up
-- Accounts, directory groups, device sessions, refresh tokens, token signing
-- keys and failed-login counters of the sso module.
--
-- Columns compared for exact identity (keys, ids, hashes, numbers) use
-- utf8mb4_bin: the values are already normalised by the store (login_key is
-- store.Fold(login)), and utf8mb4_unicode_ci would add equalities SQLite
-- does not have (ß = ss, é = e), so the two dialects would disagree on
-- what collides. Session ids are case-sensitive random strings, too.

-- login_key is store.Fold(login): the unique index on it makes logins
-- unique without regard to case, Cyrillic included, and ё = е. external_id
-- and password_hash are NULL rather than '' when absent, so local accounts
-- do not collide on the unique external_id.
CREATE TABLE users (
    id              bigint        NOT NULL AUTO_INCREMENT,
    login           varchar(255)  NOT NULL,
    login_key       varchar(255)  COLLATE utf8mb4_bin NOT NULL,
    display_name    varchar(255)  NOT NULL DEFAULT '',
    email           varchar(255)  NOT NULL DEFAULT '',
    department      varchar(255)  NOT NULL DEFAULT '',
    title           varchar(255)  NOT NULL DEFAULT '',
    avatar_ref      varchar(255)  NOT NULL DEFAULT '',
    role            varchar(16)   NOT NULL,
    source          varchar(16)   NOT NULL,
    external_id     varchar(255)  COLLATE utf8mb4_bin NULL,
    dn              varchar(1024) NOT NULL DEFAULT '',
    password_hash   varchar(255)  COLLATE utf8mb4_bin NULL,
    disabled        tinyint(1)    NOT NULL DEFAULT 0,
    disabled_reason varchar(255)  NOT NULL DEFAULT '',
    disabled_locally tinyint(1)    NOT NULL DEFAULT 0,
    search_text     text          NOT NULL,
    created_at      datetime(6)   NOT NULL,
    updated_at      datetime(6)   NOT NULL,
    synced_at       datetime(6)   NULL,
    PRIMARY KEY (id),
    UNIQUE KEY users_login_key (login_key),
    UNIQUE KEY users_external_id (external_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- A number belongs to at most one user, so it can be used to log in.
CREATE TABLE user_phones (
    number  varchar(32) COLLATE utf8mb4_bin NOT NULL,
    user_id bigint      NOT NULL,
    kind    varchar(16) NOT NULL,
    PRIMARY KEY (number),
    KEY user_phones_user_id (user_id),
    CONSTRAINT user_phones_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE sso_groups (
    id          bigint        NOT NULL AUTO_INCREMENT,
    external_id varchar(255)  COLLATE utf8mb4_bin NOT NULL,
    name        varchar(255)  NOT NULL,
    dn          varchar(1024) NOT NULL DEFAULT '',
    updated_at  datetime(6)   NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY sso_groups_external_id (external_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE group_members (
    group_id bigint NOT NULL,
    user_id  bigint NOT NULL,
    PRIMARY KEY (group_id, user_id),
    KEY group_members_user_id (user_id),
    CONSTRAINT group_members_group FOREIGN KEY (group_id) REFERENCES sso_groups (id) ON DELETE CASCADE,
    CONSTRAINT group_members_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE sessions (
    id             varchar(64)  COLLATE utf8mb4_bin NOT NULL,
    user_id        bigint       NOT NULL,
    device         varchar(255) NOT NULL DEFAULT '',
    user_agent     varchar(512) NOT NULL DEFAULT '',
    ip             varchar(64)  NOT NULL DEFAULT '',
    created_at     datetime(6)  NOT NULL,
    last_seen_at   datetime(6)  NOT NULL,
    expires_at     datetime(6)  NOT NULL,
    revoked_at     datetime(6)  NULL,
    revoked_reason varchar(255) NOT NULL DEFAULT '',
    PRIMARY KEY (id),
    KEY sessions_user_id (user_id),
    CONSTRAINT sessions_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- token_hash is the hex SHA-256 of the opaque refresh token; the token
-- itself is never stored. Used rows stay until they expire so that a
-- replayed token is recognised as reuse.
CREATE TABLE refresh_tokens (
    token_hash char(64)    COLLATE utf8mb4_bin NOT NULL,
    session_id varchar(64) COLLATE utf8mb4_bin NOT NULL,
    created_at datetime(6) NOT NULL,
    expires_at datetime(6) NOT NULL,
    used_at    datetime(6) NULL,
    PRIMARY KEY (token_hash),
    KEY refresh_tokens_session_id (session_id),
    KEY refresh_tokens_expires_at (expires_at),
    CONSTRAINT refresh_tokens_session FOREIGN KEY (session_id) REFERENCES sessions (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE signing_keys (
    kid         varchar(64) COLLATE utf8mb4_bin NOT NULL,
    alg         varchar(16) NOT NULL,
    private_key blob        NOT NULL,
    public_key  blob        NOT NULL,
    created_at  datetime(6) NOT NULL,
    retire_at   datetime(6) NOT NULL,
    expire_at   datetime(6) NOT NULL,
    PRIMARY KEY (kid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Fixed-window failed-login counters shared by all nodes; k is
-- "acct:<login_key>" or "ip:<address>".
CREATE TABLE login_failures (
    k            varchar(255) COLLATE utf8mb4_bin NOT NULL,
    count        int          NOT NULL,
    window_start datetime(6)  NOT NULL,
    PRIMARY KEY (k)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- +goose Down
DROP TABLE login_failures;
DROP TABLE signing_keys;
DROP TABLE refresh_tokens;
DROP TABLE sessions;
DROP TABLE group_members;
DROP TABLE sso_groups;
DROP TABLE user_phones;
DROP TABLE users;
