package chat

import (
	"database/sql"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/elph-server/elph/platform/store"
	"github.com/elph-server/elph/platform/store/storetest"
)

// TestStoreUniqueness: the schema itself keeps one direct conversation
// per pair and one message per sender and client_id, whoever races.
func TestStoreUniqueness(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		s := NewStore(db)
		ctx := t.Context()
		now := time.Now()
		insert := func(key string) (int64, error) {
			c := convRow{Kind: KindDirect, DirectKey: sql.NullString{String: key, Valid: true}, CreatedBy: 1, CreatedAt: now, UpdatedAt: now}
			err := db.InTx(ctx, func(tx *sqlx.Tx) error { return s.insertConversation(ctx, tx, &c) })
			return c.ID, err
		}
		if directKey(7, 3) != directKey(3, 7) || directKey(3, 7) != "3:7" {
			t.Fatalf("directKey(7,3) = %q", directKey(7, 3))
		}
		id, err := insert(directKey(7, 3))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := insert(directKey(3, 7)); !db.Dialect.IsUniqueViolation(err) {
			t.Fatalf("second direct conversation of a pair: %v, want a unique violation", err)
		}
		c, err := s.conversationByDirectKey(ctx, db, "3:7")
		if err != nil || c.ID != id {
			t.Fatalf("by key: %+v, %v", c, err)
		}
		if _, err := s.conversationByDirectKey(ctx, db, "3:8"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("missing key: %v", err)
		}
		// Groups have no key, and any number of them is fine.
		for range 2 {
			c := convRow{Kind: KindGroup, Title: "g", CreatedBy: 1, CreatedAt: now, UpdatedAt: now}
			if err := db.InTx(ctx, func(tx *sqlx.Tx) error { return s.insertConversation(ctx, tx, &c) }); err != nil {
				t.Fatal(err)
			}
		}

		send := func(sender int64, clientID string) error {
			r := messageRow{ConversationID: id, SenderID: sender, Kind: MessageText, Body: "x", CreatedAt: now,
				ClientID: sql.NullString{String: clientID, Valid: clientID != ""}}
			return db.InTx(ctx, func(tx *sqlx.Tx) error { return s.insertMessage(ctx, tx, &r) })
		}
		for _, tt := range []struct {
			sender    int64
			clientID  string
			duplicate bool
		}{
			{3, "a", false}, {3, "a", true}, {7, "a", false}, {3, "A", false},
			{3, "", false}, {3, "", false}, // system messages have none
		} {
			err := send(tt.sender, tt.clientID)
			if got := db.Dialect.IsUniqueViolation(err); got != tt.duplicate || (err != nil && !got) {
				t.Errorf("send(%d, %q): %v, want duplicate %v", tt.sender, tt.clientID, err, tt.duplicate)
			}
		}
	})
}

// TestStoreFullText: the index follows inserts, edits and tombstones
// (SQLite: triggers; MariaDB: the FULLTEXT index), and search returns only
// the members' messages.
func TestStoreFullText(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		s := NewStore(db)
		ctx := t.Context()
		now := time.Now()
		var conv convRow
		err := db.InTx(ctx, func(tx *sqlx.Tx) error {
			conv = convRow{Kind: KindGroup, Title: "g", CreatedBy: 1, CreatedAt: now, UpdatedAt: now}
			if err := s.insertConversation(ctx, tx, &conv); err != nil {
				return err
			}
			return s.insertMember(ctx, tx, memberRow{ConversationID: conv.ID, UserID: 1, Role: RoleOwner, JoinedAt: now})
		})
		if err != nil {
			t.Fatal(err)
		}
		var ids []int64
		for _, body := range []string{"Ёжик в тумане", "ЁЖИКИ бегут", "fog and hedgehog"} {
			r := messageRow{ConversationID: conv.ID, SenderID: 1, Kind: MessageText, Body: body, CreatedAt: now}
			if err := db.InTx(ctx, func(tx *sqlx.Tx) error { return s.insertMessage(ctx, tx, &r) }); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, r.ID)
		}
		search := func(user int64, text string) []int64 {
			t.Helper()
			expr, ok := db.Dialect.FullTextQuery(text)
			if !ok {
				t.Fatalf("nothing to search in %q", text)
			}
			rows, err := s.search(ctx, user, expr, 0, 0, 10)
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for _, r := range rows {
				got = append(got, r.ID)
			}
			return got
		}
		steps := []struct {
			name   string
			change func(tx *sqlx.Tx) error
			query  string
			want   []int64
		}{
			{"inserted", nil, "ежик", []int64{ids[1], ids[0]}},
			{"not a member", nil, "", nil},
			{"edited", func(tx *sqlx.Tx) error { return s.editMessage(ctx, tx, ids[0], "Медвежонок", now) }, "ежик", []int64{ids[1]}},
			{"edit found", nil, "медвеж", []int64{ids[0]}},
			{"tombstone", func(tx *sqlx.Tx) error { return s.tombstone(ctx, tx, []int64{ids[1], ids[2]}, now) }, "ежик", nil},
			{"tombstone english", nil, "hedgehog", nil},
		}
		for _, st := range steps {
			if st.change != nil {
				if err := db.InTx(ctx, st.change); err != nil {
					t.Fatalf("%s: %v", st.name, err)
				}
			}
			if st.name == "not a member" {
				if got := search(2, "ежик"); len(got) != 0 {
					t.Errorf("non-member found %v", got)
				}
				continue
			}
			if got := search(1, st.query); !slices.Equal(got, st.want) {
				t.Errorf("%s: search %q = %v, want %v", st.name, st.query, got, st.want)
			}
		}
	})
}
