-- +goose Up
-- Accounts, directory groups, device sessions, refresh tokens, token signing
-- keys and failed-login counters of the sso module.
--
-- Timestamps are declared "timestamp" so the driver reads them back as
-- time.Time. The driver writes them as text in UTC in one layout
-- (_time_format=sqlite: "2006-01-02 15:04:05.999999999+00:00", trailing
-- zeros of the fraction dropped; the store truncates to microseconds like
-- MySQL's datetime(6)), and in that layout comparing and ordering the text
-- is comparing and ordering the times.

-- login_key is store.Fold(login): the unique index on it makes logins
-- unique without regard to case, Cyrillic included, and ё = е. external_id
-- and password_hash are NULL rather than '' when absent, so local accounts
-- do not collide on the unique external_id.
CREATE TABLE users (
    id              integer       NOT NULL PRIMARY KEY AUTOINCREMENT,
    login           varchar(255)  NOT NULL,
    login_key       varchar(255)  NOT NULL,
    display_name    varchar(255)  NOT NULL DEFAULT '',
    email           varchar(255)  NOT NULL DEFAULT '',
    department      varchar(255)  NOT NULL DEFAULT '',
    title           varchar(255)  NOT NULL DEFAULT '',
    avatar_ref      varchar(255)  NOT NULL DEFAULT '',
    role            varchar(16)   NOT NULL,
    source          varchar(16)   NOT NULL,
    external_id     varchar(255)  NULL,
    dn              varchar(1024) NOT NULL DEFAULT '',
    password_hash   varchar(255)  NULL,
    disabled        integer       NOT NULL DEFAULT 0,
    disabled_reason varchar(255)  NOT NULL DEFAULT '',
    disabled_locally integer       NOT NULL DEFAULT 0,
    search_text     text          NOT NULL,
    created_at      timestamp     NOT NULL,
    updated_at      timestamp     NOT NULL,
    synced_at       timestamp     NULL
);
CREATE UNIQUE INDEX users_login_key ON users (login_key);
CREATE UNIQUE INDEX users_external_id ON users (external_id);

-- A number belongs to at most one user, so it can be used to log in.
CREATE TABLE user_phones (
    number  varchar(32) NOT NULL PRIMARY KEY,
    user_id integer     NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind    varchar(16) NOT NULL
);
CREATE INDEX user_phones_user_id ON user_phones (user_id);

CREATE TABLE sso_groups (
    id          integer       NOT NULL PRIMARY KEY AUTOINCREMENT,
    external_id varchar(255)  NOT NULL,
    name        varchar(255)  NOT NULL,
    dn          varchar(1024) NOT NULL DEFAULT '',
    updated_at  timestamp     NOT NULL
);
CREATE UNIQUE INDEX sso_groups_external_id ON sso_groups (external_id);

CREATE TABLE group_members (
    group_id integer NOT NULL REFERENCES sso_groups (id) ON DELETE CASCADE,
    user_id  integer NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user_id ON group_members (user_id);

CREATE TABLE sessions (
    id             varchar(64)  NOT NULL PRIMARY KEY,
    user_id        integer      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device         varchar(255) NOT NULL DEFAULT '',
    user_agent     varchar(512) NOT NULL DEFAULT '',
    ip             varchar(64)  NOT NULL DEFAULT '',
    created_at     timestamp    NOT NULL,
    last_seen_at   timestamp    NOT NULL,
    expires_at     timestamp    NOT NULL,
    revoked_at     timestamp    NULL,
    revoked_reason varchar(255) NOT NULL DEFAULT ''
);
CREATE INDEX sessions_user_id ON sessions (user_id);

-- token_hash is the hex SHA-256 of the opaque refresh token; the token
-- itself is never stored. Used rows stay until they expire so that a
-- replayed token is recognised as reuse.
CREATE TABLE refresh_tokens (
    token_hash char(64)    NOT NULL PRIMARY KEY,
    session_id varchar(64) NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at timestamp   NOT NULL,
    expires_at timestamp   NOT NULL,
    used_at    timestamp   NULL
);
CREATE INDEX refresh_tokens_session_id ON refresh_tokens (session_id);
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);

CREATE TABLE signing_keys (
    kid         varchar(64) NOT NULL PRIMARY KEY,
    alg         varchar(16) NOT NULL,
    private_key blob        NOT NULL,
    public_key  blob        NOT NULL,
    created_at  timestamp   NOT NULL,
    retire_at   timestamp   NOT NULL,
    expire_at   timestamp   NOT NULL
);

-- Fixed-window failed-login counters shared by all nodes; k is
-- "acct:<login_key>" or "ip:<address>".
CREATE TABLE login_failures (
    k            varchar(255) NOT NULL PRIMARY KEY,
    count        integer      NOT NULL,
    window_start timestamp    NOT NULL
);

-- +goose Down
DROP TABLE login_failures;
DROP TABLE signing_keys;
DROP TABLE refresh_tokens;
DROP TABLE sessions;
DROP TABLE group_members;
DROP TABLE sso_groups;
DROP TABLE user_phones;
DROP TABLE users;
