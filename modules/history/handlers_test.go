package history_test

import (
	"bytes"
	"encoding/csv"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/elph-server/elph/modules/history"
	"github.com/elph-server/elph/platform/httpx"
	"github.com/elph-server/elph/platform/store/storetest"
)

type listJSON struct {
	Calls      []history.Call `json:"calls"`
	NextCursor string         `json:"next_cursor"`
}

// seed gives alice seven records an hour apart (c-0 oldest … c-6 newest)
// and bob one.
func seed(t *testing.T, e *env) {
	t.Helper()
	type leg struct {
		dir, peer, name, cause string
		answered               bool
	}
	legs := []leg{
		{"inbound", "+74951000000", "Иван Петров", "normal", true},
		{"inbound", "+74951000001", "Ёлкин Семён", "no_answer", false},
		{"outbound", "+74951000002", "Office, Moscow", "busy", false},
		{"inbound", "+74951000003", "", "cancelled", false},
		{"outbound", "1002", "Bob", "normal", true},
		{"inbound", "+74951000005", `Quote "Q" Ltd`, "rejected", false},
		{"inbound", "+74951000006", "", "no_answer", false},
	}
	for i, l := range legs {
		call := "c-" + strconv.Itoa(i)
		at := time.Duration(i) * time.Hour
		evs := []event{started(call, alice, l.dir, l.peer, l.name, at)}
		if l.answered {
			evs = append(evs, answered(call, alice, at+2*time.Second))
		}
		evs = append(evs, ended(call, alice, l.cause, at+32*time.Second))
		e.apply(t, evs...)
	}
	e.apply(t, started("c-bob", bob, "inbound", "1001", "Alice", 0), ended("c-bob", bob, "no_answer", time.Minute))
}

func callIDs(calls []history.Call) []string {
	var ids []string
	for _, c := range calls {
		ids = append(ids, c.CallID)
	}
	return ids
}

func TestListPagingAndFilters(t *testing.T) {
	forEachDialect(t, envOptions{}, func(t *testing.T, e *env) {
		seed(t, e)

		// Paging: newest first, three at a time, every record once.
		var got []string
		path := "/v1/calls?limit=3"
		for pages := 0; ; pages++ {
			if pages > 3 {
				t.Fatal("paging does not end")
			}
			var l listJSON
			r := e.do(t, http.MethodGet, path, alice, "")
			r.wantStatus(t, http.StatusOK)
			r.decode(t, &l)
			got = append(got, callIDs(l.Calls)...)
			if l.NextCursor == "" {
				break
			}
			path = "/v1/calls?limit=3&cursor=" + url.QueryEscape(l.NextCursor)
		}
		if want := []string{"c-6", "c-5", "c-4", "c-3", "c-2", "c-1", "c-0"}; !slices.Equal(got, want) {
			t.Errorf("pages gave %v, want %v", got, want)
		}

		tests := []struct {
			query string
			want  []string
		}{
			{"direction=outbound", []string{"c-4", "c-2"}},
			{"result=missed", []string{"c-6", "c-3", "c-1"}},
			{"result=rejected&direction=inbound", []string{"c-5"}},
			{"peer=иван", []string{"c-0"}},
			{"peer=" + url.QueryEscape("ЕЛКИН"), []string{"c-1"}}, // ё matches е, any case
			{"peer=office,", []string{"c-2"}},
			{"peer=4951000", []string{"c-6", "c-5", "c-3", "c-2", "c-1", "c-0"}},
			{"peer=%25", nil}, // a literal %, not a wildcard
			{"from=" + url.QueryEscape(t0.Add(2*time.Hour).Format(time.RFC3339)) + "&to=" + url.QueryEscape(t0.Add(4*time.Hour).Format(time.RFC3339)), []string{"c-3", "c-2"}},
			{"result=missed&limit=2", []string{"c-6", "c-3"}},
		}
		for _, tt := range tests {
			t.Run(tt.query, func(t *testing.T) {
				var l listJSON
				r := e.do(t, http.MethodGet, "/v1/calls?"+tt.query, alice, "")
				r.wantStatus(t, http.StatusOK)
				r.decode(t, &l)
				if got := callIDs(l.Calls); !slices.Equal(got, tt.want) {
					t.Errorf("got %v, want %v", got, tt.want)
				}
			})
		}

		for _, q := range []string{"direction=up", "result=great", "from=yesterday", "limit=-1", "limit=x", "cursor=garbage"} {
			t.Run("bad "+q, func(t *testing.T) {
				e.do(t, http.MethodGet, "/v1/calls?"+q, alice, "").wantError(t, http.StatusBadRequest, httpx.CodeBadRequest)
			})
		}
	})
}

