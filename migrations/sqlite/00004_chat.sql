-- +goose Up
-- Conversations, members, messages and what hangs off messages (hidden
-- for one user, reactions, pins, mentions, attached files) of the chat
-- module, with a full-text index over the folded message text.
--
-- User ids are not foreign keys to users: accounts are disabled, never
-- deleted, and the chat module knows people only through the wiring.
-- Timestamps are "timestamp" text in UTC (see 00002_sso.sql).

-- direct_key is "<min user id>:<max user id>" for a direct conversation
-- and NULL for a group: its unique index makes a direct conversation
-- unique per pair whoever creates it. last_message_id orders the
-- conversation list by activity; every write to a conversation first
-- locks its row here, which is what keeps message ids in commit order per
-- conversation.
CREATE TABLE chat_conversations (
    id              integer      NOT NULL PRIMARY KEY AUTOINCREMENT,
    kind            varchar(16)  NOT NULL,
    direct_key      varchar(64)  NULL,
    title           varchar(255) NOT NULL DEFAULT '',
    avatar_ref      varchar(255) NOT NULL DEFAULT '',
    created_by      integer      NOT NULL,
    last_message_id integer      NOT NULL DEFAULT 0,
    created_at      timestamp    NOT NULL,
    updated_at      timestamp    NOT NULL
);
CREATE UNIQUE INDEX chat_conversations_direct_key ON chat_conversations (direct_key);
CREATE INDEX chat_conversations_activity ON chat_conversations (last_message_id, id);

-- last_read_message_id only grows (the read marker); muted_until NULL
-- means not muted.
CREATE TABLE chat_members (
    conversation_id      integer     NOT NULL REFERENCES chat_conversations (id) ON DELETE CASCADE,
    user_id              integer     NOT NULL,
    role                 varchar(16) NOT NULL,
    joined_at            timestamp   NOT NULL,
    muted_until          timestamp   NULL,
    last_read_message_id integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX chat_members_user_id ON chat_members (user_id, conversation_id);

-- client_id is the sender's idempotency key (NULL for system messages):
-- UNIQUE (sender_id, client_id) stores a retried send once. body_folded is
-- store.Fold(body), the searched text. A message deleted for everyone
-- keeps its row as a tombstone with empty body and body_folded.
-- system_event is the JSON of a system message (joined, left, renamed).
-- reply_to_id and forwarded_from_id are soft references: the message they
-- name may be a tombstone.
CREATE TABLE chat_messages (
    id                  integer     NOT NULL PRIMARY KEY AUTOINCREMENT,
    conversation_id     integer     NOT NULL REFERENCES chat_conversations (id) ON DELETE CASCADE,
    sender_id           integer     NOT NULL,
    client_id           varchar(64) NULL,
    kind                varchar(16) NOT NULL,
    body                text        NOT NULL,
    body_folded         text        NOT NULL,
    system_event        text        NULL,
    reply_to_id         integer     NULL,
    forwarded_from_id   integer     NULL,
    forwarded_sender_id integer     NULL,
    edited_at           timestamp   NULL,
    deleted_at          timestamp   NULL,
    created_at          timestamp   NOT NULL
);
CREATE UNIQUE INDEX chat_messages_client_id ON chat_messages (sender_id, client_id);
CREATE INDEX chat_messages_conversation ON chat_messages (conversation_id, id);
CREATE INDEX chat_messages_created_at ON chat_messages (created_at);

-- The full-text index is an external-content FTS5 table over body_folded,
-- kept in sync by the triggers below, so the store never writes it.
CREATE VIRTUAL TABLE chat_messages_fts USING fts5(
    body_folded,
    content='chat_messages',
    content_rowid='id',
    tokenize='unicode61 remove_diacritics 0'
);

-- +goose StatementBegin
CREATE TRIGGER chat_messages_fts_insert AFTER INSERT ON chat_messages BEGIN
    INSERT INTO chat_messages_fts (rowid, body_folded) VALUES (new.id, new.body_folded);
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER chat_messages_fts_delete AFTER DELETE ON chat_messages BEGIN
    INSERT INTO chat_messages_fts (chat_messages_fts, rowid, body_folded) VALUES ('delete', old.id, old.body_folded);
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER chat_messages_fts_update AFTER UPDATE OF body_folded ON chat_messages BEGIN
    INSERT INTO chat_messages_fts (chat_messages_fts, rowid, body_folded) VALUES ('delete', old.id, old.body_folded);
    INSERT INTO chat_messages_fts (rowid, body_folded) VALUES (new.id, new.body_folded);
END;
-- +goose StatementEnd

-- Delete for me.
CREATE TABLE chat_hidden (
    user_id    integer NOT NULL,
    message_id integer NOT NULL REFERENCES chat_messages (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, message_id)
);
CREATE INDEX chat_hidden_message_id ON chat_hidden (message_id);

-- One row per user per emoji per message. id orders reactions as they
-- came (times may tie).
CREATE TABLE chat_reactions (
    id         integer     NOT NULL PRIMARY KEY AUTOINCREMENT,
    message_id integer     NOT NULL REFERENCES chat_messages (id) ON DELETE CASCADE,
    user_id    integer     NOT NULL,
    emoji      varchar(64) NOT NULL,
    created_at timestamp   NOT NULL
);
CREATE UNIQUE INDEX chat_reactions_user_emoji ON chat_reactions (message_id, user_id, emoji);

CREATE TABLE chat_pins (
    conversation_id integer   NOT NULL REFERENCES chat_conversations (id) ON DELETE CASCADE,
    message_id      integer   NOT NULL REFERENCES chat_messages (id) ON DELETE CASCADE,
    pinned_by       integer   NOT NULL,
    pinned_at       timestamp NOT NULL,
    PRIMARY KEY (conversation_id, message_id)
);
CREATE INDEX chat_pins_message_id ON chat_pins (message_id);

CREATE TABLE chat_mentions (
    message_id integer NOT NULL REFERENCES chat_messages (id) ON DELETE CASCADE,
    user_id    integer NOT NULL,
    PRIMARY KEY (message_id, user_id)
);
CREATE INDEX chat_mentions_user_id ON chat_mentions (user_id, message_id);

-- Files attached to a message, with the metadata the files module gave
-- when they were attached. file_id is indexed for the files module's
-- access check (CanReadFile).
CREATE TABLE chat_message_files (
    message_id   integer      NOT NULL REFERENCES chat_messages (id) ON DELETE CASCADE,
    file_id      varchar(64)  NOT NULL,
    position     integer      NOT NULL,
    name         varchar(255) NOT NULL,
    content_type varchar(255) NOT NULL,
    size         integer      NOT NULL,
    PRIMARY KEY (message_id, file_id)
);
CREATE INDEX chat_message_files_file_id ON chat_message_files (file_id);

-- +goose Down
DROP TABLE chat_message_files;
DROP TABLE chat_mentions;
DROP TABLE chat_pins;
DROP TABLE chat_reactions;
DROP TABLE chat_hidden;
DROP TRIGGER chat_messages_fts_update;
DROP TRIGGER chat_messages_fts_delete;
DROP TRIGGER chat_messages_fts_insert;
DROP TABLE chat_messages_fts;
DROP TABLE chat_messages;
DROP TABLE chat_members;
DROP TABLE chat_conversations;
