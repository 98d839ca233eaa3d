// Package files stores the files users share in chats: uploads streamed
// to the blob store (local disk or S3) with a size limit, the content type
// sniffed and the SHA-256 recorded; downloads with Range and ETag support
// or a redirect to a presigned S3 URL; thumbnails of images. A file is
// visible to its uploader and to whoever the Access given by the wiring
// allows (the members of the conversations it was shared in); to anyone
// else it does not exist.
package files

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/elph-server/elph/platform/auth"
	"github.com/elph-server/elph/platform/blob"
	"github.com/elph-server/elph/platform/imaging"
	"github.com/elph-server/elph/platform/module"
	"github.com/elph-server/elph/platform/store"
)

// Name is the module's name in configuration and logs.
const Name = "files"

// Defaults of the Options left zero.
const (
	DefaultMaxUploadBytes = 100 << 20
	DefaultPresignTTL     = 5 * time.Minute
	DefaultThumbnailSize  = 320
	DefaultMaxImagePixels = 40_000_000

	// maxThumbnailSize keeps a misconfigured thumbnail size from turning
	// thumbnails into full-size copies.
	maxThumbnailSize = 4096
	// maxThumbnailBytes bounds the stored thumbnail; at 4096 px an
	// uncompressed-looking PNG is still far below it.
	maxThumbnailBytes = 64 << 20
	// maxPresignTTL is the longest S3 allows (SigV4).
	maxPresignTTL = 7 * 24 * time.Hour
	// cleanupTimeout bounds removing blobs of a failed upload or a deleted
	// file, which goes on after the request's context has ended.
	cleanupTimeout = 30 * time.Second
)

// Errors of the service methods besides ErrNotFound; test them with
// errors.Is.
var (
	// ErrTooLarge: the upload is longer than MaxUploadBytes. Nothing was
	// stored.
	ErrTooLarge = errors.New("files: too large")
	// ErrInterrupted: the upload's body could not be read to its end (the
	// client went away). Nothing was stored.
	ErrInterrupted = errors.New("files: upload interrupted")
	// ErrForbidden: the user may read the file but not do this to it
	// (delete someone else's file).
	ErrForbidden = errors.New("files: forbidden")
)

// Access decides who besides the uploader may read a file. The chat
// module implements it; main wires it in.
type Access interface {
	// CanReadFile: true when the file is attached to a message of a
	// conversation userID is a member of.
	CanReadFile(ctx context.Context, userID int64, fileID string) (bool, error)
}

// Options are what the wiring hands the module.
type Options struct {
	Log      *slog.Logger
	DB       *store.DB
	Blob     blob.Store
	Verifier *auth.Verifier
	// Access says who else may read a file; nil: only the uploader.
	Access  Access
	Metrics prometheus.Registerer
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time

	// MaxUploadBytes bounds an upload; 0 means DefaultMaxUploadBytes.
	MaxUploadBytes int64
	// PresignTTL is how long a presigned download URL is valid; 0 means
	// DefaultPresignTTL.
	PresignTTL time.Duration
	// ThumbnailSize is the longest side of a thumbnail in pixels; 0 means
	// DefaultThumbnailSize.
	ThumbnailSize int
	// MaxImagePixels is the largest image (width × height) decoded for a
	// thumbnail; 0 means DefaultMaxImagePixels. Larger images are stored
	// without one. Decoding takes 4 to 8 bytes per pixel.
	MaxImagePixels int
}

// Module is the files module.
type Module struct {
	log        *slog.Logger
	store      *Store
	blob       blob.Store
	verifier   *auth.Verifier
	access     Access
	metrics    *metrics
	now        func() time.Time
	maxUpload  int64
	presignTTL time.Duration
	thumbSize  int
	maxPixels  int
	// imageSlots bounds how many images are decoded at once: each may
	// hold hundreds of megabytes while it is, so concurrent image uploads
	// queue here rather than add up.
	imageSlots chan struct{}
}

