package sso

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/elph-server/elph/platform/bus"
	"github.com/elph-server/elph/platform/store"
)

// SyncOptions tune one directory sync.
type SyncOptions struct {
	// DryRun reads the directory and reports what would change, writing
	// nothing.
	DryRun bool
	// Progress, when set, is called as users are read: done so far and the
	// expected total (the accounts known from the last sync; 0 when none).
	Progress func(done, expected int)
}

// SyncSummary is what a sync did (or, dry, would do). It is also the
// payload of TopicDirectorySynced.
type SyncSummary struct {
	DryRun    bool      `json:"dry_run"`
	Started   time.Time `json:"started"`
	Finished  time.Time `json:"finished"`
	Groups    int       `json:"groups"`
	Seen      int       `json:"seen"`
	Created   int       `json:"created"`
	Updated   int       `json:"updated"`
	Unchanged int       `json:"unchanged"`
	// Disabled counts accounts disabled in the directory plus accounts no
	// longer in it. Accounts are never deleted.
	Disabled int `json:"disabled"`
	Errors   int `json:"errors"`
}

// maxSyncErrorShare: when more than this share of entries fail, the sync
// stops before disabling anything, since it is probably misconfigured.
const maxSyncErrorShare = 0.1

// SyncDirectory reads every group and user from the directory and brings
// the accounts up to date: new people are created, changed ones updated,
// people disabled in the directory or gone from it are disabled (never
// deleted), group membership (nested groups flattened) replaced. Nothing
// is disabled unless the whole directory was read.
func (m *Module) SyncDirectory(ctx context.Context, o SyncOptions) (SyncSummary, error) {
	if m.dir == nil {
		return SyncSummary{}, errors.New("the directory is not configured (sso.ldap.enabled is false)")
	}
	if !m.syncLock.TryLock() {
		return SyncSummary{}, errors.New("a directory sync is already running")
	}
	defer m.syncLock.Unlock()

	sum := SyncSummary{DryRun: o.DryRun, Started: store.Time(m.now())}
	known, err := m.directoryAccounts(ctx)
	if err != nil {
		return sum, err
	}
	res, err := m.syncEntries(ctx, o, known, &sum)
	if err != nil {
		m.metrics.syncRuns.WithLabelValues("error").Inc()
		return sum, err
	}

	// Accounts the directory no longer lists.
	var gone []User
	for ext, u := range known {
		if !res.seen[ext] && !u.Disabled {
			gone = append(gone, u)
		}
	}
	if len(gone) > 0 && sum.Seen == 0 {
		m.metrics.syncRuns.WithLabelValues("error").Inc()
		return sum, fmt.Errorf("the directory returned no users; refusing to disable %d accounts (check sso.ldap.base_dn and user_filter)", len(gone))
	}
	sum.Disabled += len(gone)
	if !o.DryRun {
		if len(gone) > 0 {
			ids := make([]int64, len(gone))
			for i, u := range gone {
				ids[i] = u.ID
			}
			if _, err := m.store.DisableMissingDirectoryUsers(ctx, ids, "removed from directory", m.now()); err != nil {
				return sum, fmt.Errorf("disable removed accounts: %w", err)
			}
		}
		for _, u := range append(gone, res.newlyDisabled...) {
			m.endSessions(ctx, u.ID, "account disabled")
			m.publishUserChanged(ctx, u.ID, "disabled", true)
		}
		for gid, members := range res.members {
			if err := m.store.SetGroupMembers(ctx, gid, members); err != nil {
				return sum, fmt.Errorf("group members: %w", err)
			}
		}
	}
	sum.Finished = m.now().UTC()
	m.metrics.syncRuns.WithLabelValues("ok").Inc()
	for outcome, n := range map[string]int{"created": sum.Created, "updated": sum.Updated, "unchanged": sum.Unchanged, "disabled": sum.Disabled, "errors": sum.Errors} {
		m.metrics.syncUsers.WithLabelValues(outcome).Set(float64(n))
	}
	m.log.Info("directory sync finished", "dry_run", o.DryRun, "groups", sum.Groups, "seen", sum.Seen, "created", sum.Created,
		"updated", sum.Updated, "unchanged", sum.Unchanged, "disabled", sum.Disabled, "errors", sum.Errors,
		"took", sum.Finished.Sub(sum.Started).Round(time.Millisecond))
	if !o.DryRun {
		payload, _ := json.Marshal(sum)
		if err := m.bus.Publish(ctx, bus.Event{Topic: TopicDirectorySynced, Key: "directory", Payload: payload}); err != nil {
			m.log.Error("publish directory sync", "err", err)
		}
	}
	return sum, nil
}

type syncResult struct {
	seen          map[string]bool
	members       map[int64][]int64
	newlyDisabled []User
}

