package stream

import "sync"

// hub is this node's index of open connections by user. The bus handlers
// look connections up here; connections register before they read their
// backlog, so no event committed after that can be missed (see conn.run).
type hub struct {
	met *metrics

	mu      sync.RWMutex
	running bool
	byUser  map[int64]map[*conn]struct{}
	n       int
}

func newHub(met *metrics) *hub {
	return &hub{met: met, byUser: make(map[int64]map[*conn]struct{})}
}

// open lets connections register.
func (h *hub) open() {
	h.mu.Lock()
	h.running = true
	h.mu.Unlock()
}

// add registers c, or reports false when the hub has been shut.
func (h *hub) add(c *conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.running {
		return false
	}
	set := h.byUser[c.userID]
	if set == nil {
		set = make(map[*conn]struct{})
		h.byUser[c.userID] = set
	}
	set[c] = struct{}{}
	h.n++
	h.met.connections.Inc()
	return true
}

// remove unregisters c; it is a no-op for a connection not registered.
func (h *hub) remove(c *conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.byUser[c.userID]
	if _, ok := set[c]; !ok {
		return
	}
	delete(set, c)
	if len(set) == 0 {
		delete(h.byUser, c.userID)
	}
	h.n--
	h.met.connections.Dec()
}

// each calls fn for every connection of userID. fn must not block: it
// runs under the hub's read lock, on a bus worker.
func (h *hub) each(userID int64, fn func(*conn)) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for c := range h.byUser[userID] {
		fn(c)
	}
}

func (h *hub) count() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.n
}

// shut refuses further registrations and returns the connections open now.
func (h *hub) shut() []*conn {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.running = false
	var out []*conn
	for _, set := range h.byUser {
		for c := range set {
			out = append(out, c)
		}
	}
	return out
}
