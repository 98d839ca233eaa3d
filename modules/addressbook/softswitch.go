package addressbook

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/elph-server/elph/config"
	"github.com/elph-server/elph/platform/store"
)

// Bounds of one softswitch fetch: more rows, or more bytes of values,
// fail the fetch (nothing is removed then).
const (
	MaxSoftswitchRows  = 500_000
	maxSoftswitchBytes = 512 << 20
)

// Connection defaults applied when the DSN does not set them.
const (
	softswitchDialTimeout    = 5 * time.Second
	softswitchDefaultTimeout = time.Minute
)

// Softswitch is the softswitch's directory database as a source: a SQL
// query whose columns are named after contact fields
// ([config.SoftswitchFields]), one row per person. It connects lazily:
// a softswitch that is down fails a fetch, not the construction. Safe
// for concurrent use.
type Softswitch struct {
	query    string
	timeout  time.Duration
	db       *sql.DB
	masked   string // the DSN without its password, for errors and logs
	password string
	log      *slog.Logger
}

// NewSoftswitch checks cfg and prepares the connection pool; it does not
// connect. The DSN's password never reaches logs or errors.
func NewSoftswitch(cfg config.SoftswitchDirectory, log *slog.Logger) (*Softswitch, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Softswitch{
		query: strings.TrimSpace(cfg.Query), timeout: cfg.Timeout,
		masked: store.MaskDSN(store.DriverMySQL, cfg.DSN), log: log.With("source", SourceSoftswitch),
	}
	if s.timeout <= 0 {
		s.timeout = softswitchDefaultTimeout
	}
	if cfg.Driver != "" && cfg.Driver != store.DriverMySQL {
		return nil, fmt.Errorf("addressbook: softswitch: driver %q is not supported; use mysql", cfg.Driver)
	}
	if s.query == "" {
		return nil, errors.New("addressbook: softswitch: no query")
	}
	mc, err := mysql.ParseDSN(cfg.DSN)
	if err != nil {
		// The parser may quote the DSN; scrub what looks like a password.
		return nil, fmt.Errorf("addressbook: softswitch dsn %q: %w", s.masked, redactErr(err, dsnPassword(cfg.DSN)))
	}
	s.password = mc.Passwd
	if mc.Timeout == 0 {
		mc.Timeout = softswitchDialTimeout
	}
	// A backstop for a server that stops answering; the query's context
	// ends it at timeout, before these.
	if mc.ReadTimeout == 0 {
		mc.ReadTimeout = s.timeout + 10*time.Second
	}
	if mc.WriteTimeout == 0 {
		mc.WriteTimeout = s.timeout + 10*time.Second
	}
	mc.Logger = driverLogger{s.log}
	conn, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("addressbook: softswitch dsn %q: %w", s.masked, redactErr(err, s.password))
	}
	s.db = sql.OpenDB(conn)
	// One query at a time, every interval: keep no connection idle long
	// enough for the server's wait_timeout to break it.
	s.db.SetMaxOpenConns(2)
	s.db.SetMaxIdleConns(1)
	s.db.SetConnMaxIdleTime(time.Minute)
	s.db.SetConnMaxLifetime(5 * time.Minute)
	return s, nil
}

// Close closes the connection pool.
func (s *Softswitch) Close() error { return s.db.Close() }

