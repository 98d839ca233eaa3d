package addressbook

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
)

// The CSV format of the address book, read by [ReadCSV] and written by
// [WriteCSV]:
//
//   - Encoding: UTF-8, with or without a byte order mark. A file that is
//     not valid UTF-8 and whose non-ASCII bytes mostly do not form UTF-8
//     sequences is read as Windows-1251 (what Excel's "CSV (разделители —
//     запятые)" writes in a Russian locale); the choice is made once for
//     the whole file. UTF-16 ("Unicode text") is refused. In a UTF-8 file,
//     a line that is not valid UTF-8 is rejected; so is a line with a NUL
//     byte.
//   - Separator: "," or ";", whichever the header line has more of
//     (outside quotes); "," when it has neither. Excel in a Russian locale
//     writes ";".
//   - Quoting as RFC 4180: a field that starts with '"' (spaces before it
//     are ignored) runs to the next lone '"', may hold separators and line
//     breaks, and writes a quote as '""'. A '"' inside an unquoted field
//     is kept as it is (ООО "Ромашка"). Lines end with LF or CRLF; CRLF
//     inside a quoted field becomes LF.
//   - Header: the first non-blank line names the columns, in any order and
//     letter case: id, first_name, middle_name, last_name, display_name,
//     organization, department, title, phone_work, phone_extension,
//     phone_mobile, phone_home, phone_other, email, info, and
//     messenger_<kind> (messenger_telegram, messenger_whatsapp, …; at most
//     32 of them). It is required, a column may appear once, and an
//     unknown column makes the whole file an error that names it (a typo
//     must not drop a field silently). At least one name column
//     (display_name, first_name, middle_name, last_name) is required. A
//     column with an empty name is allowed (spreadsheets leave some) as
//     long as its cells are empty.
//   - Several values in one cell (phone_*, email, messenger_*): separated
//     by "," or ";" (neither can occur in a phone number or an e-mail
//     address; a messenger handle cannot hold them either), spaces around
//     them ignored; the cell is then quoted when the separator is the
//     file's. WriteCSV writes ", ".
//   - id: the person's identity within the source, 1..255 bytes; when the
//     column is absent or the cell is empty, the id is derived from the
//     folded display name and the first phone (normalised) or, without
//     phones, the first e-mail ("auto:" and 20 hex digits of a SHA-256),
//     so importing the same file again updates the contacts instead of
//     duplicating them. Two lines with the same id (or, without ids, the
//     same name and first phone/e-mail) are one person: the second is
//     rejected. An export's ids are its contacts' csv ids, so that it
//     imports back onto the same records, or "contact:<id>" for contacts
//     from other sources only (see [Directory.ExportCSV]).
//   - display_name defaults to "last first middle".
//   - Rows whose cells are all blank are skipped.
//   - Line numbers in errors count the file's physical lines as a text
//     editor does, the header being line 1 when the file starts with it;
//     a record spanning several lines (a quoted multi-line info) is
//     reported by its first line.
//   - Bounds: the file is at most MaxCSVBytes, a record at most
//     MaxCSVLineBytes (longer records are rejected), and at most
//     MaxCSVRows data rows (more is an error for the whole file: a
//     truncated import must not look complete). Field bounds are those
//     of [Fields] (names 255 characters, info 4000, 20 phones, 10 e-mails,
//     10 messengers).
//
// A rejected line becomes a [RecordError] with its line number and why;
// the other lines are imported.
const (
	MaxCSVBytes     = 128 << 20
	MaxCSVLineBytes = 64 << 10
	MaxCSVRows      = 200_000
	// maxMessengerColumns bounds the messenger_<kind> columns.
	maxMessengerColumns = 32
)

// csvColumns are the columns of the format, in the order WriteCSV writes
// them (messenger_<kind> columns follow, by kind).
var csvColumns = []string{"id", "first_name", "middle_name", "last_name", "display_name", "organization",
	"department", "title", "phone_work", "phone_extension", "phone_mobile", "phone_home", "phone_other",
	"email", "info"}

const messengerPrefix = "messenger_"

// textField returns the text field a column fills, nil for others.
func textField(f *Fields, column string) *string {
	switch column {
	case "first_name":
		return &f.FirstName
	case "middle_name":
		return &f.MiddleName
	case "last_name":
		return &f.LastName
	case "display_name":
		return &f.DisplayName
	case "organization":
		return &f.Organization
	case "department":
		return &f.Department
	case "title":
		return &f.Title
	case "info":
		return &f.Info
	}
	return nil
}

