package addressbook

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"

	"github.com/jmoiron/sqlx"

	"github.com/elph-server/elph/platform/auth"
	"github.com/elph-server/elph/platform/blob"
	"github.com/elph-server/elph/platform/httpx"
	"github.com/elph-server/elph/platform/imaging"
)

// Avatar sizes: uploads are stored scaled to fit avatarStored, and served
// at one of AvatarSizes (a fixed set, so caches hold few variants).
const (
	avatarStored = 512
	// avatarMaxPixels bounds what an upload may decode to (40 MP).
	avatarMaxPixels = 40_000_000
	// maxStoredAvatar bounds the stored (scaled) picture read back.
	maxStoredAvatar = 4 << 20
)

// AvatarSizes are the sizes GET …/avatar?size= serves.
var AvatarSizes = []int{32, 48, 64, 96, 128, 256, 512}

// SetAvatar stores a new picture for a contact: a personal contact's
// owner, the person themself (a directory contact linked to their
// account) or an admin may. The picture is scaled to fit 512×512 and
// stored as JPEG (photos) or PNG.
func (m *Module) SetAvatar(ctx context.Context, p *auth.Principal, id int64, data []byte) (Contact, error) {
	if m.blob == nil {
		return Contact{}, fmt.Errorf("%w: avatars need file storage, which this node does not have", ErrForbidden)
	}
	ct := http.DetectContentType(data)
	if !imaging.Thumbnailable(ct) {
		return Contact{}, fmt.Errorf("%w: an avatar must be a JPEG, PNG or GIF picture (got %s)", ErrInvalid, ct)
	}
	img, err := imaging.Thumbnail(bytes.NewReader(data), ct, avatarStored, avatarMaxPixels)
	if err != nil {
		return Contact{}, fmt.Errorf("%w: the picture cannot be used: %v", ErrInvalid, err)
	}
	var suffix [8]byte
	_, _ = rand.Read(suffix[:])
	key := fmt.Sprintf("addressbook/avatars/%d-%s", id, hex.EncodeToString(suffix[:]))
	var old string
	err = m.db.InTx(ctx, func(tx *sqlx.Tx) error {
		c, err := m.mayChangeAvatar(ctx, tx, p, id)
		if err != nil {
			return err
		}
		if _, err := m.blob.Put(ctx, key, bytes.NewReader(img.Thumb), maxStoredAvatar, img.ThumbType); err != nil {
			return fmt.Errorf("addressbook: store avatar: %w", err)
		}
		old, c.avatarKey = c.avatarKey, key
		return saveContact(ctx, m.db, tx, &c, m.now())
	})
	if err != nil {
		return Contact{}, err
	}
	m.dropAvatar(ctx, old)
	m.caughtUp(ctx)
	return m.Get(ctx, p.UserID, id)
}

// DeleteAvatar removes a contact's picture (same rights as SetAvatar).
func (m *Module) DeleteAvatar(ctx context.Context, p *auth.Principal, id int64) error {
	var old string
	err := m.db.InTx(ctx, func(tx *sqlx.Tx) error {
		c, err := m.mayChangeAvatar(ctx, tx, p, id)
		if err != nil {
			return err
		}
		old, c.avatarKey = c.avatarKey, ""
		return saveContact(ctx, m.db, tx, &c, m.now())
	})
	if err != nil {
		return err
	}
	m.dropAvatar(ctx, old)
	m.caughtUp(ctx)
	return nil
}

func (m *Module) dropAvatar(ctx context.Context, key string) {
	if key == "" || m.blob == nil {
		return
	}
	if err := m.blob.Delete(ctx, key); err != nil {
		m.log.WarnContext(ctx, "addressbook: old avatar left in storage", "key", key, "err", err)
	}
}

func (m *Module) mayChangeAvatar(ctx context.Context, tx *sqlx.Tx, p *auth.Principal, id int64) (Contact, error) {
	c, err := loadContact(ctx, tx, id)
	if err != nil {
		return Contact{}, err
	}
	switch {
	case !visible(c.OwnerID, p.UserID):
		return Contact{}, fmt.Errorf("contact %d: %w", id, ErrNotFound)
	case c.OwnerID == p.UserID, c.OwnerID == 0 && c.UserID == p.UserID, c.OwnerID == 0 && p.Role == auth.RoleAdmin:
		return c, nil
	}
	return Contact{}, fmt.Errorf("%w: only the person, or an admin, changes a directory contact's picture", ErrForbidden)
}

// handleAvatar serves a contact's picture at ?size= (one of AvatarSizes;
// default 128) with an ETag that changes with the picture, so clients and
// proxies revalidate for free.
func (m *Module) handleAvatar(w http.ResponseWriter, r *http.Request) {
	id, err := contactID(r)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	size := 128
	if s := r.URL.Query().Get("size"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || !slices.Contains(AvatarSizes, n) {
			httpx.WriteError(w, r, httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "size must be one of %v", AvatarSizes))
			return
		}
		size = n
	}
	c, err := m.Get(r.Context(), principal(r).UserID, id)
	if err != nil {
		httpx.WriteError(w, r, httpError(err))
		return
	}
	if c.avatarKey == "" || m.blob == nil {
		httpx.WriteError(w, r, httpx.Errorf(http.StatusNotFound, httpx.CodeNotFound, "the contact has no picture"))
		return
	}
	sum := sha256.Sum256([]byte(c.avatarKey))
	etag := `"` + hex.EncodeToString(sum[:8]) + "-" + strconv.Itoa(size) + `"`
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", "private, max-age=3600")
	if match := r.Header.Get("If-None-Match"); match != "" && match == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	obj, err := m.blob.Open(r.Context(), c.avatarKey)
	if errors.Is(err, blob.ErrNotFound) {
		httpx.WriteError(w, r, httpx.Errorf(http.StatusNotFound, httpx.CodeNotFound, "the contact has no picture"))
		return
	}
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	defer obj.Close()
	data, err := io.ReadAll(io.LimitReader(obj, maxStoredAvatar+1))
	if err != nil || len(data) > maxStoredAvatar {
		httpx.WriteError(w, r, fmt.Errorf("addressbook: read avatar %s: %v (%d bytes)", c.avatarKey, err, len(data)))
		return
	}
	ct := obj.Info().ContentType
	if size < avatarStored {
		img, err := imaging.Thumbnail(bytes.NewReader(data), ct, size, avatarMaxPixels)
		if err != nil {
			httpx.WriteError(w, r, fmt.Errorf("addressbook: scale avatar %s: %w", c.avatarKey, err))
			return
		}
		data, ct = img.Thumb, img.ThumbType
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(data)
}

func (m *Module) handlePutAvatar(w http.ResponseWriter, r *http.Request) {
	id, err := contactID(r)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		httpx.WriteError(w, r, httpx.Errorf(http.StatusRequestEntityTooLarge, "too_large", "the picture is larger than %s", m.cfg.MaxAvatarBytes))
		return
	}
	if len(data) == 0 {
		httpx.WriteError(w, r, httpx.Errorf(http.StatusBadRequest, httpx.CodeBadRequest, "the body is the picture; it is empty"))
		return
	}
	c, err := m.SetAvatar(r.Context(), principal(r), id, data)
	if err != nil {
		httpx.WriteError(w, r, httpError(err))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, c)
}

func (m *Module) handleDeleteAvatar(w http.ResponseWriter, r *http.Request) {
	id, err := contactID(r)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if err := m.DeleteAvatar(r.Context(), principal(r), id); err != nil {
		httpx.WriteError(w, r, httpError(err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
