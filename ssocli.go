package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/elph-server/elph/config"
	"github.com/elph-server/elph/modules/sso"
	"github.com/elph-server/elph/platform/bus"
	"github.com/elph-server/elph/platform/store"
)

// ssoEnv is the sso module opened outside `serve`, for the account and
// directory commands. It publishes to a bus of its own: a running node
// learns of CLI changes from the database (revoked sessions stop
// refreshing; access tokens end within sso.access_token_ttl).
type ssoEnv struct {
	mod *sso.Module
	db  *store.DB
	bus *bus.Memory
}

func openSSO(ctx context.Context, cf *configFlags, cmd *cobra.Command) (*ssoEnv, error) {
	cfg, log, db, err := openMigrated(ctx, cf, cmd)
	if err != nil {
		return nil, err
	}
	b, err := bus.NewMemory(bus.MemoryOptions{})
	if err != nil {
		db.Close()
		return nil, err
	}
	mod, err := sso.New(sso.Options{
		Config: cfg.SSO, Log: log, DB: db, Bus: b,
		Metrics: prometheus.NewRegistry(), Out: cmd.OutOrStdout(),
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &ssoEnv{mod: mod, db: db, bus: b}, nil
}

// withSSO wraps a command's body with opening and closing the module.
func withSSO(cf *configFlags, fn func(cmd *cobra.Command, args []string, env *ssoEnv) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		env, err := openSSO(cmd.Context(), cf, cmd)
		if err != nil {
			return err
		}
		defer env.close(cmd.Context())
		return fn(cmd, args, env)
	}
}

func (e *ssoEnv) close(ctx context.Context) {
	_ = e.bus.Close(ctx)
	_ = e.db.Close()
}

func userCmd() *cobra.Command {
	var cf configFlags
	cmd := &cobra.Command{Use: "user", Short: "Manage local accounts (add, list, disable, enable, passwd)"}
	cf.register(cmd.PersistentFlags())

	var (
		n             sso.NewUser
		admin, gen    bool
		phones        []string
		passwordStdin bool
	)
	add := &cobra.Command{
		Use:   "add LOGIN",
		Short: "Create a local account",
		Args:  cobra.ExactArgs(1),
		RunE: withSSO(&cf, func(cmd *cobra.Command, args []string, env *ssoEnv) error {
			n.Login = args[0]
			if admin {
				n.Role = sso.RoleAdmin
			}
			for _, p := range phones {
				num, kind, _ := strings.Cut(p, ":")
				n.Phones = append(n.Phones, sso.Phone{Number: num, Kind: sso.PhoneKind(kind)})
			}
			pw, err := newPassword(cmd, gen, passwordStdin)
			if err != nil {
				return err
			}
			n.Password = pw
			u, err := env.mod.CreateLocalUser(cmd.Context(), n)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created %s (id %d, role %s)\n", u.Login, u.ID, u.Role)
			if gen {
				fmt.Fprintf(cmd.OutOrStdout(), "password: %s\n", n.Password)
			}
			return nil
		}),
	}
	add.Flags().StringVar(&n.DisplayName, "name", "", "display name")
	add.Flags().StringVar(&n.Email, "email", "", "e-mail address")
	add.Flags().StringVar(&n.Department, "department", "", "department")
	add.Flags().StringVar(&n.Title, "title", "", "job title")
	add.Flags().StringArrayVar(&phones, "phone", nil, "phone number, optionally NUMBER:KIND (extension, work, mobile); repeatable")
	add.Flags().BoolVar(&admin, "admin", false, "make the account an admin")
	add.Flags().BoolVar(&gen, "generate-password", false, "generate a password and print it")
	add.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from standard input")

	var all bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List accounts",
		Args:  cobra.NoArgs,
		RunE: withSSO(&cf, func(cmd *cobra.Command, _ []string, env *ssoEnv) error {
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tLOGIN\tNAME\tROLE\tSOURCE\tSTATE\tPHONES")
			var after int64
			for {
				users, err := env.mod.Store().ListUsers(cmd.Context(), sso.ListUsersOptions{After: after, Limit: 500, IncludeDisabled: all})
				if err != nil {
					return err
				}
				for _, u := range users {
					state := "enabled"
					if u.Disabled {
						state = "disabled"
					}
					nums := make([]string, len(u.Phones))
					for i, p := range u.Phones {
						nums[i] = p.Number
					}
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", u.ID, u.Login, u.DisplayName, u.Role, u.Source, state, strings.Join(nums, ","))
				}
				if len(users) < 500 {
					break
				}
				after = users[len(users)-1].ID
			}
			return tw.Flush()
		}),
	}
	list.Flags().BoolVar(&all, "all", false, "include disabled accounts")

	setDisabled := func(use, short string, disable bool) *cobra.Command {
		var reason string
		c := &cobra.Command{
			Use:   use + " LOGIN",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: withSSO(&cf, func(cmd *cobra.Command, args []string, env *ssoEnv) error {
				u, _, err := env.mod.Store().UserByLogin(cmd.Context(), args[0])
				if err != nil {
					return fmt.Errorf("%s: %w", args[0], err)
				}
				if err := env.mod.SetDisabled(cmd.Context(), u.ID, disable, reason); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%sd %s\n", use, u.Login)
				return nil
			}),
		}
		if disable {
			c.Flags().StringVar(&reason, "reason", "", "why (shown to admins)")
		}
		return c
	}

	var pwGen, pwStdin bool
	passwd := &cobra.Command{
		Use:   "passwd LOGIN",
		Short: "Set a local account's password (ends its sessions)",
		Args:  cobra.ExactArgs(1),
		RunE: withSSO(&cf, func(cmd *cobra.Command, args []string, env *ssoEnv) error {
			u, _, err := env.mod.Store().UserByLogin(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			pw, err := newPassword(cmd, pwGen, pwStdin)
			if err != nil {
				return err
			}
			if err := env.mod.SetPassword(cmd.Context(), u.ID, pw, ""); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "password of %s changed\n", u.Login)
			if pwGen {
				fmt.Fprintf(cmd.OutOrStdout(), "password: %s\n", pw)
			}
			return nil
		}),
	}
	passwd.Flags().BoolVar(&pwGen, "generate-password", false, "generate a password and print it")
	passwd.Flags().BoolVar(&pwStdin, "password-stdin", false, "read the password from standard input")

	cmd.AddCommand(add, list, setDisabled("disable", "Disable an account and end its sessions", true),
		setDisabled("enable", "Enable an account", false), passwd)
	return cmd
}

