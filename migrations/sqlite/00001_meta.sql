-- +goose Up
-- meta holds small server-wide key/value facts (schema owner, instance id,
-- feature flags) that do not deserve a table of their own.
CREATE TABLE meta (
    k          varchar(64) NOT NULL PRIMARY KEY,
    v          text        NOT NULL,
    updated_at timestamp   NOT NULL
);

-- +goose Down
DROP TABLE meta;
