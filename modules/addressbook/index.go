package addressbook

import (
	"cmp"
	"container/heap"
	"encoding/json"
	"slices"
	"sort"
	"strings"
	"sync"
	"unicode"
)

// index is the node's in-memory search index over every contact, kept in
// step with the database through ab_changes.
//
// Searching scans, but not contact by contact: every distinct word of
// every contact is laid end to end once in one string (words) with the
// contacts that have it (postings), and the numbers in another string
// (digits). A query word is one strings.Index run over the words (a few
// hundred thousand distinct words even for 100 000 contacts: a couple of
// megabytes, vectorised on amd64), which finds it as a whole word, a
// word's start or inside a word, and each matching word hands over its
// contacts. The layout is rebuilt after changes (put and remove mark it
// stale; the module rebuilds after applying a batch of changes, and a
// search rebuilds it if it is still stale).
type index struct {
	mu      sync.RWMutex
	entries []*entry           // in no particular order
	pos     map[int64]int      // contact id -> position in entries
	byPhone map[string][]int64 // normalised number -> contact ids

	stale bool
	// The layout, valid while !stale. order is entries sorted by name
	// (the order of equal scores and of a list without query). words
	// holds every distinct word of every contact once, separated by 0,
	// wordAt where each starts, postings[w] the contacts that have word
	// w (rank<<1, | 1 when in the name). digits holds the numbers of the
	// entries in order, digitsAt[i] where the i-th's start.
	order    []*entry
	words    string
	wordAt   []int
	postings [][]int32
	digits   string
	digitsAt []int
}

// entry is one contact as the index holds it: what filters and ranking
// need, and the contact's JSON, decoded only for results.
type entry struct {
	id, owner int64
	name      string // folded display name
	dept      string // folded department
	search    string // folded searchable text after the name, with its transliteration
	numbers   []string
	raw       []byte // the Contact's JSON
	avatarKey string // not in the JSON
	rank      int    // position in order
}

func newIndex() *index {
	return &index{pos: map[int64]int{}, byPhone: map[string][]int64{}}
}

func newEntry(c Contact) *entry {
	name := fold(c.DisplayName)
	parts := []string{c.FirstName, c.MiddleName, c.LastName, c.Organization, c.Department, c.Title}
	parts = append(parts, c.Emails...)
	for _, m := range c.Messengers {
		parts = append(parts, m.Handle)
	}
	rest := fold(strings.Join(parts, " "))
	if lat := translit(name + " " + rest); lat != name+" "+rest {
		rest += " " + lat
	}
	raw, _ := json.Marshal(c) // a Contact always encodes
	e := &entry{id: c.ID, owner: c.OwnerID, name: name, dept: fold(c.Department), search: rest, raw: raw, avatarKey: c.avatarKey}
	for _, p := range c.Phones {
		e.numbers = append(e.numbers, p.Normalized)
	}
	return e
}

func (e *entry) contact() Contact {
	var c Contact
	_ = json.Unmarshal(e.raw, &c) // encoded by newEntry
	c.avatarKey = e.avatarKey
	return c
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
	x.stale = true
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
	x.pos[x.entries[i].id] = i
	x.entries = x.entries[:last]
	delete(x.pos, id)
	x.stale = true
}

func (x *index) unphone(e *entry) {
	for _, n := range e.numbers {
		ids := slices.DeleteFunc(x.byPhone[n], func(id int64) bool { return id == e.id })
		if len(ids) == 0 {
			delete(x.byPhone, n)
		} else {
			x.byPhone[n] = ids
		}
	}
}

// rebuild lays the entries out again if they changed.
func (x *index) rebuild() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.rebuildLocked()
}

func (x *index) rebuildLocked() {
	if !x.stale {
		return
	}
	order := slices.Clone(x.entries)
	slices.SortFunc(order, func(a, b *entry) int { return cmp.Or(strings.Compare(a.name, b.name), cmp.Compare(a.id, b.id)) })
	ids := map[string]int32{}
	var postings [][]int32
	var words, digits strings.Builder
	var wordAt []int
	digitsAt := make([]int, len(order))
	add := func(text string, rank int, inName int32) {
		for _, w := range strings.FieldsFunc(text, isWordBreak) {
			id, ok := ids[w]
			if !ok {
				id = int32(len(postings))
				ids[w] = id
				postings = append(postings, nil)
				wordAt = append(wordAt, words.Len())
				words.WriteString(w)
				words.WriteByte(0)
			}
			p := int32(rank)<<1 | inName
			ps := postings[id]
			// A word twice in one contact: keep one posting, the name's.
			if n := len(ps); n > 0 && ps[n-1]>>1 == int32(rank) {
				ps[n-1] |= inName
				continue
			}
			postings[id] = append(ps, p)
		}
	}
	for i, e := range order {
		e.rank = i
		add(e.name, i, 1)
		add(e.search, i, 0)
		digitsAt[i] = digits.Len()
		for _, n := range e.numbers {
			digits.WriteString(n)
			digits.WriteByte(0)
		}
	}
	x.order, x.words, x.wordAt, x.postings = order, words.String(), wordAt, postings
	x.digits, x.digitsAt = digits.String(), digitsAt
	x.stale = false
}