// phoneKindOf returns the phone kind of a phone_<kind> column, "" for
// other columns.
func phoneKindOf(column string) string {
	if k, ok := strings.CutPrefix(column, "phone_"); ok && slices.Contains(PhoneKinds, k) {
		return k
	}
	return ""
}

// invalidError is a refusal whose message is shown as it is (without the
// "addressbook: invalid:" prefix); errors.Is(err, ErrInvalid) holds.
type invalidError struct{ msg string }

func (e *invalidError) Error() string        { return e.msg }
func (e *invalidError) Is(target error) bool { return target == ErrInvalid }

func invalidf(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

// plain is err's message without the "addressbook: invalid: " prefix.
func plain(err error) string {
	return strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": ")
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// ReadCSV reads an address book CSV file (the format is described at
// MaxCSVBytes) into records of the csv source. Lines it refuses come back
// in errs with their line numbers; err is for the file as a whole (not
// readable, too large, a bad or missing header, too many rows), and then
// nothing is returned. The records are clean: [Directory.Sync] does not
// refuse any of them.
func ReadCSV(r io.Reader) (records []Record, errs []RecordError, err error) {
	return readCSV(r, MaxCSVBytes)
}

// readCSV is ReadCSV with a size bound of maxBytes.
func readCSV(r io.Reader, maxBytes int) (records []Record, errs []RecordError, err error) {
	tooLarge := invalidf("csv: the file is larger than %d MiB; split it", maxBytes>>20)
	// A file too large is refused before it is read.
	if st, ok := r.(interface{ Stat() (fs.FileInfo, error) }); ok {
		if fi, err := st.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > int64(maxBytes) {
			return nil, nil, tooLarge
		}
	}
	data, err := io.ReadAll(io.LimitReader(r, int64(maxBytes)+1))
	if err != nil {
		return nil, nil, fmt.Errorf("addressbook: read csv: %w", err)
	}
	if len(data) > maxBytes {
		return nil, nil, tooLarge
	}
	data, err = decodeCSV(data)
	if err != nil {
		return nil, nil, err
	}
	p := &csvParser{s: string(data), line: 1, budget: len(data) + 4*MaxCSVLineBytes}
	cols, err := p.header()
	if err != nil {
		return nil, nil, err
	}
	seen := make(map[string]int) // id → line
	rows := 0
	var fields []string
	for p.pos < len(p.s) {
		line := p.line
		f, perr := p.record(fields[:0])
		fields = f
		if perr == nil && blank(fields) {
			continue
		}
		if rows++; rows > MaxCSVRows {
			return nil, nil, invalidf("csv: more than %d rows (line %d); split the file", MaxCSVRows, line)
		}
		if perr != nil {
			errs = append(errs, RecordError{Line: line, Err: perr})
			continue
		}
		rec, err := cols.record(fields)
		if err != nil {
			errs = append(errs, RecordError{ExternalID: rec.ExternalID, Line: line, Err: err})
			continue
		}
		if first, dup := seen[rec.ExternalID]; dup {
			msg := fmt.Sprintf("id %q is already on line %d", clip(rec.ExternalID), first)
			if !cols.hasID || strings.HasPrefix(rec.ExternalID, autoIDPrefix) {
				msg = fmt.Sprintf("the same person as line %d (same name and first phone or e-mail); give the lines ids to import both", first)
			}
			errs = append(errs, RecordError{ExternalID: rec.ExternalID, Line: line, Err: invalidf("%s", msg)})
			continue
		}
		seen[rec.ExternalID] = line
		records = append(records, rec)
	}
	return records, errs, nil
}

// decodeCSV strips a BOM and turns a Windows-1251 file into UTF-8.
func decodeCSV(data []byte) ([]byte, error) {
	switch {
	case bytes.HasPrefix(data, utf8BOM):
		return data[len(utf8BOM):], nil
	case bytes.HasPrefix(data, []byte{0xFF, 0xFE}), bytes.HasPrefix(data, []byte{0xFE, 0xFF}):
		return nil, invalidf("csv: the file is UTF-16; save it as \"CSV UTF-8\"")
	case utf8.Valid(data) || !looksWindows1251(data):
		return data, nil
	}
	out, err := charmap.Windows1251.NewDecoder().Bytes(data)
	if err != nil {
		return nil, fmt.Errorf("addressbook: csv: decode Windows-1251: %w", err)
	}
	return out, nil
}

// looksWindows1251 reports whether more of data's non-ASCII bytes fail
// to form UTF-8 sequences than form them: a UTF-8 file with a few broken
// lines stays UTF-8 (those lines are rejected), a Windows-1251 one (where
// a capital letter followed by Ё or « happens to be valid UTF-8) does
// not.
func looksWindows1251(data []byte) bool {
	valid, invalid := 0, 0
	for i := 0; i < len(data); {
		if data[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size <= 1 {
			invalid++
			i++
			continue
		}
		valid += size
		i += size
	}
	return invalid > valid
}

func blank(fields []string) bool {
	for _, f := range fields {
		if strings.TrimSpace(f) != "" {
			return false
		}
	}
	return true
}

// csvParser splits the decoded file into records.
type csvParser struct {
	s     string
	sep   byte
	stops string // the separator and '\n'
	pos   int    // where the next record starts
	line  int    // the physical line of pos, 1-based
	// budget bounds the bytes parsed again after a broken record that
	// spanned several lines (parsing resumes at its second line); when
	// it is spent, parsing resumes after the broken record, so hostile
	// input costs linear time.
	budget int
}

// csvHeader maps the header's columns to fields.
type csvHeader struct {
	names []string
	hasID bool
}

// header reads the header line, choosing the separator from it.
func (p *csvParser) header() (csvHeader, error) {
	var h csvHeader
	for p.pos < len(p.s) {
		end := strings.IndexByte(p.s[p.pos:], '\n')
		if end < 0 {
			end = len(p.s) - p.pos
		}
		if strings.TrimSpace(p.s[p.pos:p.pos+end]) != "" {
			break
		}
		p.pos += end + 1
		p.line++
	}
	if p.pos >= len(p.s) {
		return h, invalidf("csv: the file is empty; the first line must name the columns (%s)", strings.Join(csvColumns, ", "))
	}
	p.sep = detectSeparator(p.s[p.pos:min(len(p.s), p.pos+MaxCSVLineBytes)])
	p.stops = string(p.sep) + "\n"
	line := p.line
	fields, err := p.record(nil)
	if err != nil {
		return h, invalidf("csv: header (line %d): %s", line, plain(err))
	}
	var unknown, dups []string
	seen := make(map[string]bool)
	messengers := 0
	hasName := false
	for _, f := range fields {
		name := strings.ToLower(strings.TrimSpace(f))
		switch {
		case name == "":
			// A column without a name: allowed (spreadsheets leave
			// some), but a value under it is an error.
		case seen[name]:
			dups = append(dups, strconv.Quote(name))
		case slices.Contains(csvColumns, name):
			hasName = hasName || slices.Contains([]string{"display_name", "first_name", "middle_name", "last_name"}, name)
			h.hasID = h.hasID || name == "id"
		case strings.HasPrefix(name, messengerPrefix) && validMessengerKind(name[len(messengerPrefix):]):
			messengers++
		default:
			unknown = append(unknown, strconv.Quote(clip(name)))
		}
		seen[name] = true
		h.names = append(h.names, name)
	}
	switch {
	case len(unknown) > 0 && len(unknown) == len(fields):
		return h, invalidf("csv: line %d is not a header: the first line must name the columns (%s, messenger_<kind>); got %s",
			line, strings.Join(csvColumns, ", "), strings.Join(unknown[:min(len(unknown), 10)], ", "))
	case len(unknown) > 0:
		return h, invalidf("csv: unknown column(s) %s; the columns are %s and messenger_<kind>",
			strings.Join(unknown[:min(len(unknown), 20)], ", "), strings.Join(csvColumns, ", "))
	case len(dups) > 0:
		return h, invalidf("csv: column(s) %s appear more than once", strings.Join(dups[:min(len(dups), 20)], ", "))
	case messengers > maxMessengerColumns:
		return h, invalidf("csv: %d messenger columns; at most %d", messengers, maxMessengerColumns)
	case !hasName:
		return h, invalidf("csv: no name column: the header needs display_name, or first_name and last_name")
	}
	return h, nil
}

// validMessengerKind: what Fields.clean accepts as a kind.
func validMessengerKind(k string) bool {
	return k != "" && len(k) <= 32 && utf8.ValidString(k) && !strings.ContainsFunc(k, unicode.IsControl)
}

// detectSeparator counts ',' and ';' outside quotes on the first line.
func detectSeparator(s string) byte {
	commas, semis, quoted := 0, 0, false
loop:
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			quoted = !quoted
		case ',':
			if !quoted {
				commas++
			}
		case ';':
			if !quoted {
				semis++
			}
		case '\n':
			if !quoted {
				break loop
			}
		}
	}
	if semis > commas {
		return ';'
	}
	return ','
}

