-- +goose Up
-- Conversations, members, messages and what hangs off messages (hidden
-- for one user, reactions, pins, mentions, attached files) of the chat
-- module, with a FULLTEXT index over the folded message text.
--
-- User ids are not foreign keys to users: accounts are disabled, never
-- deleted, and the chat module knows people only through the wiring.
-- Keys compared for identity (direct_key, client_id, emoji, file_id) are
-- utf8mb4_bin: utf8mb4_unicode_ci would make different emoji equal.

-- direct_key is "<min user id>:<max user id>" for a direct conversation
-- and NULL for a group: its unique index makes a direct conversation
-- unique per pair whoever creates it. last_message_id orders the
-- conversation list by activity; every write to a conversation first
-- locks its row here (SELECT … FOR UPDATE), which is what keeps message
-- ids in commit order per conversation.
CREATE TABLE chat_conversations (
    id              bigint       NOT NULL AUTO_INCREMENT,
    kind            varchar(16)  COLLATE utf8mb4_bin NOT NULL,
    direct_key      varchar(64)  COLLATE utf8mb4_bin NULL,
    title           varchar(255) NOT NULL DEFAULT '',
    avatar_ref      varchar(255) COLLATE utf8mb4_bin NOT NULL DEFAULT '',
    created_by      bigint       NOT NULL,
    last_message_id bigint       NOT NULL DEFAULT 0,
    created_at      datetime(6)  NOT NULL,
    updated_at      datetime(6)  NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY chat_conversations_direct_key (direct_key),
    KEY chat_conversations_activity (last_message_id, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- last_read_message_id only grows (the read marker); muted_until NULL
-- means not muted.
CREATE TABLE chat_members (
    conversation_id      bigint      NOT NULL,
    user_id              bigint      NOT NULL,
    role                 varchar(16) COLLATE utf8mb4_bin NOT NULL,
    joined_at            datetime(6) NOT NULL,
    muted_until          datetime(6) NULL,
    last_read_message_id bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id),
    KEY chat_members_user_id (user_id, conversation_id),
    CONSTRAINT chat_members_conversation FOREIGN KEY (conversation_id) REFERENCES chat_conversations (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- client_id is the sender's idempotency key (NULL for system messages):
-- UNIQUE (sender_id, client_id) stores a retried send once. body_folded is
-- store.Fold(body), the searched text (FULLTEXT; MariaDB has no ngram
-- parser, hence the folded copy). A message deleted for everyone keeps its
-- row as a tombstone with empty body and body_folded. system_event is the
-- JSON of a system message (joined, left, renamed). reply_to_id and
-- forwarded_from_id are soft references: the message they name may be a
-- tombstone. mediumtext: a body is bounded by configuration, not by 64 KiB.
CREATE TABLE chat_messages (
    id                  bigint      NOT NULL AUTO_INCREMENT,
    conversation_id     bigint      NOT NULL,
    sender_id           bigint      NOT NULL,
    client_id           varchar(64) COLLATE utf8mb4_bin NULL,
    kind                varchar(16) COLLATE utf8mb4_bin NOT NULL,
    body                mediumtext  NOT NULL,
    body_folded         mediumtext  NOT NULL,
    system_event        text        NULL,
    reply_to_id         bigint      NULL,
    forwarded_from_id   bigint      NULL,
    forwarded_sender_id bigint      NULL,
    edited_at           datetime(6) NULL,
    deleted_at          datetime(6) NULL,
    created_at          datetime(6) NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY chat_messages_client_id (sender_id, client_id),
    KEY chat_messages_conversation (conversation_id, id),
    KEY chat_messages_created_at (created_at),
    FULLTEXT KEY chat_messages_fts (body_folded),
    CONSTRAINT chat_messages_conversation FOREIGN KEY (conversation_id) REFERENCES chat_conversations (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Delete for me.
CREATE TABLE chat_hidden (
    user_id    bigint NOT NULL,
    message_id bigint NOT NULL,
    PRIMARY KEY (user_id, message_id),
    KEY chat_hidden_message_id (message_id),
    CONSTRAINT chat_hidden_message FOREIGN KEY (message_id) REFERENCES chat_messages (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- One row per user per emoji per message. id orders reactions as they
-- came (times may tie).
CREATE TABLE chat_reactions (
    id         bigint      NOT NULL AUTO_INCREMENT,
    message_id bigint      NOT NULL,
    user_id    bigint      NOT NULL,
    emoji      varchar(64) COLLATE utf8mb4_bin NOT NULL,
    created_at datetime(6) NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY chat_reactions_user_emoji (message_id, user_id, emoji),
    CONSTRAINT chat_reactions_message FOREIGN KEY (message_id) REFERENCES chat_messages (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE chat_pins (
    conversation_id bigint      NOT NULL,
    message_id      bigint      NOT NULL,
    pinned_by       bigint      NOT NULL,
    pinned_at       datetime(6) NOT NULL,
    PRIMARY KEY (conversation_id, message_id),
    KEY chat_pins_message_id (message_id),
    CONSTRAINT chat_pins_conversation FOREIGN KEY (conversation_id) REFERENCES chat_conversations (id) ON DELETE CASCADE,
    CONSTRAINT chat_pins_message FOREIGN KEY (message_id) REFERENCES chat_messages (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE chat_mentions (
    message_id bigint NOT NULL,
    user_id    bigint NOT NULL,
    PRIMARY KEY (message_id, user_id),
    KEY chat_mentions_user_id (user_id, message_id),
    CONSTRAINT chat_mentions_message FOREIGN KEY (message_id) REFERENCES chat_messages (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Files attached to a message, with the metadata the files module gave
-- when they were attached. file_id is indexed for the files module's
-- access check (CanReadFile).
CREATE TABLE chat_message_files (
    message_id   bigint       NOT NULL,
    file_id      varchar(64)  COLLATE utf8mb4_bin NOT NULL,
    position     int          NOT NULL,
    name         varchar(255) NOT NULL,
    content_type varchar(255) NOT NULL,
    size         bigint       NOT NULL,
    PRIMARY KEY (message_id, file_id),
    KEY chat_message_files_file_id (file_id),
    CONSTRAINT chat_message_files_message FOREIGN KEY (message_id) REFERENCES chat_messages (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- +goose Down
DROP TABLE chat_message_files;
DROP TABLE chat_mentions;
DROP TABLE chat_pins;
DROP TABLE chat_reactions;
DROP TABLE chat_hidden;
DROP TABLE chat_messages;
DROP TABLE chat_members;
DROP TABLE chat_conversations;
