package stream_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elph-server/elph/platform/auth/authtest"

	"github.com/jmoiron/sqlx"

	"github.com/elph-server/elph/platform/store"
	"github.com/elph-server/elph/platform/store/storetest"
	"github.com/elph-server/elph/platform/stream"
)

// newStream returns a Stream on db that is not started: appends, Since
// and Purge need no Start.
func newStream(t testing.TB, db *store.DB, edit func(*stream.Options)) *stream.Stream {
	t.Helper()
	o := stream.Options{DB: db, Bus: newBus(t), Verifier: authtest.New(t).Verifier(), Log: storetest.Logger(t)}
	if edit != nil {
		edit(&o)
	}
	s, err := stream.New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// clock is a settable clock, safe for concurrent use.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func seqsOf(evs []stream.Event) []int64 {
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.Seq
	}
	return out
}

func span(from, to int64) []int64 {
	var out []int64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// TestAppendTxConcurrent appends for one user from 8 goroutines at once,
// some of them for a second user in the same transaction: every append
// gets its own sequence, and together they are 1..N without a gap.
func TestAppendTxConcurrent(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		s := newStream(t, db, nil)
		ctx := t.Context()
		const (
			workers = 8
			each    = 25
			user    = 7
			other   = 3 // locked before user in the two-user appends
		)
		var (
			mu     sync.Mutex
			byUser = map[int64]map[int64]int{} // user -> seq -> payload
		)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := range each {
					users := []int64{user}
					if (w+i)%3 == 0 {
						users = []int64{user, other, user}
					}
					data := payload{I: w*1000 + i}
					var p stream.Pending
					err := db.InTx(ctx, func(tx *sqlx.Tx) error {
						var err error
						p, err = s.AppendTx(ctx, tx, users, eventType, data)
						return err
					})
					if err != nil {
						t.Errorf("worker %d append %d: %v", w, i, err)
						return
					}
					p.Notify(ctx)
					mu.Lock()
					for u, seq := range p.Seqs() {
						if byUser[u] == nil {
							byUser[u] = map[int64]int{}
						}
						if prev, dup := byUser[u][seq]; dup {
							t.Errorf("user %d seq %d given to payloads %d and %d", u, seq, prev, data.I)
						}
						byUser[u][seq] = data.I
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		for u, seqs := range byUser {
			n := int64(len(seqs))
			if u == user && n != workers*each {
				t.Errorf("user %d: %d appends recorded, want %d", u, n, workers*each)
			}
			evs, err := s.Since(ctx, u, 0, 1000)
			if err != nil {
				t.Fatalf("Since: %v", err)
			}
			if got, want := seqsOf(evs), span(1, n); !slices.Equal(got, want) {
				t.Fatalf("user %d stored seqs %v, want 1..%d", u, got, n)
			}
			for _, ev := range evs {
				var p payload
				if err := json.Unmarshal(ev.Data, &p); err != nil || p.I != seqs[ev.Seq] || ev.Type != eventType {
					t.Errorf("user %d event %d = %s %s, want payload %d", u, ev.Seq, ev.Type, ev.Data, seqs[ev.Seq])
				}
			}
		}
	})
}

// TestAppendTxRollback checks that an event rolls back with its
// transaction and its sequence is not lost: the next append reuses it.
func TestAppendTxRollback(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		s := newStream(t, db, nil)
		ctx := t.Context()
		if _, err := s.Append(ctx, []int64{1}, eventType, payload{I: 1}); err != nil {
			t.Fatal(err)
		}
		errAbort := errors.New("abort")
		err := db.InTx(ctx, func(tx *sqlx.Tx) error {
			p, err := s.AppendTx(ctx, tx, []int64{1, 2}, eventType, payload{I: 2})
			if err != nil {
				return err
			}
			if got := p.Seqs(); got[1] != 2 || got[2] != 1 {
				t.Errorf("Seqs in the transaction = %v, want 1:2 2:1", got)
			}
			return errAbort
		})
		if !errors.Is(err, errAbort) {
			t.Fatalf("InTx = %v", err)
		}
		seqs, err := s.Append(ctx, []int64{2, 1}, eventType, payload{I: 3})
		if err != nil {
			t.Fatal(err)
		}
		if seqs[1] != 2 || seqs[2] != 1 {
			t.Errorf("after rollback Append = %v, want 1:2 2:1", seqs)
		}
		evs, err := s.Since(ctx, 1, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 2 || string(evs[1].Data) != `{"i":3}` {
			t.Errorf("user 1 events %+v, want the first and the third", evs)
		}
	})
}

