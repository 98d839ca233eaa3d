-- +goose Up
-- Uploaded files of the files module: one row per file, its bytes in the
-- blob store under blob_key (and a thumbnail under thumb_key for images).
--
-- No foreign key to users: a row and its blobs must go together, which only
-- the module can do, so nothing may delete rows behind its back (accounts
-- are disabled, never deleted).
--
-- id is 128 random bits, base64url: case matters. content_type is what the
-- content was detected to be, not what downloads are served as (active
-- content such as HTML is served as application/octet-stream). thumb_key is
-- NULL when there is no thumbnail; width and height are NULL for files that
-- are not images (or whose header could not be read).
CREATE TABLE files (
    id           varchar(32)  NOT NULL PRIMARY KEY,
    owner_id     integer      NOT NULL,
    name         varchar(255) NOT NULL,
    size         integer      NOT NULL,
    content_type varchar(255) NOT NULL,
    sha256       char(64)     NOT NULL,
    blob_key     varchar(512) NOT NULL,
    thumb_key    varchar(512) NULL,
    width        integer      NULL,
    height       integer      NULL,
    created_at   timestamp    NOT NULL
) WITHOUT ROWID;
CREATE INDEX files_owner_id ON files (owner_id, created_at);

-- +goose Down
DROP TABLE files;
