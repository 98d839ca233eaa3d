-- +goose Up
-- The company address book.
--
-- ab_contacts: one row per person. owner_id 0 is the shared directory,
-- merged from ab_records; otherwise a personal contact of that user.
-- user_id links an Elph account (0: none). data is the JSON of the
-- merged fields (modules/addressbook Fields); sources the comma-separated
-- sources it came from.
CREATE TABLE ab_contacts (
    id           integer      NOT NULL PRIMARY KEY AUTOINCREMENT,
    owner_id     integer      NOT NULL DEFAULT 0,
    user_id      integer      NOT NULL DEFAULT 0,
    display_name varchar(255) NOT NULL,
    data         text         NOT NULL,
    sources      varchar(255) NOT NULL DEFAULT '',
    avatar_key   varchar(255) NOT NULL DEFAULT '',
    updated_at   timestamp    NOT NULL
);
CREATE INDEX ab_contacts_owner ON ab_contacts (owner_id);
CREATE INDEX ab_contacts_user ON ab_contacts (user_id);

-- ab_records: what each source said of each person, merged into the
-- contact by source precedence. (source, external_id) is the person's
-- stable identity within the source.
CREATE TABLE ab_records (
    source      varchar(32)  NOT NULL,
    external_id varchar(255) NOT NULL,
    contact_id  integer      NOT NULL,
    user_id     integer      NOT NULL DEFAULT 0,
    data        text         NOT NULL,
    updated_at  timestamp    NOT NULL,
    PRIMARY KEY (source, external_id)
);
CREATE INDEX ab_records_contact ON ab_records (contact_id);

-- ab_keys: what contacts are matched and resolved by: 'phone' (the
-- normalised digits), 'email' (lower case), 'name' (folded display name).
CREATE TABLE ab_keys (
    contact_id integer      NOT NULL,
    owner_id   integer      NOT NULL,
    kind       varchar(8)   NOT NULL,
    value      varchar(255) NOT NULL
);
CREATE INDEX ab_keys_value ON ab_keys (kind, value, owner_id);
CREATE INDEX ab_keys_contact ON ab_keys (contact_id);

CREATE TABLE ab_favorites (
    user_id    integer NOT NULL,
    contact_id integer NOT NULL,
    PRIMARY KEY (user_id, contact_id)
);
CREATE INDEX ab_favorites_contact ON ab_favorites (contact_id);

-- ab_changes: every change of a contact (a deleted one too), in order:
-- each node's search index follows it, whoever made the change (another
-- node, the import command).
CREATE TABLE ab_changes (
    seq        integer   NOT NULL PRIMARY KEY AUTOINCREMENT,
    contact_id integer   NOT NULL,
    changed_at timestamp NOT NULL
);

-- +goose Down
DROP TABLE ab_changes;
DROP TABLE ab_favorites;
DROP TABLE ab_keys;
DROP TABLE ab_records;
DROP TABLE ab_contacts;
