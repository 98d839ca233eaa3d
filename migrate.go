package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/elph-server/elph/migrations"
	"github.com/elph-server/elph/platform/store"
)

func migrateCmd() *cobra.Command {
	var cf configFlags
	cmd := &cobra.Command{Use: "migrate", Short: "Apply or list database migrations (SQLite or MySQL/MariaDB)"}
	cf.register(cmd.PersistentFlags())

	open := func(cmd *cobra.Command) (db *store.DB, maskedDSN string, err error) {
		src, err := cf.source(cmd.Flags(), nil)
		if err != nil {
			return nil, "", err
		}
		l, err := load(src, cmd.ErrOrStderr())
		if err != nil {
			return nil, "", err
		}
		o, err := storeOptions(&l.Config)
		if err != nil {
			return nil, "", err
		}
		db, err = store.Open(cmd.Context(), o)
		if err != nil {
			return nil, "", err
		}
		return db, store.MaskDSN(o.Driver, o.DSN), nil
	}

	up := &cobra.Command{
		Use:   "up",
		Short: "Apply every pending migration",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, where, err := open(cmd)
			if err != nil {
				return err
			}
			defer db.Close()
			fsys, err := migrations.FS(db.Dialect.Name())
			if err != nil {
				return err
			}
			applied, err := db.Migrate(cmd.Context(), fsys)
			if err != nil {
				return err
			}
			for _, r := range applied {
				fmt.Fprintf(cmd.OutOrStdout(), "applied %05d %s (%s)\n", r.Version, r.Source, r.Duration.Round(1e6))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s database %s is up to date (%d applied now)\n",
				db.Dialect.Name(), where, len(applied))
			return nil
		},
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "List migrations and whether each is applied",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, _, err := open(cmd)
			if err != nil {
				return err
			}
			defer db.Close()
			fsys, err := migrations.FS(db.Dialect.Name())
			if err != nil {
				return err
			}
			st, err := db.MigrationStatus(cmd.Context(), fsys)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tSTATE\tAPPLIED AT\tSOURCE")
			pending := 0
			for _, s := range st {
				state, at := "pending", "-"
				if s.Applied {
					state, at = "applied", s.AppliedAt.UTC().Format("2006-01-02 15:04:05Z")
				} else {
					pending++
				}
				fmt.Fprintf(tw, "%05d\t%s\t%s\t%s\n", s.Version, state, at, s.Source)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d migration(s), %d pending (%s)\n", len(st), pending, db.Dialect.Name())
			return nil
		},
	}
	cmd.AddCommand(up, status)
	return cmd
}