var _ module.Module = (*Module)(nil)

// New checks o and returns the module; it does no I/O.
func New(o Options) (*Module, error) {
	switch {
	case o.DB == nil:
		return nil, errors.New("files: no database")
	case o.Blob == nil:
		return nil, errors.New("files: no blob store")
	case o.Verifier == nil:
		return nil, errors.New("files: no token verifier")
	case o.MaxUploadBytes < 0:
		return nil, fmt.Errorf("files: negative MaxUploadBytes %d", o.MaxUploadBytes)
	case o.PresignTTL < 0 || o.PresignTTL > 0 && o.PresignTTL < time.Second || o.PresignTTL > maxPresignTTL:
		return nil, fmt.Errorf("files: PresignTTL %v outside [1s, %v]", o.PresignTTL, maxPresignTTL)
	case o.ThumbnailSize < 0 || o.ThumbnailSize > maxThumbnailSize:
		return nil, fmt.Errorf("files: ThumbnailSize %d outside [1, %d]", o.ThumbnailSize, maxThumbnailSize)
	case o.MaxImagePixels < 0:
		return nil, fmt.Errorf("files: negative MaxImagePixels %d", o.MaxImagePixels)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	met, err := newMetrics(o.Metrics)
	if err != nil {
		return nil, fmt.Errorf("files metrics: %w", err)
	}
	return &Module{
		log: o.Log, store: NewStore(o.DB), blob: o.Blob, verifier: o.Verifier, access: o.Access,
		metrics: met, now: o.Now,
		maxUpload:  orDefault(o.MaxUploadBytes, DefaultMaxUploadBytes),
		presignTTL: orDefault(o.PresignTTL, DefaultPresignTTL),
		thumbSize:  orDefault(o.ThumbnailSize, DefaultThumbnailSize),
		maxPixels:  orDefault(o.MaxImagePixels, DefaultMaxImagePixels),
		imageSlots: make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2)),
	}, nil
}

// orDefault returns v, or def when v is zero.
func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func (m *Module) Name() string { return Name }

// Topics: the module uses no bus topics.
func (m *Module) Topics() module.Topics { return module.Topics{} }

// Start does nothing: the module has no background work.
func (m *Module) Start(context.Context) error { return nil }

// Stop does nothing: uploads in flight end with their requests.
func (m *Module) Stop(context.Context) error { return nil }

// Ref is what the chat module embeds in a message to point at a file.
type Ref struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
	// Width and Height are an image's displayed size, so a client can
	// lay out the message before the thumbnail arrives.
	Width  int `json:"width,omitempty"`
	Height int `json:"height,omitempty"`
	// Thumbnail says whether /v1/files/{id}/thumbnail has one.
	Thumbnail bool `json:"thumbnail,omitempty"`
}

// Attachable returns the Ref of fileID when userID may attach it to a
// message: the uploader may, and so may anyone Access lets read it (to
// forward it). Otherwise ErrNotFound.
func (m *Module) Attachable(ctx context.Context, userID int64, fileID string) (Ref, error) {
	f, err := m.readable(ctx, userID, fileID)
	if err != nil {
		return Ref{}, err
	}
	return Ref{
		ID: f.ID, Name: f.Name, ContentType: f.ContentType, Size: f.Size,
		Width: f.Width, Height: f.Height, Thumbnail: f.ThumbKey != "",
	}, nil
}

// readable returns file id when userID may read it, else ErrNotFound:
// whether a file someone may not read exists is not disclosed.
func (m *Module) readable(ctx context.Context, userID int64, id string) (File, error) {
	if !validID(id) {
		return File{}, fmt.Errorf("files: %q: %w", id, ErrNotFound)
	}
	f, err := m.store.Get(ctx, id)
	if err != nil {
		return File{}, err
	}
	if f.OwnerID == userID {
		return f, nil
	}
	if m.access == nil {
		return File{}, fmt.Errorf("files: %s: %w", id, ErrNotFound)
	}
	ok, err := m.access.CanReadFile(ctx, userID, id)
	if err != nil {
		return File{}, fmt.Errorf("files: access to %s: %w", id, err)
	}
	if !ok {
		return File{}, fmt.Errorf("files: %s: %w", id, ErrNotFound)
	}
	return f, nil
}

