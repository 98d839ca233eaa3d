package addressbook

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/elph-server/elph/platform/store"
)

// Key kinds of ab_keys.
const (
	keyPhone = "phone"
	keyEmail = "email"
	keyName  = "name"
)

// contactRow is an ab_contacts row.
type contactRow struct {
	ID          int64     `db:"id"`
	OwnerID     int64     `db:"owner_id"`
	UserID      int64     `db:"user_id"`
	DisplayName string    `db:"display_name"`
	Data        string    `db:"data"`
	Sources     string    `db:"sources"`
	AvatarKey   string    `db:"avatar_key"`
	UpdatedAt   time.Time `db:"updated_at"`
}

const contactColumns = "id, owner_id, user_id, display_name, data, sources, avatar_key, updated_at"

func (r contactRow) contact() (Contact, error) {
	c := Contact{ID: r.ID, OwnerID: r.OwnerID, UserID: r.UserID, UpdatedAt: r.UpdatedAt.UTC(), avatarKey: r.AvatarKey}
	if err := json.Unmarshal([]byte(r.Data), &c.Fields); err != nil {
		return Contact{}, fmt.Errorf("addressbook: contact %d: bad data: %w", r.ID, err)
	}
	c.Sources = []string{}
	if r.Sources != "" {
		c.Sources = strings.Split(r.Sources, ",")
	}
	if r.AvatarKey != "" {
		c.Avatar = fmt.Sprintf("/addressbook/v1/contacts/%d/avatar", r.ID)
	}
	return c, nil
}

