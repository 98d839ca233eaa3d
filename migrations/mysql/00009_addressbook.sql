-- +goose Up
-- The company address book (see the sqlite migration for the meaning of
-- each table). Keys and sources are compared exactly: utf8mb4_bin.
CREATE TABLE ab_contacts (
    id           bigint       NOT NULL AUTO_INCREMENT,
    owner_id     bigint       NOT NULL DEFAULT 0,
    user_id      bigint       NOT NULL DEFAULT 0,
    display_name varchar(255) NOT NULL,
    data         mediumtext   NOT NULL,
    sources      varchar(255) COLLATE utf8mb4_bin NOT NULL DEFAULT '',
    avatar_key   varchar(255) COLLATE utf8mb4_bin NOT NULL DEFAULT '',
    updated_at   datetime(6)  NOT NULL,
    PRIMARY KEY (id),
    KEY ab_contacts_owner (owner_id),
    KEY ab_contacts_user (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE ab_records (
    source      varchar(32)  COLLATE utf8mb4_bin NOT NULL,
    external_id varchar(255) COLLATE utf8mb4_bin NOT NULL,
    contact_id  bigint       NOT NULL,
    user_id     bigint       NOT NULL DEFAULT 0,
    data        mediumtext   NOT NULL,
    updated_at  datetime(6)  NOT NULL,
    PRIMARY KEY (source, external_id),
    KEY ab_records_contact (contact_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE ab_keys (
    contact_id bigint       NOT NULL,
    owner_id   bigint       NOT NULL,
    kind       varchar(8)   COLLATE utf8mb4_bin NOT NULL,
    value      varchar(255) COLLATE utf8mb4_bin NOT NULL,
    KEY ab_keys_value (kind, value, owner_id),
    KEY ab_keys_contact (contact_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE ab_favorites (
    user_id    bigint NOT NULL,
    contact_id bigint NOT NULL,
    PRIMARY KEY (user_id, contact_id),
    KEY ab_favorites_contact (contact_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE ab_changes (
    seq        bigint      NOT NULL AUTO_INCREMENT,
    contact_id bigint      NOT NULL,
    changed_at datetime(6) NOT NULL,
    PRIMARY KEY (seq)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- +goose Down
DROP TABLE ab_changes;
DROP TABLE ab_favorites;
DROP TABLE ab_keys;
DROP TABLE ab_records;
DROP TABLE ab_contacts;