// UploadRequest is one file to store.
type UploadRequest struct {
	OwnerID int64
	// Name is the name the client gave; it is sanitised (SanitizeName).
	Name string
	// TypeHint is the Content-Type the client sent, if any (see
	// DetectType).
	TypeHint string
	Body     io.Reader
}

// Upload streams req.Body to the blob store and records the file. Over
// MaxUploadBytes it fails with ErrTooLarge, a body that breaks off with
// ErrInterrupted; either way nothing is kept. Images get their size
// recorded and a thumbnail when they can; a failure there does not fail
// the upload.
func (m *Module) Upload(ctx context.Context, req UploadRequest) (File, error) {
	f, err := m.upload(ctx, req)
	switch {
	case err == nil:
		m.metrics.uploads.WithLabelValues(resultOK).Inc()
		m.metrics.uploadedBytes.Add(float64(f.Size))
	case errors.Is(err, ErrTooLarge):
		m.metrics.uploads.WithLabelValues(resultTooLarge).Inc()
	case errors.Is(err, ErrInterrupted):
		m.metrics.uploads.WithLabelValues(resultBadRequest).Inc()
	default:
		m.metrics.uploads.WithLabelValues(resultError).Inc()
	}
	return f, err
}

func (m *Module) upload(ctx context.Context, req UploadRequest) (File, error) {
	f := File{ID: newID(), OwnerID: req.OwnerID, Name: SanitizeName(req.Name), BlobKey: newBlobKey("f")}

	// The type is decided here rather than left to the blob store's
	// sniffing, so that the stored object already carries the type it is
	// served with: a presigned S3 download is answered by S3 itself, and
	// must not hand a browser text/html either.
	body := &bodyReader{r: req.Body}
	head := make([]byte, sniffLen)
	// A short body is no error here (ReadFull's EOF and ErrUnexpectedEOF
	// only say it is under 512 bytes); a failing one is.
	n, _ := io.ReadFull(body, head)
	if body.err != nil {
		return File{}, m.uploadError(ctx, f, body, body.err)
	}
	head = head[:n]
	f.ContentType = DetectType(head, req.TypeHint)

	info, err := m.blob.Put(ctx, f.BlobKey, io.MultiReader(bytes.NewReader(head), body), m.maxUpload, servedType(f.ContentType))
	if err == nil && body.err != nil {
		// The body failed and yet read as ended (a reader whose error is
		// not sticky): what was stored is a truncated copy.
		m.removeBlobs(ctx, f)
		err = body.err
	}
	if err != nil {
		return File{}, m.uploadError(ctx, f, body, err)
	}
	f.Size, f.SHA256 = info.Size, info.SHA256

	if imaging.Thumbnailable(f.ContentType) {
		m.addImageInfo(ctx, &f)
	}
	f.CreatedAt = m.now()
	if err := m.store.Insert(ctx, &f); err != nil {
		m.removeBlobs(ctx, f)
		return File{}, fmt.Errorf("files: upload: %w", err)
	}
	m.log.InfoContext(ctx, "file uploaded", "file_id", f.ID, "owner_id", f.OwnerID, "size", f.Size,
		"content_type", f.ContentType, "thumbnail", f.ThumbKey != "")
	return f, nil
}

// bodyReader remembers the error of the upload's body, so a failed Put
// can be blamed on the client (gone, or over the size limit) or on the
// store.
type bodyReader struct {
	r   io.Reader
	err error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF && b.err == nil {
		b.err = err
	}
	return n, err
}

