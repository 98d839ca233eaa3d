// Package addressbook is the company address book: the phone directory
// every client shows and searches, and the number → person resolution
// call history and push use.
//
// Directory contacts are merged from sources (Elph accounts, the
// softswitch's directory database, CSV imports): each source's records
// are kept as they came (ab_records) and a person seen in several
// sources is one contact whose fields come from the records by source
// precedence (see merge). Users also keep personal contacts, private to
// them, and favourites. Search runs on an in-memory index on every node
// that follows the database's change log, so changes made on another
// node or by the import command show up within seconds.
package addressbook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/elph-server/elph/config"
	"github.com/elph-server/elph/platform/auth"
	"github.com/elph-server/elph/platform/blob"
	"github.com/elph-server/elph/platform/bus"
	"github.com/elph-server/elph/platform/module"
	"github.com/elph-server/elph/platform/store"
)

// Name is the module's name in configuration and logs.
const Name = "addressbook"

// Bus topics consumed: the sso module's account changes.
const (
	topicUserChanged     = "sso.user.changed"
	topicDirectorySynced = "sso.directory.synced"
)

// accountsInterval is how often every account is compared with the
// directory besides the events.
const accountsInterval = 10 * time.Minute

// followInterval is how often the index reads the change log (changes
// made on this node are applied at once).
const followInterval = 2 * time.Second

// Account is an Elph account as the accounts source sees it.
type Account struct {
	ID          int64
	Login       string
	DisplayName string
	Email       string
	Department  string
	Title       string
	Phones      []Phone // Number and Kind
	Disabled    bool
}

// Accounts lists the Elph accounts; the wiring implements it over the
// sso store.
type Accounts interface {
	// EachAccount calls fn for every account, disabled ones included.
	EachAccount(ctx context.Context, fn func(Account) error) error
	// Account returns one account; found is false when there is none.
	Account(ctx context.Context, id int64) (a Account, found bool, err error)
}

// Options are what the wiring hands the module.
type Options struct {
	Config   config.Addressbook
	Log      *slog.Logger // nil: discard
	DB       *store.DB
	Bus      bus.Bus
	Blob     blob.Store // avatars; nil: no avatars
	Verifier *auth.Verifier
	// Accounts is the accounts source; nil, or Config.Accounts false:
	// accounts are not in the directory.
	Accounts Accounts
	Metrics  prometheus.Registerer // nil: not registered
	Now      func() time.Time      // nil: time.Now
}