func TestMissedCountAndSeen(t *testing.T) {
	forEachDialect(t, envOptions{}, func(t *testing.T, e *env) {
		seed(t, e) // alice: c-1, c-3, c-6 missed
		count := func(user int64) int {
			t.Helper()
			var c struct {
				Count int `json:"count"`
			}
			r := e.do(t, http.MethodGet, "/v1/calls/missed/count", user, "")
			r.wantStatus(t, http.StatusOK)
			r.decode(t, &c)
			return c.Count
		}
		if n := count(alice); n != 3 {
			t.Fatalf("alice has %d unseen missed calls, want 3", n)
		}
		if n := count(bob); n != 1 {
			t.Fatalf("bob has %d unseen missed calls, want 1", n)
		}

		upTo := e.record(t, alice, "c-3").ID
		var seen struct {
			Marked int64 `json:"marked"`
			Count  int   `json:"count"`
		}
		r := e.do(t, http.MethodPost, "/v1/calls/missed/seen", alice, `{"up_to_id":`+strconv.FormatInt(upTo, 10)+`}`)
		r.wantStatus(t, http.StatusOK)
		r.decode(t, &seen)
		if seen.Marked != 2 || seen.Count != 1 || count(alice) != 1 {
			t.Errorf("after marking up to c-3: %+v, count %d; want 2 marked, 1 left", seen, count(alice))
		}
		if !e.record(t, alice, "c-1").Seen || e.record(t, alice, "c-6").Seen {
			t.Error("seen flags: want c-1 seen and c-6 not")
		}
		// A duplicate event does not make a seen call unseen again.
		e.apply(t, ended("c-1", alice, "no_answer", time.Hour+32*time.Second))
		if !e.record(t, alice, "c-1").Seen {
			t.Error("a duplicate call.ended unmarked c-1")
		}

		r = e.do(t, http.MethodPost, "/v1/calls/missed/seen", alice, "")
		r.wantStatus(t, http.StatusOK)
		r.decode(t, &seen)
		if seen.Marked != 1 || seen.Count != 0 || count(alice) != 0 {
			t.Errorf("after marking all: %+v; want 1 marked, 0 left", seen)
		}
		if n := count(bob); n != 1 {
			t.Errorf("alice marking hers changed bob's count to %d", n)
		}
		e.do(t, http.MethodPost, "/v1/calls/missed/seen", alice, `{"up_to_id":-1}`).wantError(t, http.StatusBadRequest, httpx.CodeBadRequest)
		e.do(t, http.MethodPost, "/v1/calls/missed/seen", alice, `{"upto":1}`).wantError(t, http.StatusBadRequest, httpx.CodeBadRequest)
	})
}

func TestDeleteAndACL(t *testing.T) {
	forEachDialect(t, envOptions{}, func(t *testing.T, e *env) {
		e.apply(t,
			started("c-both", alice, "outbound", "1002", "Bob", 0),
			started("c-both", bob, "inbound", "1001", "Alice", 0),
			ended("c-both", alice, "no_answer", time.Minute),
			ended("c-both", bob, "no_answer", time.Minute),
		)
		mine := e.record(t, alice, "c-both")
		bobs := e.record(t, bob, "c-both")
		path := "/v1/calls/" + strconv.FormatInt(mine.ID, 10)

		// Someone else's record does not exist for bob.
		e.do(t, http.MethodGet, path, bob, "").wantError(t, http.StatusNotFound, httpx.CodeNotFound)
		e.do(t, http.MethodDelete, path, bob, "").wantError(t, http.StatusNotFound, httpx.CodeNotFound)
		e.do(t, http.MethodGet, path, 0, "").wantError(t, http.StatusUnauthorized, httpx.CodeUnauthorized)
		e.do(t, http.MethodGet, "/v1/calls", 0, "").wantError(t, http.StatusUnauthorized, httpx.CodeUnauthorized)
		e.do(t, http.MethodGet, "/v1/calls/abc", alice, "").wantError(t, http.StatusNotFound, httpx.CodeNotFound)
		var got history.Call
		r := e.do(t, http.MethodGet, path, alice, "")
		r.wantStatus(t, http.StatusOK)
		r.decode(t, &got)
		if got.ID != mine.ID || got.Result != "cancelled" {
			t.Errorf("GET own record: %+v", got)
		}

		e.do(t, http.MethodDelete, path, alice, "").wantStatus(t, http.StatusNoContent)
		e.do(t, http.MethodDelete, path, alice, "").wantError(t, http.StatusNotFound, httpx.CodeNotFound)
		e.do(t, http.MethodGet, path, alice, "").wantError(t, http.StatusNotFound, httpx.CodeNotFound)
		if calls := e.all(t, alice); len(calls) != 0 {
			t.Errorf("alice still lists %v", callIDs(calls))
		}
		// A late event does not bring the deleted record back.
		e.apply(t, answered("c-both", alice, 10*time.Second))
		if calls := e.all(t, alice); len(calls) != 0 {
			t.Errorf("a late event brought back %v", callIDs(calls))
		}
		// Bob's record of the same call stays.
		if got := e.record(t, bob, "c-both"); got.ID != bobs.ID || got.Result != "missed" {
			t.Errorf("bob's record after alice deleted hers: %+v", got)
		}
	})
}