// loadContact reads one contact; ErrNotFound when there is none.
func loadContact(ctx context.Context, q sqlx.QueryerContext, id int64) (Contact, error) {
	var r contactRow
	err := sqlx.GetContext(ctx, q, &r, "SELECT "+contactColumns+" FROM ab_contacts WHERE id = ?", id)
	if errors.Is(err, sql.ErrNoRows) {
		return Contact{}, fmt.Errorf("contact %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Contact{}, fmt.Errorf("addressbook: read contact %d: %w", id, err)
	}
	return r.contact()
}

// saveContact inserts (ID 0) or updates c with its keys, and logs the
// change; it sets c.ID and c.UpdatedAt.
func saveContact(ctx context.Context, db *store.DB, tx *sqlx.Tx, c *Contact, now time.Time) error {
	data, err := json.Marshal(c.Fields)
	if err != nil {
		return fmt.Errorf("addressbook: encode contact: %w", err)
	}
	c.UpdatedAt = store.Time(now)
	sources := strings.Join(c.Sources, ",")
	if c.ID == 0 {
		res, err := tx.ExecContext(ctx, `INSERT INTO ab_contacts (owner_id, user_id, display_name, data, sources, avatar_key, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, c.OwnerID, c.UserID, c.DisplayName, string(data), sources, c.avatarKey, c.UpdatedAt)
		if err != nil {
			return fmt.Errorf("addressbook: insert contact: %w", err)
		}
		if c.ID, err = res.LastInsertId(); err != nil {
			return fmt.Errorf("addressbook: insert contact: %w", err)
		}
	} else {
		_, err := tx.ExecContext(ctx, `UPDATE ab_contacts SET user_id = ?, display_name = ?, data = ?, sources = ?, avatar_key = ?, updated_at = ?
			WHERE id = ?`, c.UserID, c.DisplayName, string(data), sources, c.avatarKey, c.UpdatedAt, c.ID)
		if err != nil {
			return fmt.Errorf("addressbook: update contact %d: %w", c.ID, err)
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM ab_keys WHERE contact_id = ?", c.ID); err != nil {
			return fmt.Errorf("addressbook: update contact %d: %w", c.ID, err)
		}
	}
	keys := [][2]string{{keyName, fold(c.DisplayName)}}
	for _, p := range c.Phones {
		keys = append(keys, [2]string{keyPhone, p.Normalized})
	}
	for _, e := range c.Emails {
		keys = append(keys, [2]string{keyEmail, e})
	}
	for _, k := range keys {
		if _, err := tx.ExecContext(ctx, "INSERT INTO ab_keys (contact_id, owner_id, kind, value) VALUES (?, ?, ?, ?)",
			c.ID, c.OwnerID, k[0], clipBytes(k[1], 255)); err != nil {
			return fmt.Errorf("addressbook: keys of contact %d: %w", c.ID, err)
		}
	}
	return logChange(ctx, tx, c.ID, now)
}

// deleteContact removes a contact with its keys and favourites.
func deleteContact(ctx context.Context, tx *sqlx.Tx, id int64, now time.Time) error {
	for _, q := range []string{
		"DELETE FROM ab_keys WHERE contact_id = ?",
		"DELETE FROM ab_favorites WHERE contact_id = ?",
		"DELETE FROM ab_contacts WHERE id = ?",
	} {
		if _, err := tx.ExecContext(ctx, q, id); err != nil {
			return fmt.Errorf("addressbook: delete contact %d: %w", id, err)
		}
	}
	return logChange(ctx, tx, id, now)
}

func logChange(ctx context.Context, tx *sqlx.Tx, id int64, now time.Time) error {
	if _, err := tx.ExecContext(ctx, "INSERT INTO ab_changes (contact_id, changed_at) VALUES (?, ?)", id, store.Time(now)); err != nil {
		return fmt.Errorf("addressbook: log change of contact %d: %w", id, err)
	}
	return nil
}

// recordRow is an ab_records row.
type recordRow struct {
	Source     string `db:"source"`
	ExternalID string `db:"external_id"`
	ContactID  int64  `db:"contact_id"`
	UserID     int64  `db:"user_id"`
	Data       string `db:"data"`
}

func (r recordRow) record() (Record, error) {
	rec := Record{Source: r.Source, ExternalID: r.ExternalID, UserID: r.UserID}
	if err := json.Unmarshal([]byte(r.Data), &rec.Fields); err != nil {
		return Record{}, fmt.Errorf("addressbook: record %s/%s: bad data: %w", r.Source, r.ExternalID, err)
	}
	return rec, nil
}

// findRecord reads the record of (source, externalID); ok false when none.
func findRecord(ctx context.Context, tx *sqlx.Tx, source, externalID string) (recordRow, bool, error) {
	var r recordRow
	err := tx.GetContext(ctx, &r, "SELECT source, external_id, contact_id, user_id, data FROM ab_records WHERE source = ? AND external_id = ?", source, externalID)
	if errors.Is(err, sql.ErrNoRows) {
		return recordRow{}, false, nil
	}
	if err != nil {
		return recordRow{}, false, fmt.Errorf("addressbook: read record: %w", err)
	}
	return r, true, nil
}

// matchContact finds the directory contact a new record is the same
// person as: the same Elph account; else a shared e-mail; else the same
// name and a shared number. 0 when none.
func matchContact(ctx context.Context, tx *sqlx.Tx, r Record) (int64, error) {
	var ids []int64
	if r.UserID > 0 {
		if err := tx.SelectContext(ctx, &ids, "SELECT id FROM ab_contacts WHERE owner_id = 0 AND user_id = ? ORDER BY id LIMIT 1", r.UserID); err != nil {
			return 0, fmt.Errorf("addressbook: match by account: %w", err)
		}
		if len(ids) > 0 {
			return ids[0], nil
		}
	}
	if len(r.Emails) > 0 {
		q, args, err := sqlx.In("SELECT contact_id FROM ab_keys WHERE kind = 'email' AND owner_id = 0 AND value IN (?) ORDER BY contact_id LIMIT 1", r.Emails)
		if err != nil {
			return 0, err
		}
		if err := tx.SelectContext(ctx, &ids, tx.Rebind(q), args...); err != nil {
			return 0, fmt.Errorf("addressbook: match by e-mail: %w", err)
		}
		if len(ids) > 0 {
			return ids[0], nil
		}
	}
	if len(r.Phones) > 0 {
		numbers := make([]string, len(r.Phones))
		for i, p := range r.Phones {
			numbers[i] = p.Normalized
		}
		q, args, err := sqlx.In(`SELECT p.contact_id FROM ab_keys p JOIN ab_keys n ON n.contact_id = p.contact_id
			WHERE p.kind = 'phone' AND p.owner_id = 0 AND p.value IN (?) AND n.kind = 'name' AND n.value = ?
			ORDER BY p.contact_id LIMIT 1`, numbers, clipBytes(fold(r.DisplayName), 255))
		if err != nil {
			return 0, err
		}
		if err := tx.SelectContext(ctx, &ids, tx.Rebind(q), args...); err != nil {
			return 0, fmt.Errorf("addressbook: match by name and number: %w", err)
		}
		if len(ids) > 0 {
			return ids[0], nil
		}
	}
	return 0, nil
}

// recordsOf reads every record of a contact.
func recordsOf(ctx context.Context, tx *sqlx.Tx, contactID int64) ([]Record, error) {
	var rows []recordRow
	if err := tx.SelectContext(ctx, &rows, "SELECT source, external_id, contact_id, user_id, data FROM ab_records WHERE contact_id = ?", contactID); err != nil {
		return nil, fmt.Errorf("addressbook: records of contact %d: %w", contactID, err)
	}
	out := make([]Record, 0, len(rows))
	for _, r := range rows {
		rec, err := r.record()
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}

// rebuild merges a directory contact from its records again, deleting it
// when none is left.
func rebuild(ctx context.Context, db *store.DB, tx *sqlx.Tx, contactID int64, now time.Time) error {
	recs, err := recordsOf(ctx, tx, contactID)
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		return deleteContact(ctx, tx, contactID, now)
	}
	c, err := loadContact(ctx, tx, contactID)
	if err != nil {
		return err
	}
	c.Fields, c.UserID, c.Sources = merge(recs)
	return saveContact(ctx, db, tx, &c, now)
}

func clipBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// fold is the search and match form of text: store.Fold (case, ё = е).
func fold(s string) string { return store.Fold(s) }

// sortedUnique is for tests and callers that gather ids.
func sortedUnique(ids []int64) []int64 {
	slices.Sort(ids)
	return slices.Compact(ids)
}