func (m *Module) syncEntries(ctx context.Context, o SyncOptions, known map[string]User, sum *SyncSummary) (syncResult, error) {
	res := syncResult{seen: map[string]bool{}, members: map[int64][]int64{}}
	groupIDs := map[string]int64{} // normalised DN -> id
	err := m.dir.Groups(ctx, func(g DirectoryGroup) error {
		sum.Groups++
		if o.DryRun {
			return nil
		}
		id, _, err := m.store.UpsertGroup(ctx, g, m.now())
		if err != nil {
			return fmt.Errorf("group %s: %w", g.DN, err)
		}
		groupIDs[normDN(g.DN)] = id
		res.members[id] = nil // a group with no members left is emptied
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("read groups: %w", err)
	}

	err = m.dir.Users(ctx, func(du DirectoryUser) error {
		if du.ExternalID == "" {
			sum.Errors++
			m.log.Warn("directory entry without a stable id skipped", "dn", du.DN)
			return m.tooManyErrors(sum)
		}
		sum.Seen++
		res.seen[du.ExternalID] = true
		if o.Progress != nil {
			o.Progress(sum.Seen, len(known))
		}
		old, existed := known[du.ExternalID]
		if o.DryRun {
			switch {
			case !existed:
				sum.Created++
			case wouldChange(old, du, m.directoryRole(du)):
				sum.Updated++
			default:
				sum.Unchanged++
			}
			if du.Disabled && (!existed || !old.Disabled) {
				sum.Disabled++
			}
			return nil
		}
		result, id, err := m.store.UpsertDirectoryUser(ctx, du, m.directoryRole(du), m.now())
		if err != nil {
			sum.Errors++
			m.log.Warn("directory account not stored", "dn", du.DN, "login", du.Login, "err", err)
			return m.tooManyErrors(sum)
		}
		switch result {
		case UpsertCreated:
			sum.Created++
			m.publishUserChanged(ctx, id, "created", du.Disabled)
		case UpsertUpdated:
			sum.Updated++
			if !du.Disabled {
				m.publishUserChanged(ctx, id, "updated", false)
			}
		default:
			sum.Unchanged++
		}
		if du.Disabled && (!existed || !old.Disabled) {
			sum.Disabled++
			if existed {
				res.newlyDisabled = append(res.newlyDisabled, old)
			}
		}
		for _, g := range du.Groups {
			if gid, ok := groupIDs[normDN(g)]; ok {
				res.members[gid] = append(res.members[gid], id)
			}
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("read users: %w", err)
	}
	return res, nil
}

func (m *Module) tooManyErrors(sum *SyncSummary) error {
	if sum.Errors > 20 && float64(sum.Errors) > maxSyncErrorShare*float64(sum.Seen+sum.Errors) {
		return fmt.Errorf("%d of %d entries failed; stopping before anything is disabled", sum.Errors, sum.Seen+sum.Errors)
	}
	return nil
}

// wouldChange tells a dry run whether an upsert would change the account.
func wouldChange(old User, du DirectoryUser, role Role) bool {
	phones := make([]string, 0, len(du.Phones))
	for _, p := range du.Phones {
		if n, err := NormalizePhone(p.Number); err == nil {
			phones = append(phones, n+"/"+string(p.Kind))
		}
	}
	oldPhones := make([]string, 0, len(old.Phones))
	for _, p := range old.Phones {
		oldPhones = append(oldPhones, p.Number+"/"+string(p.Kind))
	}
	slices.Sort(phones)
	slices.Sort(oldPhones)
	return old.Login != du.Login || old.DisplayName != du.DisplayName || old.Email != du.Email ||
		old.Department != du.Department || old.Title != du.Title || old.Disabled != (du.Disabled || old.DisabledLocally) ||
		(role != "" && old.Role != role) || old.DN != du.DN || !slices.Equal(phones, oldPhones)
}

// directoryAccounts loads every directory-sourced account by external id.
func (m *Module) directoryAccounts(ctx context.Context) (map[string]User, error) {
	known := map[string]User{}
	var after int64
	for {
		page, err := m.store.ListUsers(ctx, ListUsersOptions{After: after, Limit: 500, IncludeDisabled: true, Source: SourceLDAP})
		if err != nil {
			return nil, fmt.Errorf("list directory accounts: %w", err)
		}
		for _, u := range page {
			known[u.ExternalID] = u
		}
		if len(page) < 500 {
			return known, nil
		}
		after = page[len(page)-1].ID
	}
}

// endSessions revokes every session of a user and tells every node.
func (m *Module) endSessions(ctx context.Context, userID int64, reason string) {
	ids, err := m.store.RevokeUserSessions(ctx, userID, reason, m.now())
	if err != nil {
		m.log.Error("revoke sessions", "user_id", userID, "err", err)
		return
	}
	for _, id := range ids {
		m.metrics.revoked.WithLabelValues(reasonLabel(reason)).Inc()
		m.publishRevoked(ctx, id, userID, reason, m.now())
	}
}
