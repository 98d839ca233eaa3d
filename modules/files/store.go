package files

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/jmoiron/sqlx"

	"github.com/elph-server/elph/platform/store"
)

// File is the metadata of an uploaded file.
type File struct {
	// ID is 128 random bits, base64url (22 characters).
	ID      string
	OwnerID int64
	// Name is the sanitised name the uploader gave (see SanitizeName).
	Name string
	Size int64
	// ContentType is what the content was detected to be (see
	// DetectType); downloads of active content are served as
	// application/octet-stream whatever it says.
	ContentType string
	// SHA256 is the hex SHA-256 of the content.
	SHA256 string
	// BlobKey is where the content is in the blob store; ThumbKey where
	// the thumbnail is, "" when there is none.
	BlobKey  string
	ThumbKey string
	// Width and Height are an image's displayed size, 0 for other files.
	Width, Height int
	CreatedAt     time.Time
}

// Store keeps file metadata (see migrations/*/00005_files.sql) on SQLite
// or MySQL/MariaDB. Times are stored in UTC truncated to microseconds
// (what MySQL's datetime(6) keeps), so what is read back equals what was
// written on either database.
type Store struct {
	db *store.DB
}

// NewStore returns a Store on db, which must be migrated.
func NewStore(db *store.DB) *Store { return &Store{db: db} }

// Store errors; test them with errors.Is.
var (
	// ErrNotFound: there is no such file, or the user may not see it.
	ErrNotFound = errors.New("files: not found")
	// ErrConflict: a file with the id exists already.
	ErrConflict = errors.New("files: already exists")
)

const fileColumns = `id, owner_id, name, size, content_type, sha256, blob_key, thumb_key, width, height, created_at`

// fileRow is a File as the table holds it, with its NULLs.
type fileRow struct {
	ID          string         `db:"id"`
	OwnerID     int64          `db:"owner_id"`
	Name        string         `db:"name"`
	Size        int64          `db:"size"`
	ContentType string         `db:"content_type"`
	SHA256      string         `db:"sha256"`
	BlobKey     string         `db:"blob_key"`
	ThumbKey    sql.NullString `db:"thumb_key"`
	Width       sql.NullInt64  `db:"width"`
	Height      sql.NullInt64  `db:"height"`
	CreatedAt   time.Time      `db:"created_at"`
}

func (r fileRow) file() File {
	return File{
		ID: r.ID, OwnerID: r.OwnerID, Name: r.Name, Size: r.Size, ContentType: r.ContentType,
		SHA256: r.SHA256, BlobKey: r.BlobKey, ThumbKey: r.ThumbKey.String,
		Width: int(r.Width.Int64), Height: int(r.Height.Int64), CreatedAt: r.CreatedAt.UTC(),
	}
}

// Insert stores f. ID, Name (at most MaxNameChars characters), BlobKey and
// a 64-digit SHA256 are required; a zero CreatedAt is now. f is updated to
// what was stored. A taken id is ErrConflict.
func (s *Store) Insert(ctx context.Context, f *File) error {
	switch {
	case f.ID == "" || len(f.ID) > 32:
		return fmt.Errorf("files: insert: id must be 1 to 32 bytes")
	case f.Name == "" || !utf8.ValidString(f.Name) || utf8.RuneCountInString(f.Name) > MaxNameChars:
		return fmt.Errorf("files: insert %s: name must be 1 to %d characters of UTF-8", f.ID, MaxNameChars)
	case f.BlobKey == "" || len(f.SHA256) != 64 || f.Size < 0:
		return fmt.Errorf("files: insert %s: blob key, sha256 and size are required", f.ID)
	case len(f.ContentType) > maxTypeLen:
		return fmt.Errorf("files: insert %s: content type longer than %d bytes", f.ID, maxTypeLen)
	}
	nf := *f
	if nf.CreatedAt.IsZero() {
		nf.CreatedAt = time.Now()
	}
	nf.CreatedAt = store.Time(nf.CreatedAt)
	_, err := s.db.ExecContext(ctx, "INSERT INTO files ("+fileColumns+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		nf.ID, nf.OwnerID, nf.Name, nf.Size, nf.ContentType, nf.SHA256, nf.BlobKey,
		sql.NullString{String: nf.ThumbKey, Valid: nf.ThumbKey != ""},
		sql.NullInt64{Int64: int64(nf.Width), Valid: nf.Width > 0},
		sql.NullInt64{Int64: int64(nf.Height), Valid: nf.Height > 0},
		nf.CreatedAt)
	if s.db.Dialect.IsUniqueViolation(err) {
		return fmt.Errorf("files: insert %s: %w", nf.ID, ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("files: insert %s: %w", nf.ID, err)
	}
	*f = nf
	return nil
}

// Get returns the file with id, or ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (File, error) {
	var r fileRow
	err := sqlx.GetContext(ctx, s.db, &r, "SELECT "+fileColumns+" FROM files WHERE id = ?", id)
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return File{}, fmt.Errorf("files: get %s: %w", id, err)
	}
	return r.file(), nil
}

// Delete removes the row of file id; ErrNotFound when there is none (so of
// two concurrent deletes exactly one succeeds). The blobs are the
// caller's to remove.
func (s *Store) Delete(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, "DELETE FROM files WHERE id = ?", id)
	if err != nil {
		return fmt.Errorf("files: delete %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("files: delete %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("files: delete %s: %w", id, ErrNotFound)
	}
	return nil
}