// Fetch runs the query (bounded by the configured timeout) and returns
// a record of the softswitch source per valid row, and the rows it
// refused with why (RecordError.Line is 0; the message names the row
// when it has no id). Columns are matched to fields by name, case
// insensitive: an unknown column fails the fetch naming it, and an id
// column is required. NULL is empty; numbers, dates and bytes become
// text. A phone_* or email value may hold several values separated by
// "," or ";" (GROUP_CONCAT). An error means the fetch is incomplete:
// use none of it.
func (s *Softswitch) Fetch(ctx context.Context) ([]Record, []RecordError, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	started := time.Now()
	rows, err := s.db.QueryContext(ctx, s.query)
	if err != nil {
		return nil, nil, s.fail(ctx, "query", err)
	}
	defer rows.Close()
	names, err := rows.Columns()
	if err != nil {
		return nil, nil, s.fail(ctx, "query", err)
	}
	cols, err := softswitchColumns(names)
	if err != nil {
		return nil, nil, err
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var (
		recs []Record
		errs []RecordError
		seen = make(map[string]bool)
		n    int
		size int
	)
	for rows.Next() {
		if n++; n > MaxSoftswitchRows {
			return nil, nil, fmt.Errorf("addressbook: softswitch: the query returns more than %d rows; it must return one row per person", MaxSoftswitchRows)
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, nil, s.fail(ctx, "read row", err)
		}
		cells := make([]string, len(vals))
		for i, v := range vals {
			cells[i] = cellText(v)
			size += len(cells[i])
		}
		if size > maxSoftswitchBytes {
			return nil, nil, fmt.Errorf("addressbook: softswitch: the query returns more than %d MiB", maxSoftswitchBytes>>20)
		}
		rec, err := softswitchRecord(cols, cells)
		switch {
		case err != nil:
			errs = append(errs, RecordError{ExternalID: rec.ExternalID, Err: err})
		case rec.ExternalID == "":
			errs = append(errs, RecordError{Err: invalidf("row %d (%s): no id", n, clip(rec.DisplayName))})
		case seen[rec.ExternalID]:
			errs = append(errs, RecordError{ExternalID: rec.ExternalID, Err: invalidf("id %q is in several rows", clip(rec.ExternalID))})
		default:
			seen[rec.ExternalID] = true
			recs = append(recs, rec)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, s.fail(ctx, "read rows", err)
	}
	s.log.DebugContext(ctx, "addressbook softswitch fetched", "dsn", s.masked, "rows", n, "records", len(recs),
		"rejected", len(errs), "took", time.Since(started).Round(time.Millisecond))
	return recs, errs, nil
}

// Sync fetches the records and brings them into d: a full sync, except
// that what the fetch could not vouch for is never removed. A failed
// fetch changes nothing; a person whose row was refused (a bad phone)
// keeps their contact as it was; and when some row has no id, or the
// query returns no rows at all, nothing is removed (a broken query or an
// emptied table must not wipe the directory).
func (s *Softswitch) Sync(ctx context.Context, d *Directory) (SyncResult, error) {
	recs, rejected, err := s.Fetch(ctx)
	if err != nil {
		return SyncResult{}, err
	}
	applied, err := d.Sync(ctx, SourceSoftswitch, recs, false, nil)
	res := SyncResult{Created: applied.Created, Merged: applied.Merged, Updated: applied.Updated, Unchanged: applied.Unchanged}
	for _, e := range rejected {
		res.reject(e)
	}
	for _, e := range applied.Rejected {
		res.reject(e)
	}
	res.RejectedCount += applied.RejectedCount - len(applied.Rejected)
	if err != nil {
		return res, err
	}
	keep := make(map[string]bool, len(recs)+len(rejected))
	for _, r := range recs {
		keep[r.ExternalID] = true
	}
	for _, e := range rejected {
		if e.ExternalID == "" {
			s.log.WarnContext(ctx, "addressbook softswitch: rows without id; not removing contacts missing from the query")
			return res, nil
		}
		keep[e.ExternalID] = true
	}
	if len(keep) == 0 {
		s.log.WarnContext(ctx, "addressbook softswitch: the query returned no rows; not removing contacts")
		return res, nil
	}
	res.Removed, err = d.removeMissing(ctx, SourceSoftswitch, keep)
	return res, err
}

// softswitchColumns checks the query's column names and returns them
// folded to the field names.
func softswitchColumns(names []string) ([]string, error) {
	cols := make([]string, len(names))
	var unknown, dups []string
	hasID := false
	for i, n := range names {
		name := strings.ToLower(strings.TrimSpace(n))
		switch {
		case !slices.Contains(config.SoftswitchFields, name):
			unknown = append(unknown, strconv.Quote(clip(n)))
		case slices.Contains(cols[:i], name):
			dups = append(dups, strconv.Quote(name))
		}
		hasID = hasID || name == "id"
		cols[i] = name
	}
	switch {
	case len(unknown) > 0:
		return nil, invalidf("addressbook: softswitch: the query has column(s) %s that are not contact fields; name each column (AS) after one of %s",
			strings.Join(unknown[:min(len(unknown), 20)], ", "), strings.Join(config.SoftswitchFields, ", "))
	case len(dups) > 0:
		return nil, invalidf("addressbook: softswitch: the query has column(s) %s more than once", strings.Join(dups, ", "))
	case !hasID:
		return nil, invalidf("addressbook: softswitch: the query has no id column (a stable id per person, e.g. SELECT login AS id, …)")
	}
	return cols, nil
}

// softswitchRecord makes the record of a row; it is clean unless err.
func softswitchRecord(cols []string, cells []string) (Record, error) {
	rec := Record{Source: SourceSoftswitch}
	f := &rec.Fields
	for i, name := range cols {
		v := strings.TrimSpace(cells[i])
		switch {
		case name == "id":
			rec.ExternalID = v
		case name == "email":
			f.Emails = append(f.Emails, splitValues(v)...)
		case phoneKindOf(name) != "":
			for _, n := range splitValues(v) {
				if NormalizeNumber(n) == "" {
					return rec, invalidf("%s: %q is not a phone number", name, clip(n))
				}
				f.Phones = append(f.Phones, Phone{Number: n, Kind: phoneKindOf(name)})
			}
		case textField(f, name) != nil:
			*textField(f, name) = v
		}
	}
	if rec.ExternalID == "" {
		// Rejected by the caller, with the row number; still clean the
		// name for the message.
		_ = f.clean()
		return rec, nil
	}
	if err := rec.clean(); err != nil {
		return rec, invalidf("%s", plain(err))
	}
	return rec, nil
}

// cellText is a column's value as text: NULL is "", integral floats
// lose their ".0" and exponent (a phone number in a DOUBLE column).
func cellText(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case []byte:
		return string(x)
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case uint64:
		return strconv.FormatUint(x, 10)
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1e21 {
			return strconv.FormatFloat(x, 'f', -1, 64)
		}
		return strconv.FormatFloat(x, 'g', -1, 64)
	case float32:
		return cellText(float64(x))
	case bool:
		return strconv.FormatBool(x)
	case time.Time:
		return x.Format(time.DateTime)
	default:
		return fmt.Sprint(x)
	}
}

// fail wraps a driver error: the masked DSN for where, the timeout when
// it ran out, never the password.
func (s *Softswitch) fail(ctx context.Context, op string, err error) error {
	if ctx.Err() == context.DeadlineExceeded {
		err = fmt.Errorf("no answer within %s (addressbook.softswitch.timeout): %w", s.timeout, err)
	}
	return fmt.Errorf("addressbook: softswitch %s (%s): %w", op, s.masked, redactErr(err, s.password))
}

// dsnPassword finds the password of a "user:pass@net(addr)/db" DSN as the
// driver does: the user information ends at the last '@' before the last
// '/', the password starts after its first ':'.
func dsnPassword(dsn string) string {
	head := dsn
	if i := strings.LastIndexByte(dsn, '/'); i >= 0 {
		head = dsn[:i]
	}
	at := strings.LastIndexByte(head, '@')
	if at < 0 {
		return ""
	}
	_, pass, _ := strings.Cut(dsn[:at], ":")
	return pass
}

// redactedErr hides a secret in err's message, keeping err in the chain.
type redactedErr struct {
	msg string
	err error
}

func (e *redactedErr) Error() string { return e.msg }
func (e *redactedErr) Unwrap() error { return e.err }

func redactErr(err error, secret string) error {
	if secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	return &redactedErr{msg: strings.ReplaceAll(err.Error(), secret, "***"), err: err}
}

// driverLogger sends the MySQL driver's complaints to our logger.
type driverLogger struct{ l *slog.Logger }

func (d driverLogger) Print(v ...any) {
	d.l.Warn("addressbook softswitch: mysql driver", "msg", strings.TrimSpace(fmt.Sprint(v...)))
}
