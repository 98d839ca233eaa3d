package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

func serveCmd() *cobra.Command {
	var (
		cf      configFlags
		all     bool
		role    string
		modules []string
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the server (every module with --all, or a role)",
		Long: `Run an Elph node.

  elph serve --all            every module in one process (small sites, make run)
  elph serve --role=server    the internal server node (several may run behind a proxy)
  elph serve --role=proxy     the DMZ gateway: one TLS port, no database
  elph serve --role=edge      STUN, SIP edge and media relay
  elph serve --modules=a,b    exactly these modules

SIGTERM or SIGINT drains connections and stops; SIGHUP reloads the log
level and TLS certificates.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			extra := map[string]string{}
			switch {
			case all && cmd.Flags().Changed("role"):
				return errors.New("--all and --role exclude each other")
			case all:
				extra["node.role"] = "all"
			case cmd.Flags().Changed("role"):
				extra["node.role"] = role
			}
			if cmd.Flags().Changed("modules") {
				extra["node.modules"] = strings.Join(modules, ",")
			}
			src, err := cf.source(cmd.Flags(), extra)
			if err != nil {
				return err
			}
			loaded, err := load(src, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)

			n, err := newNode(ctx, loaded, src, cmd.ErrOrStderr())
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "elph: cannot start:", err)
				return exitError{code: 1}
			}
			if err := n.run(ctx, hup, stop); err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "elph:", err)
				return exitError{code: 1}
			}
			return nil
		},
	}
	cf.register(cmd.Flags())
	cmd.Flags().BoolVar(&all, "all", false, "run every module (node.role=all)")
	cmd.Flags().StringVar(&role, "role", "", "node role: all, server, proxy or edge (node.role)")
	cmd.Flags().StringSliceVar(&modules, "modules", nil, "run exactly these modules, comma-separated (node.modules)")
	return cmd
}
