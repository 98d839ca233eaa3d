package auth

import (
	"sync"
	"time"
)

// Revocations is the in-memory set of revoked session ids. The wiring feeds
// it from the bus (topic "sso.session.revoked"), so every node stops
// accepting a session's tokens within moments of its revocation, without a
// database lookup per request.
//
// An entry is kept for keepFor, which must be at least the longest access
// token lifetime plus the verifier's leeway: after that every token of the
// session has expired anyway. Expired entries are swept lazily on Revoke,
// so the set holds at most the revocations of the last two keepFor periods.
type Revocations struct {
	keepFor time.Duration
	now     func() time.Time
	closed  chan struct{} // handed out by Done for ids already revoked

	mu        sync.RWMutex
	until     map[string]time.Time // session id -> when the entry may be forgotten
	waiters   map[string]map[uint64]chan struct{}
	nextID    uint64
	lastSweep time.Time
}

// NewRevocations returns an empty set whose entries are kept for keepFor.
// now is the clock; nil means time.Now. It panics when keepFor is not
// positive: such a set would forget revocations at once.
func NewRevocations(keepFor time.Duration, now func() time.Time) *Revocations {
	if keepFor <= 0 {
		panic("auth: NewRevocations with a non-positive keepFor")
	}
	if now == nil {
		now = time.Now
	}
	closed := make(chan struct{})
	close(closed)
	return &Revocations{
		keepFor:   keepFor,
		now:       now,
		closed:    closed,
		until:     make(map[string]time.Time),
		waiters:   make(map[string]map[uint64]chan struct{}),
		lastSweep: now(),
	}
}

// Revoke marks sessionID revoked and wakes everyone waiting on Done for it.
// Revoking again extends the entry; the bus may deliver an event twice.
func (r *Revocations) Revoke(sessionID string) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if until := now.Add(r.keepFor); until.After(r.until[sessionID]) {
		r.until[sessionID] = until
	}
	for _, ch := range r.waiters[sessionID] {
		close(ch)
	}
	delete(r.waiters, sessionID)
	if now.Sub(r.lastSweep) >= r.keepFor {
		for id, until := range r.until {
			if !now.Before(until) {
				delete(r.until, id)
			}
		}
		r.lastSweep = now
	}
}

// IsRevoked reports whether sessionID was revoked within keepFor.
func (r *Revocations) IsRevoked(sessionID string) bool {
	r.mu.RLock()
	until, ok := r.until[sessionID]
	r.mu.RUnlock()
	return ok && r.now().Before(until)
}

// Done returns a channel that is closed when sessionID is revoked (already
// closed if it is), so a long-lived connection can select on it and end
// as soon as its session is. The returned func unregisters the channel;
// call it when the connection ends, or the registration is kept until the
// session is revoked. It is safe to call more than once.
func (r *Revocations) Done(sessionID string) (<-chan struct{}, func()) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if until, ok := r.until[sessionID]; ok && now.Before(until) {
		return r.closed, func() {}
	}
	r.nextID++
	id, ch := r.nextID, make(chan struct{})
	set := r.waiters[sessionID]
	if set == nil {
		set = make(map[uint64]chan struct{})
		r.waiters[sessionID] = set
	}
	set[id] = ch
	return ch, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		// After Revoke the set is gone and the channel closed: nothing to do.
		set, ok := r.waiters[sessionID]
		if !ok {
			return
		}
		delete(set, id)
		if len(set) == 0 {
			delete(r.waiters, sessionID)
		}
	}
}