// newPassword gets a password: generated, read from standard input, or
// typed twice at the terminal without echo.
func newPassword(cmd *cobra.Command, generate, fromStdin bool) (string, error) {
	switch {
	case generate:
		return randText(), nil
	case fromStdin || !term.IsTerminal(int(os.Stdin.Fd())):
		line, err := bufio.NewReader(io.LimitReader(cmd.InOrStdin(), 4096)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read password: %w", err)
		}
		pw := strings.TrimRight(line, "\r\n")
		if pw == "" {
			return "", errors.New("no password on standard input (or use --generate-password)")
		}
		return pw, nil
	}
	fmt.Fprint(cmd.ErrOrStderr(), "New password: ")
	a, err := term.ReadPassword(int(os.Stdin.Fd()))
	fmt.Fprintln(cmd.ErrOrStderr())
	if err != nil {
		return "", err
	}
	fmt.Fprint(cmd.ErrOrStderr(), "Repeat: ")
	b, err := term.ReadPassword(int(os.Stdin.Fd()))
	fmt.Fprintln(cmd.ErrOrStderr())
	if err != nil {
		return "", err
	}
	if string(a) != string(b) {
		return "", errors.New("the passwords differ")
	}
	return string(a), nil
}

func ldapCmd() *cobra.Command {
	var cf configFlags
	cmd := &cobra.Command{Use: "ldap", Short: "Active Directory / LDAP commands"}
	cf.register(cmd.PersistentFlags())
	var dry bool
	syncCmd := &cobra.Command{
		Use:   "sync",
		Short: "Read every user and group from the directory and update the accounts",
		Args:  cobra.NoArgs,
		RunE: withSSO(&cf, func(cmd *cobra.Command, _ []string, env *ssoEnv) error {
			bar := newProgress(cmd.ErrOrStderr())
			sum, err := env.mod.SyncDirectory(cmd.Context(), sso.SyncOptions{DryRun: dry, Progress: bar.update})
			bar.done()
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if dry {
				fmt.Fprintln(w, "dry run: nothing was written")
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			for _, r := range []struct {
				k string
				v int
			}{{"groups", sum.Groups}, {"users seen", sum.Seen}, {"created", sum.Created}, {"updated", sum.Updated},
				{"unchanged", sum.Unchanged}, {"disabled", sum.Disabled}, {"errors", sum.Errors}} {
				fmt.Fprintf(tw, "%s\t%d\n", r.k, r.v)
			}
			fmt.Fprintf(tw, "took\t%s\n", sum.Finished.Sub(sum.Started).Round(1e6))
			if err := tw.Flush(); err != nil {
				return err
			}
			if sum.Errors > 0 {
				return exitError{code: 1}
			}
			return nil
		}),
	}
	syncCmd.Flags().BoolVar(&dry, "dry-run", false, "report what would change without writing")
	cmd.AddCommand(syncCmd)
	return cmd
}

func randText() string { return rand.Text() }

// newLevel is the log level of a CLI command.
func newLevel(s string) *slog.LevelVar {
	v := new(slog.LevelVar)
	if l, err := config.ParseLevel(s); err == nil {
		v.Set(l)
	}
	return v
}
