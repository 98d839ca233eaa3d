package history

import (
	"encoding/csv"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/elph-server/elph/platform/httpx"
)

// Bounds of the CSV export.
const (
	// MaxExportRows bounds one export; a client that needs more narrows
	// the time range.
	MaxExportRows = 100_000
	// defaultExportBatch is how many rows are read per query: the export
	// reads page by page rather than holding one query (and its
	// connection and, on SQLite, its read snapshot) open while a slow
	// client downloads.
	defaultExportBatch = 1000
)

// bom makes Excel read the file as UTF-8 (Cyrillic names) instead of the
// system's ANSI code page.
const bom = "\uFEFF"

var exportHeader = []string{
	"id", "started_at", "direction", "result", "peer_number", "peer_name", "local_number",
	"ringing_at", "answered_at", "ended_at", "duration_seconds", "seen",
}

// handleExport streams the user's records matching the list's filters,
// newest first, as CSV (RFC 4180: CRLF, fields quoted when needed) in
// UTF-8 with a byte order mark. At most MaxExportRows rows: an export
// with exactly that many was cut, and the client narrows from/to (the
// limit is announced in X-Elph-Export-Limit, since a status cannot change
// once rows are sent).
func (m *Module) handleExport(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilter(r.URL.Query())
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	uid := userID(r)
	ctx := r.Context()
	// The first page is read before anything is written, so a database
	// failure is still answered with an error body.
	calls, err := m.store.list(ctx, uid, f, nil, m.exportBatch)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Content-Disposition", `attachment; filename="calls.csv"`)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Elph-Export-Limit", strconv.Itoa(m.exportMax))
	w.WriteHeader(http.StatusOK)

	io.WriteString(w, bom)
	cw := csv.NewWriter(w)
	cw.UseCRLF = true
	cw.Write(exportHeader)
	rows := 0
	for {
		for _, c := range calls {
			if rows == m.exportMax {
				break
			}
			cw.Write(csvRecord(c))
			rows++
		}
		// Each batch goes out as it is read, so memory stays flat and a
		// client that left is noticed.
		cw.Flush()
		if err := cw.Error(); err != nil {
			// The client went away; nothing to answer.
			m.log.DebugContext(ctx, "history: export cut short", "user_id", uid, "rows", rows, "err", err)
			return
		}
		if rows == m.exportMax || len(calls) < m.exportBatch {
			break
		}
		last := calls[len(calls)-1]
		calls, err = m.store.list(ctx, uid, f, &pagePos{StartedAt: last.StartedAt, ID: last.ID}, m.exportBatch)
		if err != nil {
			// Headers are sent: all that can be done is to cut the body
			// short, which the client sees as a broken download.
			m.log.ErrorContext(ctx, "history: export failed midway", "user_id", uid, "rows", rows, "err", err)
			panic(http.ErrAbortHandler)
		}
	}
	m.log.InfoContext(ctx, "call history exported", "user_id", uid, "rows", rows, "truncated", rows == m.exportMax)
}

func csvRecord(c Call) []string {
	return []string{
		strconv.FormatInt(c.ID, 10),
		csvTime(&c.StartedAt),
		c.Direction,
		c.Result,
		csvText(c.PeerNumber),
		csvText(c.PeerName),
		csvText(c.LocalNumber),
		csvTime(c.RingingAt),
		csvTime(c.AnsweredAt),
		csvTime(c.EndedAt),
		strconv.FormatInt(c.DurationSeconds, 10),
		strconv.FormatBool(c.Seen),
	}
}

func csvTime(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// csvText defuses formula injection: a spreadsheet runs a cell that starts
// with = + - @ as a formula, and caller names and numbers come from
// outside (caller id is easily spoofed). Such a cell gets a leading
// apostrophe, except a plain phone number ("+74951234567"), which is
// harmless and too common to mangle.
func csvText(s string) string {
	if s == "" || !strings.ContainsRune("=+-@\t\r", rune(s[0])) || phoneNumber(s) {
		return s
	}
	return "'" + s
}

// phoneNumber reports whether s is "+" followed by digits (and the dial
// pad's * and #).
func phoneNumber(s string) bool {
	if len(s) < 2 || s[0] != '+' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || c == '*' || c == '#') {
			return false
		}
	}
	return true
}