// isWordBreak separates the words of folded text (and of a query).
func isWordBreak(r rune) bool {
	switch r {
	case '@', '.', '-', '(', ')', '"', '\'', ',', ';', ':', '/', '«', '»', '_':
		return true
	}
	return unicode.IsSpace(r) || unicode.IsControl(r)
}

func (x *index) get(id int64) (Contact, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	i, ok := x.pos[id]
	if !ok {
		return Contact{}, false
	}
	return x.entries[i].contact(), true
}

func (x *index) size() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.entries)
}

// visible reports whether userID may see a contact of owner: directory
// contacts everyone, personal ones their owner.
func visible(owner, userID int64) bool { return owner == 0 || owner == userID }

// byNumber returns the contacts userID sees with exactly that normalised
// number, personal ones first.
func (x *index) byNumber(userID int64, number string) []Contact {
	x.mu.RLock()
	var es []*entry
	for _, id := range x.byPhone[number] {
		if e := x.entries[x.pos[id]]; visible(e.owner, userID) {
			es = append(es, e)
		}
	}
	x.mu.RUnlock()
	slices.SortFunc(es, func(a, b *entry) int { return cmp.Or(cmp.Compare(b.owner, a.owner), cmp.Compare(a.id, b.id)) })
	out := make([]Contact, len(es))
	for i, e := range es {
		out[i] = e.contact()
	}
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
	maxTokens     = 8
)

// Scores (see search).
const (
	scoreWord       = 10
	scoreWordStart  = 6
	scoreInside     = 2
	scoreNumber     = 100
	scoreNumberEnd  = 60
	scoreNumberPart = 30
	scoreFavorite   = 5
)

// search returns the contacts userID sees that match q, best first, and
// how many matched in all. favorites are the user's starred contact ids.
//
// Text words must each occur somewhere in a contact (a whole word
// scores 10, a word's start 6, the inside of a word 2; in the name twice
// that); a query that reads as a number matches numbers instead (the
// whole number 100, its end — an extension, the last digits — 60, inside
// 30), with 8… also tried as 7…. Favourites get 5 more; equal scores go
// by name.
func (x *index) search(userID int64, q Query, favorites map[int64]bool) ([]Contact, int) {
	x.mu.RLock()
	if x.stale {
		x.mu.RUnlock()
		x.rebuild()
		x.mu.RLock()
	}
	defer x.mu.RUnlock()

	tokens := strings.FieldsFunc(fold(q.Text), isWordBreak)
	if len(tokens) > maxTokens {
		tokens = tokens[:maxTokens]
	}
	dept := fold(q.Department)
	keep := func(e *entry) bool {
		switch {
		case !visible(e.owner, userID),
			q.Personal && !q.Directory && e.owner == 0,
			q.Directory && !q.Personal && e.owner != 0,
			q.Favorites && !favorites[e.id],
			dept != "" && e.dept != dept:
			return false
		}
		return true
	}

	var acc *accum // the query's scores; nil lists all
	switch digits := queryDigits(q.Text); {
	case len(tokens) == 0:
	case len(digits) >= 2 && isNumberQuery(tokens):
		acc = x.numberScores(digits)
	default:
		acc = x.textScores(tokens)
	}

	top := &hitHeap{}
	want := q.Offset + q.Limit
	total := 0
	consider := func(e *entry, s int) {
		if !keep(e) {
			return
		}
		total++
		if favorites[e.id] {
			s += scoreFavorite
		}
		h := hit{e: e, score: s}
		if top.Len() < want {
			heap.Push(top, h)
		} else if want > 0 && better(h, (*top)[0]) {
			(*top)[0] = h
			heap.Fix(top, 0)
		}
	}
	if acc == nil {
		for _, e := range x.order {
			consider(e, 0)
		}
	} else {
		for _, rank := range acc.touched {
			if acc.mask[rank] == acc.full {
				consider(x.order[rank], int(acc.score[rank]))
			}
		}
		acc.release()
	}
	hits := make([]hit, top.Len())
	for i := len(hits) - 1; i >= 0; i-- {
		hits[i] = heap.Pop(top).(hit)
	}
	if q.Offset >= len(hits) {
		return []Contact{}, total
	}
	out := make([]Contact, 0, len(hits)-q.Offset)
	for _, h := range hits[q.Offset:] {
		c := h.e.contact()
		c.Favorite = favorites[c.ID]
		out = append(out, c)
	}
	return out, total
}

