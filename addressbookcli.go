package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/elph-server/elph/config"
	"github.com/elph-server/elph/modules/addressbook"
	"github.com/elph-server/elph/platform/store"
)

// maxRejectedShown bounds the rejected lines a command prints.
const maxRejectedShown = 1000

// directoryEnv is the address book's directory opened outside `serve`,
// for the import, export and sync commands. A running node's search
// index follows what they write through the database's change log.
type directoryEnv struct {
	cfg config.Config
	log *slog.Logger
	db  *store.DB
	dir *addressbook.Directory
}

// openDirectory opens the configured, migrated database and returns the
// directory on it.
func openDirectory(ctx context.Context, cf *configFlags, cmd *cobra.Command) (*directoryEnv, error) {
	cfg, log, db, err := openMigrated(ctx, cf, cmd)
	if err != nil {
		return nil, err
	}
	return &directoryEnv{cfg: cfg, log: log, db: db, dir: addressbook.NewDirectory(db, nil)}, nil
}

// withDirectory wraps a command's body with opening and closing the
// directory.
func withDirectory(cf *configFlags, fn func(cmd *cobra.Command, args []string, env *directoryEnv) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		env, err := openDirectory(cmd.Context(), cf, cmd)
		if err != nil {
			return err
		}
		defer env.db.Close()
		return fn(cmd, args, env)
	}
}

func addressbookCmd() *cobra.Command {
	var cf configFlags
	cmd := &cobra.Command{Use: "addressbook", Short: "Import, export and sync the company address book"}
	cf.register(cmd.PersistentFlags())

	var (
		source string
		full   bool
	)
	importCmd := &cobra.Command{
		Use:   "import FILE.csv",
		Short: "Import contacts from a CSV file (- for standard input)",
		Long: `Import contacts from a CSV file into the company address book.

The first line names the columns: id, first_name, middle_name, last_name,
display_name, organization, department, title, phone_work, phone_extension,
phone_mobile, phone_home, phone_other, email, info, messenger_<kind>. The
separator is "," or ";" (found from the header); several phones or e-mails
in a cell are separated by "," or ";". UTF-8 (with or without BOM) or
Windows-1251. Without an id column, a line's id is derived from its name and
first phone or e-mail, so importing the same file again updates contacts.
A person in several sources (same e-mail, or same name and number) is one
contact.

Lines that cannot be imported are listed as "line N: why" and the rest is
imported. Exit status: 0 when every line was imported, 2 when some were
rejected, 1 when the import failed.`,
		Args: cobra.ExactArgs(1),
		RunE: withDirectory(&cf, func(cmd *cobra.Command, args []string, env *directoryEnv) error {
			if source != addressbook.SourceCSV && source != addressbook.SourceSoftswitch {
				return fmt.Errorf("--source %q: use %s or %s (accounts come from the Elph accounts)", source, addressbook.SourceCSV, addressbook.SourceSoftswitch)
			}
			in, name := cmd.InOrStdin(), "standard input"
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				in, name = f, args[0]
			}
			records, rejected, err := addressbook.ReadCSV(in)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			removeMissing := full && len(rejected) == 0
			bar := newCountBar(cmd.ErrOrStderr(), "imported", "contacts")
			res, err := env.dir.Sync(cmd.Context(), source, records, removeMissing, func(done int) { bar.update(done, len(records)) })
			bar.done()
			if err != nil {
				return err
			}
			rows := len(records) + len(rejected)
			// Directory.Sync accepts every record ReadCSV returns; should
			// it refuse one, it is reported by its place among the records.
			for _, r := range res.Rejected {
				rejected = append(rejected, addressbook.RecordError{ExternalID: r.ExternalID, Err: fmt.Errorf("record %d: %w", r.Line, r.Err)})
			}
			extra := res.RejectedCount - len(res.Rejected)
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d rows\n", name, rows)
			if err := printSummary(cmd.OutOrStdout(), res, len(rejected)+extra); err != nil {
				return err
			}
			if len(rejected)+extra == 0 {
				return nil
			}
			w := cmd.ErrOrStderr()
			if full {
				fmt.Fprintf(w, "--full: %d line(s) were rejected, so no contact was removed; fix them and import again\n", len(rejected)+extra)
			}
			printRejected(w, rejected, extra)
			return exitError{code: 2}
		}),
	}
	importCmd.Flags().StringVar(&source, "source", addressbook.SourceCSV, "the source the contacts belong to: csv or softswitch")
	importCmd.Flags().BoolVar(&full, "full", false, "also remove the source's contacts that are not in the file (only when every line was imported)")

	exportCmd := &cobra.Command{
		Use:   "export [FILE|-]",
		Short: "Export the company address book as CSV (to standard output by default)",
		Long: `Export every directory contact, merged from its sources, as CSV in the
format import reads: "," separated, UTF-8. A contact's id is the id of its
CSV record when it has one, so importing the file again (edited or not, with
--full) updates the same records; other contacts get "contact:<id>" and,
imported, are joined to their contact by e-mail or by name and number.`,
		Args: cobra.MaximumNArgs(1),
		RunE: withDirectory(&cf, func(cmd *cobra.Command, args []string, env *directoryEnv) error {
			target := "-"
			if len(args) == 1 {
				target = args[0]
			}
			if target == "-" {
				n, err := env.dir.ExportCSV(cmd.Context(), cmd.OutOrStdout())
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "exported %d contacts\n", n)
				return nil
			}
			var n int
			err := writeFileAtomic(target, func(w io.Writer) (err error) {
				n, err = env.dir.ExportCSV(cmd.Context(), w)
				return err
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "exported %d contacts to %s\n", n, target)
			return nil
		}),
	}

	syncCmd := &cobra.Command{Use: "sync", Short: "Run an address book source once"}
	softswitchCmd := &cobra.Command{
		Use:   "softswitch",
		Short: "Read the softswitch's directory database (addressbook.softswitch) into the address book",
		Args:  cobra.NoArgs,
		RunE: withDirectory(&cf, func(cmd *cobra.Command, _ []string, env *directoryEnv) error {
			sc := env.cfg.Addressbook.Softswitch
			if !sc.Enabled {
				return fmt.Errorf("the softswitch source is disabled: set addressbook.softswitch.enabled to true (%s=true) with addressbook.softswitch.dsn and addressbook.softswitch.query",
					config.EnvName("addressbook.softswitch.enabled"))
			}
			s, err := addressbook.NewSoftswitch(sc, env.log)
			if err != nil {
				return err
			}
			defer s.Close()
			started := time.Now()
			res, err := s.Sync(cmd.Context(), env.dir)
			if err != nil {
				return err
			}
			if err := printSummary(cmd.OutOrStdout(), res, res.RejectedCount); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "took\t%s\n", time.Since(started).Round(time.Millisecond))
			if res.RejectedCount == 0 {
				return nil
			}
			printRejected(cmd.ErrOrStderr(), res.Rejected, res.RejectedCount-len(res.Rejected))
			return exitError{code: 2}
		}),
	}
	syncCmd.AddCommand(softswitchCmd)

	cmd.AddCommand(importCmd, exportCmd, syncCmd)
	return cmd
}

