package addressbook

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// Search returns the contacts userID sees that match q, best first, and
// how many matched in all.
func (m *Module) Search(ctx context.Context, userID int64, q Query) ([]Contact, int, error) {
	start := time.Now()
	if q.Limit <= 0 {
		q.Limit = DefaultLimit
	}
	q.Limit = min(q.Limit, MaxLimit)
	if q.Offset < 0 || q.Offset > maxOffset {
		return nil, 0, fmt.Errorf("%w: offset must be 0..%d", ErrInvalid, maxOffset)
	}
	if n := len([]rune(q.Text)); n > MaxQueryRunes {
		return nil, 0, fmt.Errorf("%w: the query is longer than %d characters", ErrInvalid, MaxQueryRunes)
	}
	fav, err := m.favorites(ctx, userID)
	if err != nil {
		return nil, 0, err
	}
	out, total := m.idx.search(userID, q, fav)
	m.met.searches.Observe(time.Since(start).Seconds())
	return out, total, nil
}

// Get returns one contact userID may see.
func (m *Module) Get(ctx context.Context, userID, id int64) (Contact, error) {
	c, ok := m.idx.get(id)
	if !ok {
		// Made on another node a moment ago: read it.
		var err error
		if c, err = loadContact(ctx, m.db, id); err != nil {
			return Contact{}, err
		}
	}
	if !visible(c.OwnerID, userID) {
		return Contact{}, fmt.Errorf("contact %d: %w", id, ErrNotFound)
	}
	fav, err := m.favorites(ctx, userID)
	if err != nil {
		return Contact{}, err
	}
	c.Favorite = fav[id]
	return c, nil
}

func (m *Module) favorites(ctx context.Context, userID int64) (map[int64]bool, error) {
	var ids []int64
	if err := m.db.SelectContext(ctx, &ids, "SELECT contact_id FROM ab_favorites WHERE user_id = ?", userID); err != nil {
		return nil, fmt.Errorf("addressbook: favourites of user %d: %w", userID, err)
	}
	out := make(map[int64]bool, len(ids))
	for _, id := range ids {
		out[id] = true
	}
	return out, nil
}

// SetFavorite stars or unstars a contact userID may see.
func (m *Module) SetFavorite(ctx context.Context, userID, id int64, on bool) (Contact, error) {
	c, err := m.Get(ctx, userID, id)
	if err != nil {
		return Contact{}, err
	}
	q := m.db.Dialect.InsertIgnore("ab_favorites", []string{"user_id", "contact_id"})
	args := []any{userID, id}
	if !on {
		q = "DELETE FROM ab_favorites WHERE user_id = ? AND contact_id = ?"
	}
	if _, err := m.db.ExecContext(ctx, q, args...); err != nil {
		return Contact{}, fmt.Errorf("addressbook: favourite: %w", err)
	}
	c.Favorite = on
	return c, nil
}

// CreatePersonal adds a personal contact of userID.
func (m *Module) CreatePersonal(ctx context.Context, userID int64, f Fields) (Contact, error) {
	if err := f.clean(); err != nil {
		return Contact{}, err
	}
	c := Contact{Fields: f, OwnerID: userID, Sources: []string{"personal"}}
	err := m.db.InTx(ctx, func(tx *sqlx.Tx) error {
		var n int
		if err := tx.GetContext(ctx, &n, "SELECT COUNT(*) FROM ab_contacts WHERE owner_id = ?", userID); err != nil {
			return fmt.Errorf("addressbook: count personal contacts: %w", err)
		}
		if n >= m.cfg.MaxPersonal {
			return fmt.Errorf("%w: at most %d personal contacts", ErrLimit, m.cfg.MaxPersonal)
		}
		c.ID = 0
		return saveContact(ctx, m.db, tx, &c, m.now())
	})
	if err != nil {
		return Contact{}, err
	}
	m.caughtUp(ctx)
	return c, nil
}

// UpdatePersonal replaces the fields of userID's personal contact.
func (m *Module) UpdatePersonal(ctx context.Context, userID, id int64, f Fields) (Contact, error) {
	if err := f.clean(); err != nil {
		return Contact{}, err
	}
	var c Contact
	err := m.db.InTx(ctx, func(tx *sqlx.Tx) error {
		var err error
		if c, err = m.ownPersonal(ctx, tx, userID, id); err != nil {
			return err
		}
		c.Fields = f
		return saveContact(ctx, m.db, tx, &c, m.now())
	})
	if err != nil {
		return Contact{}, err
	}
	m.caughtUp(ctx)
	return m.Get(ctx, userID, id)
}

// DeletePersonal removes userID's personal contact.
func (m *Module) DeletePersonal(ctx context.Context, userID, id int64) error {
	var avatar string
	err := m.db.InTx(ctx, func(tx *sqlx.Tx) error {
		c, err := m.ownPersonal(ctx, tx, userID, id)
		if err != nil {
			return err
		}
		avatar = c.avatarKey
		return deleteContact(ctx, tx, id, m.now())
	})
	if err != nil {
		return err
	}
	if avatar != "" && m.blob != nil {
		if err := m.blob.Delete(ctx, avatar); err != nil {
			m.log.WarnContext(ctx, "addressbook: avatar of a deleted contact left in storage", "key", avatar, "err", err)
		}
	}
	m.caughtUp(ctx)
	return nil
}

// ownPersonal reads a personal contact of userID; another's, or a
// directory contact, is ErrNotFound for a read and ErrForbidden for a
// directory contact (visible, but not theirs to change).
func (m *Module) ownPersonal(ctx context.Context, tx *sqlx.Tx, userID, id int64) (Contact, error) {
	c, err := loadContact(ctx, tx, id)
	if err != nil {
		return Contact{}, err
	}
	switch {
	case c.OwnerID == 0:
		return Contact{}, fmt.Errorf("%w: contact %d comes from the directory; its sources change it", ErrForbidden, id)
	case c.OwnerID != userID:
		return Contact{}, fmt.Errorf("contact %d: %w", id, ErrNotFound)
	}
	return c, nil
}

// Lookup returns the contacts userID sees that have number (in any
// spelling), their personal contacts first.
func (m *Module) Lookup(userID int64, number string) []Contact {
	n := NormalizeNumber(number)
	if n == "" {
		m.met.lookups.WithLabelValues("unknown").Inc()
		return nil
	}
	out := m.idx.byNumber(userID, n)
	if len(out) == 0 {
		m.met.lookups.WithLabelValues("unknown").Inc()
	} else {
		m.met.lookups.WithLabelValues("found").Inc()
	}
	return out
}

// NameForNumber is call history's and push's PeerNames: the display name
// of the person with that number as userID knows them (a personal
// contact first, then the directory).
func (m *Module) NameForNumber(_ context.Context, userID int64, number string) (string, bool) {
	cs := m.Lookup(userID, number)
	if len(cs) == 0 {
		return "", false
	}
	return cs[0].DisplayName, true
}