// record parses the record at p.pos into fields (appended to dst) and
// moves past it. On error p.pos moves to where parsing resumes.
func (p *csvParser) record(dst []string) (fields []string, err error) {
	start, startLine := p.pos, p.line
	// The record may not extend beyond lim (its terminator excluded).
	lim := min(len(p.s), start+MaxCSVLineBytes)
	pos, lines := start, 0
	fail := func(msg string) ([]string, error) {
		p.resume(start, startLine, pos)
		return dst, invalidf("%s", msg)
	}
	var b strings.Builder
	for {
		i := pos
		for i < lim && (p.s[i] == ' ' || p.s[i] == '\t') {
			i++
		}
		if i < lim && p.s[i] == '"' {
			// A quoted field.
			pos = i + 1
			b.Reset()
			for {
				j := strings.IndexByte(p.s[pos:lim], '"')
				if j < 0 {
					pos = lim
					if lim == len(p.s) {
						return fail(`a quoted field is not closed (unbalanced ")`)
					}
					return fail(fmt.Sprintf(`longer than %d bytes (or a quoted field is not closed: unbalanced ")`, MaxCSVLineBytes))
				}
				chunk := p.s[pos : pos+j]
				lines += strings.Count(chunk, "\n")
				b.WriteString(strings.ReplaceAll(chunk, "\r\n", "\n"))
				pos += j + 1
				if pos < lim && p.s[pos] == '"' {
					b.WriteByte('"')
					pos++
					continue
				}
				break
			}
			dst = append(dst, b.String())
			for pos < lim && (p.s[pos] == ' ' || p.s[pos] == '\t' || (p.s[pos] == '\r' && pos+1 < len(p.s) && p.s[pos+1] == '\n')) {
				pos++
			}
			switch {
			case pos < lim && p.s[pos] == p.sep:
				pos++
				continue
			case pos < len(p.s) && p.s[pos] == '\n':
				pos++
				lines++
			case pos == len(p.s):
			case pos == lim:
				return fail(fmt.Sprintf("longer than %d bytes", MaxCSVLineBytes))
			case lines > 0:
				return fail(fmt.Sprintf(`a quoted field opened on this line ends on line %d with text after its closing quote: is a " unbalanced?`, startLine+lines))
			default:
				return fail(`text after the closing quote of a quoted field (write a quote inside a quoted field as "")`)
			}
			break
		}
		// An unquoted field: up to the separator or the line's end.
		j := strings.IndexAny(p.s[pos:lim], p.stops)
		if j < 0 {
			if lim < len(p.s) && p.s[lim] != '\n' {
				pos = lim
				return fail(fmt.Sprintf("longer than %d bytes", MaxCSVLineBytes))
			}
			dst = append(dst, strings.TrimSuffix(p.s[pos:lim], "\r"))
			pos = lim
			if pos < len(p.s) { // the '\n' right after lim
				pos++
				lines++
			}
			break
		}
		if p.s[pos+j] == p.sep {
			dst = append(dst, p.s[pos:pos+j])
			pos += j + 1
			continue
		}
		dst = append(dst, strings.TrimSuffix(p.s[pos:pos+j], "\r"))
		pos += j + 1
		lines++
		break
	}
	raw := p.s[start:pos]
	p.pos, p.line = pos, startLine+lines
	if strings.IndexByte(raw, 0) >= 0 {
		return dst, invalidf("contains a NUL byte (is this a text file?)")
	}
	if !utf8.ValidString(raw) {
		return dst, invalidf("not valid UTF-8 (save the whole file as UTF-8, or as Windows-1251)")
	}
	return dst, nil
}