func TestExportCSV(t *testing.T) {
	forEachDialect(t, envOptions{}, func(t *testing.T, e *env) {
		seed(t, e)
		e.apply(t, started("c-formula", alice, "inbound", "=1+1", `=HYPERLINK("http://x")`, 7*time.Hour))

		r := e.do(t, http.MethodGet, "/v1/calls/export.csv", alice, "")
		r.wantStatus(t, http.StatusOK)
		if ct := r.Header.Get("Content-Type"); ct != "text/csv; charset=utf-8" {
			t.Errorf("Content-Type %q", ct)
		}
		if cd := r.Header.Get("Content-Disposition"); cd != `attachment; filename="calls.csv"` {
			t.Errorf("Content-Disposition %q", cd)
		}
		body, ok := bytes.CutPrefix(r.Body, []byte("\xEF\xBB\xBF"))
		if !ok {
			t.Fatalf("no UTF-8 byte order mark: %q", r.Body[:min(len(r.Body), 10)])
		}
		if !bytes.HasSuffix(body, []byte("\r\n")) || bytes.Count(body, []byte("\r\n")) != 9 {
			t.Errorf("want 9 CRLF-terminated lines (header and 8 rows), got %q", body)
		}
		rows, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
		if err != nil {
			t.Fatalf("parse: %v", err)
		}
		header := []string{"id", "started_at", "direction", "result", "peer_number", "peer_name", "local_number",
			"ringing_at", "answered_at", "ended_at", "duration_seconds", "seen"}
		if !slices.Equal(rows[0], header) {
			t.Fatalf("header %q, want %q", rows[0], header)
		}
		byCall := map[string][]string{}
		for _, c := range e.all(t, alice) {
			for _, row := range rows[1:] {
				if row[0] == strconv.FormatInt(c.ID, 10) {
					byCall[c.CallID] = row
				}
			}
		}
		if len(byCall) != 8 || len(rows) != 9 {
			t.Fatalf("export has %d rows matching %d of alice's records, want 8", len(rows)-1, len(byCall))
		}
		checks := []struct {
			call  string
			col   int
			value string
		}{
			{"c-0", 5, "Иван Петров"},
			{"c-0", 3, "answered"},
			{"c-0", 10, "30"},
			{"c-0", 1, t0.Format(time.RFC3339)},
			{"c-0", 8, t0.Add(2 * time.Second).Format(time.RFC3339)},
			{"c-0", 4, "+74951000000"}, // a phone number is left as is
			{"c-2", 5, "Office, Moscow"},
			{"c-5", 5, `Quote "Q" Ltd`},
			{"c-1", 3, "missed"},
			{"c-1", 11, "false"},
			{"c-formula", 5, `'=HYPERLINK("http://x")`},
			{"c-formula", 4, "'=1+1"},
		}
		for _, c := range checks {
			if got := byCall[c.call][c.col]; got != c.value {
				t.Errorf("%s %s = %q, want %q", c.call, header[c.col], got, c.value)
			}
		}
		// RFC 4180 quoting on the wire.
		for _, raw := range []string{`"Office, Moscow"`, `"Quote ""Q"" Ltd"`} {
			if !bytes.Contains(body, []byte(raw)) {
				t.Errorf("body lacks %s", raw)
			}
		}

		// The filters apply; nobody else's records are in it.
		r = e.do(t, http.MethodGet, "/v1/calls/export.csv?result=missed", alice, "")
		r.wantStatus(t, http.StatusOK)
		rows, err = csv.NewReader(bytes.NewReader(bytes.TrimPrefix(r.Body, []byte("\xEF\xBB\xBF")))).ReadAll()
		if err != nil || len(rows) != 4 {
			t.Fatalf("missed export: %d rows, %v; want header and 3", len(rows), err)
		}
		r = e.do(t, http.MethodGet, "/v1/calls/export.csv", carol, "")
		r.wantStatus(t, http.StatusOK)
		if want := "\xEF\xBB\xBF" + "id,started_at,direction,result,peer_number,peer_name,local_number,ringing_at,answered_at,ended_at,duration_seconds,seen\r\n"; string(r.Body) != want {
			t.Errorf("carol's export %q, want only the header", r.Body)
		}
		e.do(t, http.MethodGet, "/v1/calls/export.csv?direction=x", alice, "").wantError(t, http.StatusBadRequest, httpx.CodeBadRequest)

		// Read in batches of 3: every record once, newest first; and cut
		// at the row limit.
		var newestFirst []string
		for _, c := range e.all(t, alice) {
			newestFirst = append(newestFirst, strconv.FormatInt(c.ID, 10))
		}
		for _, max := range []int{100, 6, 5} {
			history.SetExportLimits(e.mod, 3, max)
			r = e.do(t, http.MethodGet, "/v1/calls/export.csv", alice, "")
			r.wantStatus(t, http.StatusOK)
			rows, err = csv.NewReader(bytes.NewReader(bytes.TrimPrefix(r.Body, []byte("\xEF\xBB\xBF")))).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, row := range rows[1:] {
				ids = append(ids, row[0])
			}
			if want := newestFirst[:min(max, len(newestFirst))]; !slices.Equal(ids, want) {
				t.Errorf("batches of 3, limit %d: ids %v, want %v", max, ids, want)
			}
			if got := r.Header.Get("X-Elph-Export-Limit"); got != strconv.Itoa(max) {
				t.Errorf("X-Elph-Export-Limit %q, want %d", got, max)
			}
		}
	})
}