func TestAppendInvalid(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		s := newStream(t, db, func(o *stream.Options) { o.MaxEventBytes = 100 })
		tests := []struct {
			name  string
			users []int64
			typ   string
			data  any
			want  error
		}{
			{"undotted type", []int64{1}, "hello", nil, stream.ErrInvalidEvent},
			{"upper case type", []int64{1}, "Chat.message.created", nil, stream.ErrInvalidEvent},
			{"empty type", []int64{1}, "", nil, stream.ErrInvalidEvent},
			{"wildcard type", []int64{1}, "chat.*", nil, stream.ErrInvalidEvent},
			{"type too long", []int64{1}, "a." + strings.Repeat("b", 63), nil, stream.ErrInvalidEvent},
			{"zero user", []int64{0, 1}, eventType, nil, stream.ErrInvalidEvent},
			{"negative user", []int64{1, -5}, eventType, nil, stream.ErrInvalidEvent},
			{"data too large", []int64{1}, eventType, strings.Repeat("x", 100), stream.ErrEventTooLarge},
			{"data not JSON", []int64{1}, eventType, json.RawMessage(`{"a":`), stream.ErrInvalidEvent},
			{"data not UTF-8", []int64{1}, eventType, json.RawMessage("\"\xff\""), stream.ErrInvalidEvent},
			{"data not marshalable", []int64{1}, eventType, make(chan int), stream.ErrInvalidEvent},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := s.Append(t.Context(), tt.users, tt.typ, tt.data)
				if !errors.Is(err, tt.want) {
					t.Errorf("Append = %v, want %v", err, tt.want)
				}
			})
		}
		// Nothing of the above was stored.
		if _, err := s.Since(t.Context(), 1, 1, 0); !errors.Is(err, stream.ErrResync) {
			t.Errorf("Since(1, 1) = %v, want ErrResync: user 1 has no events", err)
		}
		// No users is a no-op, not an error.
		seqs, err := s.Append(t.Context(), nil, eventType, nil)
		if err != nil || len(seqs) != 0 {
			t.Errorf("Append for nobody = %v, %v", seqs, err)
		}
	})
}

func TestSince(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		s := newStream(t, db, nil)
		appendN(t, s, db, 1, 30)
		tests := []struct {
			name        string
			user, after int64
			limit       int
			want        []int64
			wantErr     error
		}{
			{name: "all", user: 1, after: 0, limit: 100, want: span(1, 30)},
			{name: "default limit", user: 1, after: 0, limit: 0, want: span(1, 30)},
			{name: "page", user: 1, after: 10, limit: 5, want: span(11, 15)},
			{name: "up to date", user: 1, after: 30, limit: 10, want: nil},
			{name: "future", user: 1, after: 31, limit: 10, wantErr: stream.ErrResync},
			{name: "unknown user", user: 2, after: 0, limit: 10, want: nil},
			{name: "unknown user future", user: 2, after: 1, limit: 10, wantErr: stream.ErrResync},
			{name: "negative", user: 1, after: -1, limit: 10, wantErr: stream.ErrInvalidEvent},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				evs, err := s.Since(t.Context(), tt.user, tt.after, tt.limit)
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Since = %v, want %v", err, tt.wantErr)
				}
				if got := seqsOf(evs); !slices.Equal(got, tt.want) && !(len(got) == 0 && len(tt.want) == 0) {
					t.Fatalf("Since seqs %v, want %v", got, tt.want)
				}
				for _, ev := range evs {
					// appendN numbers payloads from 0.
					if want := fmt.Sprintf(`{"i":%d}`, ev.Seq-1); string(ev.Data) != want || ev.Type != eventType ||
						ev.Time.IsZero() || ev.Time.Location() != time.UTC {
						t.Errorf("event %+v, want data %s at a UTC time", ev, want)
					}
				}
			})
		}
	})
}

