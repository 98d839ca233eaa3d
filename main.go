// Command elph is Elph server: chat, presence, call history, address book,
// files, push and single sign-on for a softswitch's users, in one binary.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// Set at build time with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = "unknown"
)

// exitError carries the process exit code of a command that has already
// told the user what went wrong.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func main() {
	root := &cobra.Command{
		Use:           "elph",
		Short:         "Elph server: unified communications for softswitch users, in one binary",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(serveCmd(), certCmd(), migrateCmd(), configCmd(), userCmd(), ldapCmd(), addressbookCmd(), versionCmd())
	if err := root.Execute(); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "elph:", err)
		os.Exit(1)
	}
}