func TestRetention(t *testing.T) {
	forEachDialect(t, envOptions{edit: func(o *history.Options) { o.Retention = 30 * 24 * time.Hour }}, func(t *testing.T, e *env) {
		// testNow is t0 + 1 day.
		e.apply(t,
			started("c-old", alice, "inbound", "+7", "", -40*24*time.Hour),
			started("c-old-bob", bob, "inbound", "+7", "", -31*24*time.Hour),
			started("c-new", alice, "inbound", "+7", "", -20*24*time.Hour),
		)
		n, err := e.mod.Purge(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if n != 2 {
			t.Errorf("Purge deleted %d records, want 2", n)
		}
		if got := callIDs(e.all(t, alice)); !slices.Equal(got, []string{"c-new"}) {
			t.Errorf("alice keeps %v, want [c-new]", got)
		}
		if got := e.all(t, bob); len(got) != 0 {
			t.Errorf("bob keeps %v", callIDs(got))
		}
		if n, err := e.mod.Purge(t.Context()); err != nil || n != 0 {
			t.Errorf("second Purge: %d, %v; want 0", n, err)
		}
		if got := e.counter(t, "elph_history_records"); got != 1 {
			t.Errorf("elph_history_records = %v, want 1", got)
		}
	})
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name string
		edit func(*history.Options)
	}{
		{"no DB", func(o *history.Options) { o.DB = nil }},
		{"no bus", func(o *history.Options) { o.Bus = nil }},
		{"no verifier", func(o *history.Options) { o.Verifier = nil }},
		{"negative retention", func(o *history.Options) { o.Retention = -time.Hour }},
		{"retention in the wrong unit", func(o *history.Options) { o.Retention = 365 * time.Second }},
	}
	e := newEnv(t, storetest.OpenSQLite(t), envOptions{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := history.Options{DB: e.db, Bus: e.bus, Verifier: e.signer.Verifier()}
			tt.edit(&o)
			if _, err := history.New(o); err == nil {
				t.Error("New accepted the options")
			}
		})
	}
}