func TestPurge(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		clk := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
		s := newStream(t, db, func(o *stream.Options) {
			o.Now = clk.Now
			o.MaxPerUser = 5
			o.Retention = 24 * time.Hour
		})
		check := func(user, after int64, want []int64, wantErr error) {
			t.Helper()
			evs, err := s.Since(ctx, user, after, 100)
			if !errors.Is(err, wantErr) {
				t.Fatalf("Since(%d, %d) = %v, want %v", user, after, err, wantErr)
			}
			if got := seqsOf(evs); len(got)+len(want) > 0 && !slices.Equal(got, want) {
				t.Fatalf("Since(%d, %d) = %v, want %v", user, after, got, want)
			}
		}

		// By count: user 1 keeps its newest 5 of 12, user 2 all of its 3.
		appendN(t, s, db, 1, 12)
		appendN(t, s, db, 2, 3)
		n, err := s.Purge(ctx)
		if err != nil || n != 7 {
			t.Fatalf("Purge by count = %d, %v; want 7", n, err)
		}
		check(1, 0, nil, stream.ErrResync)
		check(1, 6, nil, stream.ErrResync)
		check(1, 7, span(8, 12), nil)
		check(2, 0, span(1, 3), nil)
		if n, err := s.Purge(ctx); err != nil || n != 0 {
			t.Fatalf("second Purge = %d, %v; want 0", n, err)
		}

		// By age: a day later, user 2's three events and user 1's five
		// expire; the events after them stay.
		clk.Add(25 * time.Hour)
		appendN(t, s, db, 1, 2) // 13, 14
		n, err = s.Purge(ctx)
		if err != nil || n != 8 {
			t.Fatalf("Purge by age = %d, %v; want 8", n, err)
		}
		check(1, 12, span(13, 14), nil)
		check(1, 11, nil, stream.ErrResync)
		// Everything of user 2 is gone; its position stays valid and the
		// sequence goes on.
		check(2, 3, nil, nil)
		check(2, 2, nil, stream.ErrResync)
		seqs, err := s.Append(ctx, []int64{2}, eventType, payload{})
		if err != nil || seqs[2] != 4 {
			t.Fatalf("Append after purge = %v, %v; want seq 4", seqs, err)
		}
		check(2, 3, []int64{4}, nil)
	})
}

// TestPurgeConcurrentAppend runs purges while a user's stream grows: at
// every moment what Since returns is contiguous from the position asked.
func TestPurgeConcurrentAppend(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		s := newStream(t, db, func(o *stream.Options) { o.MaxPerUser = 10 })
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var wg sync.WaitGroup
		wg.Go(func() {
			for ctx.Err() == nil {
				if _, err := s.Purge(ctx); err != nil && ctx.Err() == nil {
					t.Errorf("Purge: %v", err)
					return
				}
			}
		})
		for i := range 150 {
			if _, err := s.Append(ctx, []int64{1}, eventType, payload{I: i}); err != nil {
				t.Fatalf("Append: %v", err)
			}
			// The newest 10 are always kept, so this position is retained.
			after := max(int64(i)-5, 0)
			evs, err := s.Since(ctx, 1, after, 100)
			if err != nil {
				t.Fatalf("Since(%d): %v", after, err)
			}
			if len(evs) == 0 || evs[0].Seq != after+1 || evs[len(evs)-1].Seq != int64(i)+1 || int64(len(evs)) != int64(i)+1-after {
				t.Fatalf("Since(%d) after %d appends = %v, not contiguous", after, i+1, seqsOf(evs))
			}
		}
		cancel()
		wg.Wait()
	})
}

func TestNewOptions(t *testing.T) {
	db := storetest.OpenSQLite(t)
	b := newBus(t)
	v := authtest.New(t).Verifier()
	tests := []struct {
		name string
		o    stream.Options
	}{
		{"no DB", stream.Options{Bus: b, Verifier: v}},
		{"no bus", stream.Options{DB: db, Verifier: v}},
		{"no verifier", stream.Options{DB: db, Bus: b}},
		{"negative buffer", stream.Options{DB: db, Bus: b, Verifier: v, SendBuffer: -1}},
		{"bad origin pattern", stream.Options{DB: db, Bus: b, Verifier: v, OriginPatterns: []string{"[a"}}},
		{"events too large for the bus", stream.Options{DB: db, Bus: b, Verifier: v, MaxEventBytes: 1 << 20}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := stream.New(tt.o); err == nil {
				t.Error("New succeeded")
			}
		})
	}
}

func BenchmarkAppend(b *testing.B) {
	for _, dialect := range []string{store.DriverSQLite, store.DriverMySQL} {
		for _, users := range []int{1, 100} {
			b.Run(fmt.Sprintf("%s/%dusers", dialect, users), func(b *testing.B) {
				var db *store.DB
				if dialect == store.DriverSQLite {
					db = storetest.OpenSQLite(b)
				} else {
					db = storetest.OpenMySQL(b)
				}
				s := newStream(b, db, nil)
				ids := span(1, int64(users))
				data := map[string]any{"conversation_id": 42, "text": "Привет, как дела?"}
				ctx := context.Background()
				for b.Loop() {
					if _, err := s.Append(ctx, ids, "chat.message.created", data); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