// accum gathers a query's scores by rank in arrays (maps are far slower
// for queries that hit most of the directory); pooled.
type accum struct {
	score   []int32
	mask    []uint8 // bit i: token i matched
	cur     []int32 // the current token's best score, by rank
	touched []int32 // ranks with a score, for the reset
	curHit  []int32 // ranks the current token hit
	full    uint8
}

var accums sync.Pool

func (x *index) accum(tokens int) *accum {
	n := len(x.order)
	a, _ := accums.Get().(*accum)
	if a == nil || len(a.score) < n {
		a = &accum{score: make([]int32, n), mask: make([]uint8, n), cur: make([]int32, n)}
	}
	a.touched, a.curHit = a.touched[:0], a.curHit[:0]
	a.full = uint8(1)<<tokens - 1
	return a
}

// hit notes an occurrence of the current token in rank with score s.
func (a *accum) hit(rank int, s int32) {
	if a.cur[rank] == 0 {
		a.curHit = append(a.curHit, int32(rank))
	}
	a.cur[rank] = max(a.cur[rank], s)
}

// endToken adds the current token (number ti) to the totals.
func (a *accum) endToken(ti int) {
	for _, r := range a.curHit {
		if a.mask[r] == 0 {
			a.touched = append(a.touched, r)
		}
		a.mask[r] |= uint8(1) << ti
		a.score[r] += a.cur[r]
		a.cur[r] = 0
	}
	a.curHit = a.curHit[:0]
}

func (a *accum) release() {
	for _, r := range a.touched {
		a.score[r], a.mask[r] = 0, 0
	}
	accums.Put(a)
}

// textScores finds every token in the text layout; a contact matches
// when it has them all (acc.full).
func (x *index) textScores(tokens []string) *accum {
	// The longest word first: it is usually the rarest, and later words
	// only count for contacts the earlier ones matched.
	tokens = slices.Clone(tokens)
	slices.SortStableFunc(tokens, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	acc := x.accum(len(tokens))
	n := len(x.wordAt)
	for ti, t := range tokens {
		need := uint8(1)<<ti - 1 // the earlier tokens
		w := 0
		for i := 0; ; {
			j := strings.Index(x.words[i:], t)
			if j < 0 {
				break
			}
			at := i + j
			// Occurrences come in order: move to the word holding this one.
			for w+1 < n && x.wordAt[w+1] <= at {
				w++
			}
			s := scoreInside
			end := at + len(t)
			switch start := at == x.wordAt[w]; {
			case start && x.words[end] == 0:
				s = scoreWord
			case start:
				s = scoreWordStart
			}
			for _, p := range x.postings[w] {
				rank := int(p >> 1)
				if acc.mask[rank]&need != need {
					continue // an earlier word missed this contact
				}
				acc.hit(rank, int32(s<<(p&1))) // in the name: twice
			}
			// The next occurrence in another word.
			if w+1 < n {
				i = x.wordAt[w+1]
			} else {
				break
			}
		}
		acc.endToken(ti)
	}
	return acc
}

// numberScores finds the digits (and 8… as 7…) in the numbers layout.
func (x *index) numberScores(digits string) *accum {
	acc := x.accum(1)
	for _, d := range []string{digits, alt8(digits)} {
		if d == "" {
			continue
		}
		for i := 0; ; {
			j := strings.Index(x.digits[i:], d)
			if j < 0 {
				break
			}
			at := i + j
			i = at + 1
			rank := sort.SearchInts(x.digitsAt, at+1) - 1
			starts := at == 0 || x.digits[at-1] == 0
			ends := at+len(d) == len(x.digits) || x.digits[at+len(d)] == 0
			s := scoreNumberPart
			switch {
			case starts && ends:
				s = scoreNumber
			case ends:
				s = scoreNumberEnd
			}
			acc.hit(rank, int32(s))
		}
	}
	acc.endToken(0)
	return acc
}

// alt8 is a number typed with the Russian trunk prefix 8 as stored (7…).
func alt8(d string) string {
	if d[0] == '8' {
		return "7" + d[1:]
	}
	return ""
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

type hit struct {
	e     *entry
	score int
}

// better orders hits: higher score, then by name (rank).
func better(a, b hit) bool {
	if a.score != b.score {
		return a.score > b.score
	}
	return a.e.rank < b.e.rank
}

// hitHeap keeps the best hits seen, the worst on top.
type hitHeap []hit

func (h hitHeap) Len() int           { return len(h) }
func (h hitHeap) Less(i, j int) bool { return better(h[j], h[i]) }
func (h hitHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *hitHeap) Push(v any)        { *h = append(*h, v.(hit)) }
func (h *hitHeap) Pop() any {
	old := *h
	v := old[len(old)-1]
	*h = old[:len(old)-1]
	return v
}
