package addressbook

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"unicode"
)

// index is the node's in-memory search index over every contact, kept in
// step with the database through ab_changes. Searching 100 000 contacts
// is a scan of short folded strings: a few milliseconds, with no query
// on the database.
type index struct {
	mu      sync.RWMutex
	entries []*entry           // scanned by Search
	pos     map[int64]int      // contact id -> position in entries
	byPhone map[string][]int64 // normalised number -> contact ids
}

// entry is one contact as the index holds it.
type entry struct {
	c Contact
	// name is the folded display name; text the folded searchable text
	// (names, organisation, department, title, e-mails, messengers) and
	// its Latin transliteration.
	name, text string
	numbers    []string
}

func newIndex() *index {
	return &index{pos: map[int64]int{}, byPhone: map[string][]int64{}}
}

func newEntry(c Contact) *entry {
	parts := []string{c.DisplayName, c.FirstName, c.MiddleName, c.LastName, c.Organization, c.Department, c.Title}
	parts = append(parts, c.Emails...)
	for _, m := range c.Messengers {
		parts = append(parts, m.Handle)
	}
	text := fold(strings.Join(parts, " "))
	if lat := translit(text); lat != text {
		text += " " + lat
	}
	e := &entry{c: c, name: fold(c.DisplayName), text: text}
	for _, p := range c.Phones {
		e.numbers = append(e.numbers, p.Normalized)
	}
	return e
}

// put adds or replaces a contact.
func (x *index) put(c Contact) {
	e := newEntry(c)
	x.mu.Lock()
	defer x.mu.Unlock()
	if i, ok := x.pos[c.ID]; ok {
		x.unphone(x.entries[i])
		x.entries[i] = e
	} else {
		x.pos[c.ID] = len(x.entries)
		x.entries = append(x.entries, e)
	}
	for _, n := range e.numbers {
		x.byPhone[n] = append(x.byPhone[n], c.ID)
	}
}

// remove drops a contact; a no-op when absent.
func (x *index) remove(id int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	i, ok := x.pos[id]
	if !ok {
		return
	}
	x.unphone(x.entries[i])
	last := len(x.entries) - 1
	x.entries[i] = x.entries[last]
	x.pos[x.entries[i].c.ID] = i
	x.entries = x.entries[:last]
	delete(x.pos, id)
}

func (x *index) unphone(e *entry) {
	for _, n := range e.numbers {
		ids := slices.DeleteFunc(x.byPhone[n], func(id int64) bool { return id == e.c.ID })
		if len(ids) == 0 {
			delete(x.byPhone, n)
		} else {
			x.byPhone[n] = ids
		}
	}
}

func (x *index) get(id int64) (Contact, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	i, ok := x.pos[id]
	if !ok {
		return Contact{}, false
	}
	return x.entries[i].c, true
}

func (x *index) size() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.entries)
}

// visible reports whether userID may see c: directory contacts everyone,
// personal ones their owner.
func visible(c Contact, userID int64) bool { return c.OwnerID == 0 || c.OwnerID == userID }