// Module is the address book module.
type Module struct {
	cfg      config.Addressbook
	log      *slog.Logger
	db       *store.DB
	dir      *Directory
	bus      bus.Bus
	blob     blob.Store
	verifier *auth.Verifier
	accounts Accounts
	soft     *Softswitch
	met      *metrics
	now      func() time.Time
	idx      *index

	stopping atomic.Bool // set by Stop: queued account events are skipped

	followMu sync.Mutex // one follower at a time
	lastSeq  int64

	mu     sync.Mutex
	subs   []bus.Subscription
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var _ module.Module = (*Module)(nil)

// New validates o and provisions the module; it starts nothing.
func New(o Options) (*Module, error) {
	switch {
	case o.DB == nil:
		return nil, errors.New("addressbook: no DB")
	case o.Bus == nil:
		return nil, errors.New("addressbook: no Bus")
	case o.Verifier == nil:
		return nil, errors.New("addressbook: no Verifier")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	met, err := newMetrics(o.Metrics)
	if err != nil {
		return nil, fmt.Errorf("addressbook metrics: %w", err)
	}
	m := &Module{
		cfg: o.Config, log: o.Log, db: o.DB, dir: NewDirectory(o.DB, o.Now), bus: o.Bus, blob: o.Blob,
		verifier: o.Verifier, met: met, now: o.Now, idx: newIndex(),
	}
	if o.Config.Accounts {
		m.accounts = o.Accounts
	}
	if o.Config.Softswitch.Enabled {
		if m.soft, err = NewSoftswitch(o.Config.Softswitch, o.Log); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Module) Name() string { return Name }

func (m *Module) Topics() module.Topics {
	return module.Topics{Consumes: []string{topicUserChanged, topicDirectorySynced}}
}

// Directory is the shared address book, for the import command.
func (m *Module) Directory() *Directory { return m.dir }

// Start loads the search index, subscribes to account changes and starts
// the background work: following the change log, the accounts sync, the
// softswitch sync. It does not block beyond loading the index.
func (m *Module) Start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cancel != nil {
		return errors.New("addressbook: Start called twice")
	}
	if err := m.load(ctx); err != nil {
		return err
	}
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel = cancel
	m.wg.Go(func() { module.Every(loopCtx, followInterval, m.log, "addressbook index follow", m.follow) })
	if m.accounts != nil {
		// Shared: one node per cluster merges accounts into the directory; every
		// node's index follows the change log.
		sub, err := m.bus.Subscribe(topicUserChanged, "addressbook.accounts", m.onUserChanged, bus.WithWorkers(2), bus.Shared())
		if err != nil {
			cancel()
			return fmt.Errorf("addressbook: subscribe: %w", err)
		}
		synced, err := m.bus.Subscribe(topicDirectorySynced, "addressbook.directory", func(ctx context.Context, _ bus.Event) error {
			if m.stopping.Load() {
				return nil
			}
			return m.syncAccounts(ctx)
		}, bus.Shared())
		if err != nil {
			sub.Unsubscribe()
			cancel()
			return fmt.Errorf("addressbook: subscribe: %w", err)
		}
		m.subs = []bus.Subscription{sub, synced}
		m.wg.Go(func() {
			if err := m.syncAccounts(loopCtx); err != nil && loopCtx.Err() == nil {
				m.log.Error("addressbook accounts sync failed", "err", err)
			}
			// Also now and then: accounts changed by another process (the
			// user and ldap commands) announce it on that process's bus.
			module.Every(loopCtx, accountsInterval, m.log, "addressbook accounts sync", m.syncAccounts)
		})
	}
	if m.soft != nil {
		m.wg.Go(func() {
			if err := m.syncSoftswitch(loopCtx); err != nil && loopCtx.Err() == nil {
				m.log.Error("addressbook softswitch sync failed", "err", err)
			}
			module.Every(loopCtx, m.cfg.Softswitch.Interval, m.log, "addressbook softswitch sync", m.syncSoftswitch)
		})
	}
	return nil
}

// Stop ends the subscriptions and background work.
func (m *Module) Stop(ctx context.Context) error {
	// Account events still queued are skipped, not worked through: the
	// accounts sync at the next start catches up on them.
	m.stopping.Store(true)
	m.mu.Lock()
	subs, cancel := m.subs, m.cancel
	m.subs, m.cancel = nil, nil
	m.mu.Unlock()
	for _, s := range subs {
		s.Unsubscribe()
	}
	if cancel != nil {
		cancel()
	}
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("addressbook: stop: %w", ctx.Err())
	}
	if m.soft != nil {
		return m.soft.Close()
	}
	return nil
}

// load fills the index with every contact and notes where the change
// log stands.
func (m *Module) load(ctx context.Context) error {
	m.followMu.Lock()
	defer m.followMu.Unlock()
	start := time.Now()
	var seq sqlNullInt
	if err := m.db.GetContext(ctx, &seq, "SELECT MAX(seq) FROM ab_changes"); err != nil {
		return fmt.Errorf("addressbook: read change log: %w", err)
	}
	var after int64
	n := 0
	for {
		var rows []contactRow
		if err := m.db.SelectContext(ctx, &rows, "SELECT "+contactColumns+" FROM ab_contacts WHERE id > ? ORDER BY id LIMIT 5000", after); err != nil {
			return fmt.Errorf("addressbook: load contacts: %w", err)
		}
		for _, r := range rows {
			c, err := r.contact()
			if err != nil {
				m.log.Error("addressbook: contact skipped", "id", r.ID, "err", err)
				continue
			}
			m.idx.put(c)
			after = r.ID
			n++
		}
		if len(rows) < 5000 {
			break
		}
	}
	m.lastSeq = seq.Int64
	m.idx.rebuild()
	m.met.contacts.Set(float64(m.idx.size()))
	m.log.Info("addressbook index loaded", "contacts", n, "duration", time.Since(start).Round(time.Millisecond))
	return nil
}

// follow applies the change log's new entries to the index; for
// module.Every, and after every change made here.
func (m *Module) follow(ctx context.Context) error {
	m.followMu.Lock()
	defer m.followMu.Unlock()
	for {
		var changes []struct {
			Seq       int64 `db:"seq"`
			ContactID int64 `db:"contact_id"`
		}
		if err := m.db.SelectContext(ctx, &changes, "SELECT seq, contact_id FROM ab_changes WHERE seq > ? ORDER BY seq LIMIT 1000", m.lastSeq); err != nil {
			return fmt.Errorf("addressbook: read change log: %w", err)
		}
		ids := make([]int64, 0, len(changes))
		for _, ch := range changes {
			ids = append(ids, ch.ContactID)
		}
		if err := m.refresh(ctx, sortedUnique(ids)); err != nil {
			return err
		}
		if len(changes) > 0 {
			m.lastSeq = changes[len(changes)-1].Seq
		}
		if len(changes) < 1000 {
			// Lay the index out again here, not in the next search.
			m.idx.rebuild()
			m.met.contacts.Set(float64(m.idx.size()))
			return nil
		}
	}
}

// refresh reads the given contacts again into the index (absent ones are
// removed).
func (m *Module) refresh(ctx context.Context, ids []int64) error {
	for len(ids) > 0 {
		part := ids[:min(len(ids), 500)]
		ids = ids[len(part):]
		q, args, err := sqlx.In("SELECT "+contactColumns+" FROM ab_contacts WHERE id IN (?)", part)
		if err != nil {
			return err
		}
		var rows []contactRow
		if err := m.db.SelectContext(ctx, &rows, m.db.Rebind(q), args...); err != nil {
			return fmt.Errorf("addressbook: refresh contacts: %w", err)
		}
		found := make(map[int64]bool, len(rows))
		for _, r := range rows {
			c, err := r.contact()
			if err != nil {
				m.log.Error("addressbook: contact skipped", "id", r.ID, "err", err)
				continue
			}
			found[r.ID] = true
			m.idx.put(c)
		}
		for _, id := range part {
			if !found[id] {
				m.idx.remove(id)
			}
		}
	}
	return nil
}

// caughtUp applies this node's own change at once, so the next search
// sees it.
func (m *Module) caughtUp(ctx context.Context) {
	if err := m.follow(ctx); err != nil {
		m.log.WarnContext(ctx, "addressbook: index behind until the next follow", "err", err)
	}
}

// accountRecord turns an account into the accounts source's record.
func accountRecord(a Account) Record {
	r := Record{Source: SourceAccounts, ExternalID: strconv.FormatInt(a.ID, 10), UserID: a.ID}
	r.DisplayName = a.DisplayName
	if r.DisplayName == "" {
		r.DisplayName = a.Login
	}
	r.Department, r.Title = a.Department, a.Title
	if a.Email != "" {
		r.Emails = []string{a.Email}
	}
	r.Phones = append([]Phone(nil), a.Phones...)
	return r
}

// syncAccounts brings every enabled account into the directory and
// removes the accounts that are gone or disabled.
func (m *Module) syncAccounts(ctx context.Context) error {
	var recs []Record
	err := m.accounts.EachAccount(ctx, func(a Account) error {
		if !a.Disabled {
			recs = append(recs, accountRecord(a))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("addressbook: list accounts: %w", err)
	}
	res, err := m.dir.Sync(ctx, SourceAccounts, recs, true, nil)
	m.noteSync(ctx, SourceAccounts, res, err)
	m.caughtUp(ctx)
	return err
}

// onUserChanged brings one account's change in at once.
func (m *Module) onUserChanged(ctx context.Context, ev bus.Event) error {
	if m.stopping.Load() {
		return nil
	}
	id, err := strconv.ParseInt(ev.Key, 10, 64)
	if err != nil || id <= 0 {
		return fmt.Errorf("addressbook: %s with key %q", topicUserChanged, ev.Key)
	}
	a, found, err := m.accounts.Account(ctx, id)
	if err != nil {
		return err
	}
	if !found || a.Disabled {
		err = m.dir.Remove(ctx, SourceAccounts, ev.Key)
	} else {
		var res SyncResult
		res, err = m.dir.Sync(ctx, SourceAccounts, []Record{accountRecord(a)}, false, nil)
		m.noteSync(ctx, SourceAccounts, res, err)
	}
	m.caughtUp(ctx)
	return err
}

func (m *Module) syncSoftswitch(ctx context.Context) error {
	res, err := m.soft.Sync(ctx, m.dir)
	m.noteSync(ctx, SourceSoftswitch, res, err)
	m.caughtUp(ctx)
	return err
}

// noteSync logs and counts a sync's outcome.
func (m *Module) noteSync(ctx context.Context, source string, res SyncResult, err error) {
	if err != nil {
		m.met.syncs.WithLabelValues(source, "error").Inc()
		return
	}
	m.met.syncs.WithLabelValues(source, "ok").Inc()
	m.met.rejected.WithLabelValues(source).Add(float64(res.RejectedCount))
	if res.Created+res.Merged+res.Updated+res.Removed+res.RejectedCount > 0 {
		m.log.InfoContext(ctx, "addressbook sync", "source", source, "created", res.Created, "merged", res.Merged,
			"updated", res.Updated, "removed", res.Removed, "rejected", res.RejectedCount)
	}
	for _, r := range res.Rejected[:min(len(res.Rejected), 10)] {
		m.log.WarnContext(ctx, "addressbook: record rejected", "source", source, "id", clip(r.ExternalID), "err", r.Err)
	}
}

type sqlNullInt struct{ Int64 int64 }

func (n *sqlNullInt) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		n.Int64 = 0
	case int64:
		n.Int64 = x
	case []byte:
		i, err := strconv.ParseInt(string(x), 10, 64)
		n.Int64 = i
		return err
	default:
		return fmt.Errorf("unexpected %T", v)
	}
	return nil
}
