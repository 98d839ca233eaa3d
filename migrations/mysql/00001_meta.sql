-- +goose Up
-- meta holds small server-wide key/value facts (schema owner, instance id,
-- feature flags) that do not deserve a table of their own.
CREATE TABLE meta (
    k          varchar(64) NOT NULL,
    v          text        NOT NULL,
    updated_at datetime(6) NOT NULL,
    PRIMARY KEY (k)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- +goose Down
DROP TABLE meta;