// uploadError classifies a failed upload.
func (m *Module) uploadError(ctx context.Context, f File, body *bodyReader, err error) error {
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(body.err, &maxErr), errors.Is(err, blob.ErrTooLarge):
		return fmt.Errorf("files: upload: %w (limit %d bytes)", ErrTooLarge, m.maxUpload)
	case body.err != nil:
		return fmt.Errorf("files: upload: %w: %v", ErrInterrupted, body.err)
	case ctx.Err() != nil:
		return fmt.Errorf("files: upload: %w: %v", ErrInterrupted, context.Cause(ctx))
	}
	return fmt.Errorf("files: upload %s: %w", f.ID, err)
}

// addImageInfo records the size of the image f and stores a thumbnail of
// it. Failures are logged: the file is kept without them.
func (m *Module) addImageInfo(ctx context.Context, f *File) {
	select {
	case m.imageSlots <- struct{}{}:
		defer func() { <-m.imageSlots }()
	case <-ctx.Done():
		return
	}
	obj, err := m.blob.Open(ctx, f.BlobKey)
	if err != nil {
		m.log.WarnContext(ctx, "thumbnail: open the upload", "file_id", f.ID, "err", err)
		return
	}
	res, err := imaging.Thumbnail(obj, f.ContentType, m.thumbSize, m.maxPixels)
	obj.Close()
	f.Width, f.Height = res.Width, res.Height
	if err != nil {
		// The content's fault (a broken or oversized image), not the
		// server's.
		m.log.InfoContext(ctx, "no thumbnail", "file_id", f.ID, "content_type", f.ContentType, "err", err)
		return
	}
	key := newBlobKey("t")
	if _, err := m.blob.Put(ctx, key, bytes.NewReader(res.Thumb), maxThumbnailBytes, res.ThumbType); err != nil {
		m.log.WarnContext(ctx, "thumbnail: store", "file_id", f.ID, "err", err)
		return
	}
	f.ThumbKey = key
}

// Delete removes file id and its blobs. Only the uploader may: anyone
// else who may read it gets ErrForbidden, everyone else ErrNotFound.
// Once it returns, reads answer ErrNotFound even if removing a blob
// failed (that is logged, and leaves an orphan in the blob store).
func (m *Module) Delete(ctx context.Context, userID int64, id string) error {
	f, err := m.readable(ctx, userID, id)
	if err != nil {
		return err
	}
	if f.OwnerID != userID {
		return fmt.Errorf("files: delete %s: %w", id, ErrForbidden)
	}
	if err := m.store.Delete(ctx, id); err != nil {
		return err
	}
	m.removeBlobs(ctx, f)
	m.log.InfoContext(ctx, "file deleted", "file_id", f.ID, "owner_id", f.OwnerID)
	return nil
}

// removeBlobs deletes f's content and thumbnail, even when ctx has ended:
// the row is already gone (or was never written), and the blobs would
// otherwise stay behind unreferenced.
func (m *Module) removeBlobs(ctx context.Context, f File) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	for _, key := range []string{f.BlobKey, f.ThumbKey} {
		if key == "" {
			continue
		}
		if err := m.blob.Delete(ctx, key); err != nil {
			m.log.ErrorContext(ctx, "blob of a removed file left behind", "file_id", f.ID, "key", key, "err", err)
		}
	}
}

// idLen is the length of a file id: 16 bytes in unpadded base64url.
const idLen = 22

// newID is 128 random bits, URL-safe.
func newID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// validID reports whether id can be a file id, so that a malformed one is
// answered without a database query.
func validID(id string) bool {
	if len(id) != idLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// newBlobKey returns a fresh key "<prefix>/<2 hex>/<32 hex>". It is random
// on its own rather than derived from the file id, so a presigned URL,
// which shows the key, tells nothing about the id. The two-digit
// directory spreads keys for S3 listings and people looking at a bucket.
func newBlobKey(prefix string) string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	h := hex.EncodeToString(b[:])
	return prefix + "/" + h[:2] + "/" + h
}