// resume places the parser after a broken record that started at start
// (line startLine) and was read up to reached: at the record's second
// physical line, so one stray quote costs one line, while the budget
// lasts; otherwise after the line of reached.
func (p *csvParser) resume(start, startLine, reached int) {
	next := len(p.s)
	if i := strings.IndexByte(p.s[start:], '\n'); i >= 0 {
		next = start + i + 1
	}
	if cost := reached - next; cost <= 0 || cost <= p.budget {
		p.budget -= max(cost, 0)
		p.pos, p.line = next, startLine+1
		return
	}
	end := len(p.s)
	if i := strings.IndexByte(p.s[reached:], '\n'); i >= 0 {
		end = reached + i + 1
	}
	p.pos, p.line = end, startLine+strings.Count(p.s[start:end], "\n")
}

// record makes the record of a data line.
func (h csvHeader) record(cells []string) (Record, error) {
	rec := Record{Source: SourceCSV}
	if len(cells) != len(h.names) {
		return rec, invalidf("%d fields, the header has %d (a missing separator or quote?)", len(cells), len(h.names))
	}
	f := &rec.Fields
	for i, name := range h.names {
		// A copy: the cells share the whole file's memory.
		v := unguardFormula(strings.Clone(cells[i]))
		if name != "info" {
			v = strings.TrimSpace(v)
		}
		switch {
		case name == "":
			if v != "" {
				return rec, invalidf("a value (%q) in column %d, which has no name in the header", clip(v), i+1)
			}
		case name == "id":
			rec.ExternalID = v
			if len(v) > MaxExternalID {
				return rec, invalidf("id is longer than %d bytes", MaxExternalID)
			}
		case textField(f, name) != nil:
			*textField(f, name) = v
		case name == "email":
			f.Emails = append(f.Emails, splitValues(v)...)
		case phoneKindOf(name) != "":
			for _, n := range splitValues(v) {
				if NormalizeNumber(n) == "" {
					return rec, invalidf("%s: %q is not a phone number", name, clip(n))
				}
				f.Phones = append(f.Phones, Phone{Number: n, Kind: phoneKindOf(name)})
				if len(f.Phones) > MaxPhones {
					return rec, invalidf("more than %d phones", MaxPhones)
				}
			}
		case strings.HasPrefix(name, messengerPrefix):
			for _, handle := range splitValues(v) {
				f.Messengers = append(f.Messengers, Messenger{Kind: name[len(messengerPrefix):], Handle: handle})
				if len(f.Messengers) > MaxMessengers {
					return rec, invalidf("more than %d messengers", MaxMessengers)
				}
			}
		}
	}
	if err := f.clean(); err != nil {
		return rec, invalidf("%s", plain(err))
	}
	if rec.ExternalID == "" {
		rec.ExternalID = derivedID(*f)
	}
	if err := rec.clean(); err != nil {
		return rec, invalidf("%s", plain(err))
	}
	return rec, nil
}

