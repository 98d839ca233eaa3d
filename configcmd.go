package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/elph-server/elph/platform/module"
	"github.com/elph-server/elph/platform/store"
)

func configCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Check or print the configuration"}
	var cf configFlags
	cf.register(cmd.PersistentFlags())

	check := &cobra.Command{
		Use:   "check",
		Short: "Report every configuration problem with its key; exit 1 if there is any",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			src, err := cf.source(cmd.Flags(), nil)
			if err != nil {
				return err
			}
			l, err := load(src, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			for _, w := range l.Warnings {
				fmt.Fprintln(cmd.OutOrStdout(), "warning:", w)
			}
			if _, err := module.Select(newWiring(&l.Config, nil).specs(), l.Config.Node.Role, l.Config.Node.Modules, disabled(&l.Config)); err != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "configuration has 1 problem(s):\n  node.modules: %v\n", err)
				return exitError{code: 1}
			}
			fmt.Fprintln(cmd.OutOrStdout(), "configuration is valid")
			return nil
		},
	}
	print := &cobra.Command{
		Use:   "print",
		Short: "Print the effective configuration (defaults, file, environment, flags) with secrets masked",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			src, err := cf.source(cmd.Flags(), nil)
			if err != nil {
				return err
			}
			l, err := load(src, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			out, err := l.Config.YAML(store.MaskDSN)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	cmd.AddCommand(check, print)
	return cmd
}
