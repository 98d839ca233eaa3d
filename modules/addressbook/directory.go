package addressbook

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/elph-server/elph/platform/store"
)

// Directory is the shared address book in the database: the sources'
// records and the contacts merged from them. The module serves it; the
// import command and the sources write to it. Safe for concurrent use;
// syncs of different sources may run at once.
type Directory struct {
	db  *store.DB
	now func() time.Time
}

// NewDirectory returns the directory on db, which must be migrated.
func NewDirectory(db *store.DB, now func() time.Time) *Directory {
	if now == nil {
		now = time.Now
	}
	return &Directory{db: db, now: now}
}

// SyncResult counts what a sync did.
type SyncResult struct {
	Created   int // new contacts
	Merged    int // records joined to a contact another record made
	Updated   int // records that changed
	Unchanged int
	Removed   int // records gone from the source (full syncs)
	// Rejected are the records refused, with why (at most
	// maxRejectedKept; RejectedCount counts them all).
	Rejected      []RecordError
	RejectedCount int
}

// RecordError is a record a sync refused.
type RecordError struct {
	ExternalID string
	Line       int // for CSV, 0 otherwise
	Err        error
}

const maxRejectedKept = 1000

// syncBatch records are written per transaction.
const syncBatch = 200

// Sync brings the source's records into the directory: each record is
// stored under (source, external id), joined to the contact of the same
// person (see matchContact) or made a new contact, and the contacts it
// touches are merged again. With full, records of the source that are
// not in records are removed (the source no longer has them), and
// contacts left with no record are deleted. progress, when not nil, is
// called after each batch with the records done.
func (d *Directory) Sync(ctx context.Context, source string, records []Record, full bool, progress func(done int)) (SyncResult, error) {
	var res SyncResult
	if _, ok := sourceRank[source]; !ok {
		return res, fmt.Errorf("%w: unknown source %q", ErrInvalid, clip(source))
	}
	seen := make(map[string]bool, len(records))
	valid := make([]Record, 0, len(records))
	for i, r := range records {
		r.Source = source
		if err := r.clean(); err != nil {
			res.reject(RecordError{ExternalID: r.ExternalID, Line: i + 1, Err: err})
			continue
		}
		if seen[r.ExternalID] {
			res.reject(RecordError{ExternalID: r.ExternalID, Line: i + 1, Err: fmt.Errorf("%w: id %q appears twice", ErrInvalid, clip(r.ExternalID))})
			continue
		}
		seen[r.ExternalID] = true
		valid = append(valid, r)
	}
	for start := 0; start < len(valid); start += syncBatch {
		batch := valid[start:min(start+syncBatch, len(valid))]
		var br SyncResult
		err := d.db.InTx(ctx, func(tx *sqlx.Tx) error {
			br = SyncResult{}
			for _, r := range batch {
				if err := d.apply(ctx, tx, r, &br); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return res, err
		}
		res.add(br)
		if progress != nil {
			progress(start + len(batch))
		}
	}
	if full {
		n, err := d.removeMissing(ctx, source, seen)
		res.Removed = n
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

func (r *SyncResult) reject(e RecordError) {
	r.RejectedCount++
	if len(r.Rejected) < maxRejectedKept {
		r.Rejected = append(r.Rejected, e)
	}
}

func (r *SyncResult) add(o SyncResult) {
	r.Created += o.Created
	r.Merged += o.Merged
	r.Updated += o.Updated
	r.Unchanged += o.Unchanged
}

// apply stores one clean record and merges its contact again.
func (d *Directory) apply(ctx context.Context, tx *sqlx.Tx, r Record, res *SyncResult) error {
	data, err := json.Marshal(r.Fields)
	if err != nil {
		return fmt.Errorf("addressbook: encode record: %w", err)
	}
	now := d.now()
	old, found, err := findRecord(ctx, tx, r.Source, r.ExternalID)
	if err != nil {
		return err
	}
	if found && old.Data == string(data) && old.UserID == r.UserID {
		res.Unchanged++
		return nil
	}
	contactID := old.ContactID
	if !found {
		if contactID, err = matchContact(ctx, tx, r); err != nil {
			return err
		}
		if contactID == 0 {
			c := Contact{Fields: r.Fields, UserID: r.UserID, Sources: []string{r.Source}}
			if err := saveContact(ctx, d.db, tx, &c, now); err != nil {
				return err
			}
			contactID = c.ID
			res.Created++
		} else {
			res.Merged++
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO ab_records (source, external_id, contact_id, user_id, data, updated_at)
			VALUES (?, ?, ?, ?, ?, ?)`, r.Source, r.ExternalID, contactID, r.UserID, string(data), store.Time(now))
	} else {
		res.Updated++
		_, err = tx.ExecContext(ctx, "UPDATE ab_records SET user_id = ?, data = ?, updated_at = ? WHERE source = ? AND external_id = ?",
			r.UserID, string(data), store.Time(now), r.Source, r.ExternalID)
	}
	if err != nil {
		return fmt.Errorf("addressbook: store record %s/%s: %w", r.Source, clip(r.ExternalID), err)
	}
	return rebuild(ctx, d.db, tx, contactID, now)
}

// removeMissing deletes the source's records whose ids are not in keep.
func (d *Directory) removeMissing(ctx context.Context, source string, keep map[string]bool) (int, error) {
	var all []recordRow
	if err := d.db.SelectContext(ctx, &all, "SELECT source, external_id, contact_id FROM ab_records WHERE source = ?", source); err != nil {
		return 0, fmt.Errorf("addressbook: list %s records: %w", source, err)
	}
	var gone []recordRow
	for _, r := range all {
		if !keep[r.ExternalID] {
			gone = append(gone, r)
		}
	}
	for start := 0; start < len(gone); start += syncBatch {
		batch := gone[start:min(start+syncBatch, len(gone))]
		err := d.db.InTx(ctx, func(tx *sqlx.Tx) error {
			for _, r := range batch {
				if _, err := tx.ExecContext(ctx, "DELETE FROM ab_records WHERE source = ? AND external_id = ?", r.Source, r.ExternalID); err != nil {
					return fmt.Errorf("addressbook: remove record: %w", err)
				}
				if err := rebuild(ctx, d.db, tx, r.ContactID, d.now()); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return start, err
		}
	}
	return len(gone), nil
}

// Remove deletes one record of a source (an account deleted between full
// syncs).
func (d *Directory) Remove(ctx context.Context, source, externalID string) error {
	return d.db.InTx(ctx, func(tx *sqlx.Tx) error {
		r, found, err := findRecord(ctx, tx, source, externalID)
		if err != nil || !found {
			return err
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM ab_records WHERE source = ? AND external_id = ?", source, externalID); err != nil {
			return fmt.Errorf("addressbook: remove record: %w", err)
		}
		return rebuild(ctx, d.db, tx, r.ContactID, d.now())
	})
}

// Each calls fn for every directory contact in id order (for the export).
func (d *Directory) Each(ctx context.Context, fn func(Contact) error) error {
	var after int64
	for {
		var rows []contactRow
		if err := d.db.SelectContext(ctx, &rows, "SELECT "+contactColumns+" FROM ab_contacts WHERE owner_id = 0 AND id > ? ORDER BY id LIMIT 500", after); err != nil {
			return fmt.Errorf("addressbook: list contacts: %w", err)
		}
		for _, r := range rows {
			c, err := r.contact()
			if err != nil {
				return err
			}
			if err := fn(c); err != nil {
				return err
			}
			after = r.ID
		}
		if len(rows) < 500 {
			return nil
		}
	}
}