const autoIDPrefix = "auto:"

// derivedID is the id of a line without one: the folded display name and
// the first phone, else the first e-mail.
func derivedID(f Fields) string {
	key := ""
	switch {
	case len(f.Phones) > 0:
		key = "phone:" + f.Phones[0].Normalized
	case len(f.Emails) > 0:
		key = "email:" + f.Emails[0]
	}
	sum := sha256.Sum256([]byte(fold(f.DisplayName) + "\x00" + key))
	return autoIDPrefix + hex.EncodeToString(sum[:10])
}

// splitValues splits a multi-value cell on ',' and ';'.
func splitValues(s string) []string {
	var out []string
	for v := range strings.FieldsFuncSeq(s, func(r rune) bool { return r == ',' || r == ';' }) {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// WriteCSV writes the contacts each yields in the format ReadCSV reads:
// the header, then one row per contact with its merged fields, separated
// by ",", in UTF-8 without a BOM. id gives a row's id; nil means
// "contact:<the contact's id>" (see [Directory.ExportCSV] for the ids
// that make an export import back onto the same records). each is called
// twice: first for the messenger kinds (a messenger_<kind> column per
// kind, sorted), then for the rows; a kind that appears only in the
// second pass (the directory changed meanwhile) is an error.
func WriteCSV(w io.Writer, each func(func(Contact) error) error, id func(Contact) string) error {
	if id == nil {
		id = contactCSVID
	}
	kinds := make(map[string]bool)
	err := each(func(c Contact) error {
		for _, m := range c.Messengers {
			if !kinds[m.Kind] && len(kinds) == maxMessengerColumns {
				return fmt.Errorf("addressbook: export: more than %d messenger kinds", maxMessengerColumns)
			}
			kinds[m.Kind] = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	sorted := make([]string, 0, len(kinds))
	for k := range kinds {
		sorted = append(sorted, k)
	}
	slices.Sort(sorted)
	header := slices.Clone(csvColumns)
	for _, k := range sorted {
		header = append(header, messengerPrefix+k)
	}
	cw := csv.NewWriter(w)
	if err := cw.Write(header); err != nil {
		return fmt.Errorf("addressbook: export: %w", err)
	}
	row := make([]string, len(header))
	err = each(func(c Contact) error {
		f := c.Fields
		for i, name := range header {
			switch {
			case name == "id":
				row[i] = id(c)
			case textField(&f, name) != nil:
				row[i] = *textField(&f, name)
			case name == "email":
				row[i] = strings.Join(f.Emails, ", ")
			case phoneKindOf(name) != "":
				var nums []string
				for _, p := range f.Phones {
					kind := p.Kind
					if !slices.Contains(PhoneKinds, kind) {
						kind = PhoneOther
					}
					if kind == phoneKindOf(name) {
						nums = append(nums, p.Number)
					}
				}
				row[i] = strings.Join(nums, ", ")
			default: // messenger_<kind>
				var handles []string
				for _, m := range f.Messengers {
					if messengerPrefix+m.Kind == name {
						handles = append(handles, m.Handle)
					}
				}
				row[i] = strings.Join(handles, ", ")
			}
		}
		for _, m := range f.Messengers {
			if !kinds[m.Kind] {
				return errors.New("addressbook: export: the directory changed during the export; run it again")
			}
		}
		for i := range row {
			row[i] = guardFormula(row[i])
		}
		return cw.Write(row)
	})
	if err != nil {
		return err
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("addressbook: export: %w", err)
	}
	return nil
}

// contactIDPrefix marks an exported contact id, so that it cannot be
// taken for one of the ids a file gave its lines ("17" from a file and
// contact 17 are different people).
const contactIDPrefix = "contact:"

func contactCSVID(c Contact) string { return contactIDPrefix + strconv.FormatInt(c.ID, 10) }

// ExportCSV writes every directory contact to w as WriteCSV does and
// returns how many it wrote. A contact's id is the id of its csv record
// when it has one (the least, when several), so that importing the file
// again, edited or not, updates those records: untouched rows are
// unchanged and the contacts keep their ids. Other contacts get
// "contact:<id>": imported, they become csv records joined to their
// contact by e-mail or by name and number.
func (d *Directory) ExportCSV(ctx context.Context, w io.Writer) (int, error) {
	var rows []struct {
		ContactID  int64  `db:"contact_id"`
		ExternalID string `db:"external_id"`
	}
	if err := d.db.SelectContext(ctx, &rows, "SELECT contact_id, MIN(external_id) AS external_id FROM ab_records WHERE source = ? GROUP BY contact_id", SourceCSV); err != nil {
		return 0, fmt.Errorf("addressbook: export: csv ids: %w", err)
	}
	ids := make(map[int64]string, len(rows))
	for _, r := range rows {
		ids[r.ContactID] = r.ExternalID
	}
	n := 0
	err := WriteCSV(w, func(fn func(Contact) error) error {
		n = 0
		return d.Each(ctx, func(c Contact) error { n++; return fn(c) })
	}, func(c Contact) string {
		if id, ok := ids[c.ID]; ok {
			return id
		}
		return contactCSVID(c)
	})
	return n, err
}

// formulaStarts are the first characters that make Excel and LibreOffice
// read a cell as a formula (CSV injection: a contact named
// "=HYPERLINK(…)" would run when an administrator opens the export).
const formulaStarts = "=+-@\t\r"

// guardFormula makes a cell that would start a formula plain text with a
// leading apostrophe, which spreadsheets show as text and do not display;
// "+7 495 …" stays a readable number that way too.
func guardFormula(v string) string {
	if v != "" && strings.IndexByte(formulaStarts, v[0]) >= 0 {
		return "'" + v
	}
	return v
}

// unguardFormula undoes guardFormula on import, so an export reads back
// the same.
func unguardFormula(v string) string {
	if len(v) > 1 && v[0] == '\'' && strings.IndexByte(formulaStarts, v[1]) >= 0 {
		return v[1:]
	}
	return v
}