// byNumber returns the contacts userID sees with exactly that normalised
// number, personal ones first.
func (x *index) byNumber(userID int64, number string) []Contact {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var out []Contact
	for _, id := range x.byPhone[number] {
		if c := x.entries[x.pos[id]].c; visible(c, userID) {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b Contact) int {
		return cmp.Or(cmp.Compare(b.OwnerID, a.OwnerID), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// Query selects what Search returns.
type Query struct {
	// Text is any part of a name, organisation, department, title,
	// e-mail or number; empty lists everything (by name).
	Text string
	// Personal limits to the user's personal contacts; Directory to the
	// shared ones; neither means both.
	Personal, Directory bool
	// Favorites limits to the user's favourites.
	Favorites bool
	// Department limits to one department (folded, exact).
	Department string
	Limit      int
	Offset     int
}

// Search bounds.
const (
	DefaultLimit  = 20
	MaxLimit      = 200
	MaxQueryRunes = 100
	maxOffset     = 10_000
)

type hit struct {
	e     *entry
	score int
}

// search returns the contacts userID sees that match q, best first (see
// score), and how many matched in all. favorites are the user's starred
// contact ids.
func (x *index) search(userID int64, q Query, favorites map[int64]bool) ([]Contact, int) {
	tokens := strings.FieldsFunc(fold(q.Text), func(r rune) bool {
		return unicode.IsSpace(r) || r == ',' || r == ';'
	})
	digits := ""
	if d := queryDigits(q.Text); len(d) >= 2 {
		digits = d
	}
	dept := fold(q.Department)
	x.mu.RLock()
	var hits []hit
	for _, e := range x.entries {
		c := &e.c
		switch {
		case !visible(*c, userID),
			q.Personal && !q.Directory && c.OwnerID == 0,
			q.Directory && !q.Personal && c.OwnerID != 0,
			q.Favorites && !favorites[c.ID],
			dept != "" && fold(c.Department) != dept:
			continue
		}
		s := score(e, tokens, digits)
		if s <= 0 && (len(tokens) > 0 || digits != "") {
			continue
		}
		if favorites[c.ID] {
			s += 5
		}
		hits = append(hits, hit{e, s})
	}
	x.mu.RUnlock()
	slices.SortFunc(hits, func(a, b hit) int {
		return cmp.Or(cmp.Compare(b.score, a.score), cmp.Compare(a.e.name, b.e.name), cmp.Compare(a.e.c.ID, b.e.c.ID))
	})
	total := len(hits)
	from := min(q.Offset, total)
	to := min(from+q.Limit, total)
	out := make([]Contact, 0, to-from)
	for _, h := range hits[from:to] {
		c := h.e.c
		c.Favorite = favorites[c.ID]
		out = append(out, c)
	}
	return out, total
}

// score rates how well an entry matches: a number query by its numbers
// (whole number 100, its end — an extension or the last digits — 60,
// inside 30); text tokens must each occur somewhere (a whole word 10, a
// word's start 6, inside a word 2, in the name twice that), else 0.
func score(e *entry, tokens []string, digits string) int {
	if digits != "" {
		best := 0
		alt := ""
		if digits[0] == '8' {
			alt = "7" + digits[1:] // 8 495… typed as dialled
		}
		for _, n := range e.numbers {
			for _, d := range []string{digits, alt} {
				switch {
				case d == "":
				case n == d:
					best = max(best, 100)
				case strings.HasSuffix(n, d):
					best = max(best, 60)
				case strings.Contains(n, d):
					best = max(best, 30)
				}
			}
		}
		if best > 0 || isNumberQuery(tokens) {
			return best
		}
	}
	total := 0
	for _, t := range tokens {
		s := tokenScore(e.text, t)
		if s == 0 {
			return 0
		}
		if strings.Contains(e.name, t) {
			s *= 2
		}
		total += s
	}
	return total
}

// isNumberQuery: every token is digits and number punctuation.
func isNumberQuery(tokens []string) bool {
	for _, t := range tokens {
		if queryDigits(t) == "" && strings.Trim(t, "+-().") != "" {
			return false
		}
	}
	return true
}

func tokenScore(text, t string) int {
	best := 0
	for i := 0; ; {
		j := strings.Index(text[i:], t)
		if j < 0 {
			return best
		}
		at := i + j
		end := at + len(t)
		startsWord := at == 0 || text[at-1] == ' ' || text[at-1] == '@' || text[at-1] == '.' || text[at-1] == '-'
		endsWord := end == len(text) || text[end] == ' ' || text[end] == '@' || text[end] == '.' || text[end] == '-'
		switch {
		case startsWord && endsWord:
			return 10
		case startsWord:
			best = max(best, 6)
		default:
			best = max(best, 2)
		}
		i = at + 1
	}
}
