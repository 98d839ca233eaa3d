-- +goose Up
-- Uploaded files of the files module: one row per file, its bytes in the
-- blob store under blob_key (and a thumbnail under thumb_key for images).
--
-- No foreign key to users: a row and its blobs must go together, which only
-- the module can do, so nothing may delete rows behind its back (accounts
-- are disabled, never deleted).
--
-- id is 128 random bits, base64url: case matters, hence utf8mb4_bin (under
-- utf8mb4_unicode_ci a lookup would also match the id in another case).
-- Blob keys and the hash are compared exactly too. content_type is what
-- the content was detected to be, not what downloads are served as (active
-- content such as HTML is served as application/octet-stream). thumb_key is
-- NULL when there is no thumbnail; width and height are NULL for files that
-- are not images (or whose header could not be read).
CREATE TABLE files (
    id           varchar(32)  COLLATE utf8mb4_bin NOT NULL,
    owner_id     bigint       NOT NULL,
    name         varchar(255) NOT NULL,
    size         bigint       NOT NULL,
    content_type varchar(255) NOT NULL,
    sha256       char(64)     COLLATE utf8mb4_bin NOT NULL,
    blob_key     varchar(512) COLLATE utf8mb4_bin NOT NULL,
    thumb_key    varchar(512) COLLATE utf8mb4_bin NULL,
    width        int          NULL,
    height       int          NULL,
    created_at   datetime(6)  NOT NULL,
    PRIMARY KEY (id),
    KEY files_owner_id (owner_id, created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- +goose Down
DROP TABLE files;