func printSummary(w io.Writer, res addressbook.SyncResult, rejected int) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range []struct {
		k string
		v int
	}{{"created", res.Created}, {"merged", res.Merged}, {"updated", res.Updated}, {"unchanged", res.Unchanged},
		{"removed", res.Removed}, {"rejected", rejected}} {
		fmt.Fprintf(tw, "%s\t%d\n", r.k, r.v)
	}
	return tw.Flush()
}

// printRejected lists refused lines ("line N: why") or rows ("id X: why"),
// at most maxRejectedShown, then how many more there were.
func printRejected(w io.Writer, rejected []addressbook.RecordError, extra int) {
	for i, r := range rejected {
		if i == maxRejectedShown {
			extra += len(rejected) - i
			break
		}
		msg := strings.TrimPrefix(r.Err.Error(), addressbook.ErrInvalid.Error()+": ")
		switch {
		case r.Line > 0:
			fmt.Fprintf(w, "line %d: %s\n", r.Line, msg)
		case r.ExternalID != "":
			fmt.Fprintf(w, "id %s: %s\n", strconv.Quote(r.ExternalID), msg)
		default:
			fmt.Fprintln(w, msg)
		}
	}
	if extra > 0 {
		fmt.Fprintf(w, "… and %d more rejected\n", extra)
	}
}

// writeFileAtomic writes a file through a temporary one in the same
// directory, so a failed export leaves no half file behind. The file is
// readable by its owner only: it holds personal data.
func writeFileAtomic(path string, write func(io.Writer) error) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := write(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return errors.Join(err, os.Remove(f.Name()))
	}
	return nil
}

// countBar is progress.go's bar for counting records: a bar on a
// terminal, a line every few seconds otherwise.
type countBar struct {
	p          *progress
	verb, noun string
}

func newCountBar(w io.Writer, verb, noun string) *countBar {
	return &countBar{p: newProgress(w), verb: verb, noun: noun}
}

func (b *countBar) update(done, of int) {
	p := b.p
	p.count, p.of = done, of
	interval := 5 * time.Second
	if p.tty {
		interval = 100 * time.Millisecond
	}
	if now := time.Now(); now.Sub(p.last) >= interval {
		p.last = now
		b.draw()
	}
}

func (b *countBar) draw() {
	p := b.p
	if !p.tty {
		fmt.Fprintf(p.w, "%s %d/%d %s\n", b.verb, p.count, p.of, b.noun)
		return
	}
	p.drawn = true
	const width = 30
	filled := 0
	if p.of > 0 {
		filled = min(width, p.count*width/p.of)
	}
	fmt.Fprintf(p.w, "\r[%s%s] %d/%d %s", strings.Repeat("#", filled), strings.Repeat(".", width-filled), p.count, p.of, b.noun)
}

func (b *countBar) done() {
	if b.p.tty && b.p.drawn {
		b.draw()
		fmt.Fprintln(b.p.w)
	}
}
