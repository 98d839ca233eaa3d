package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/elph-server/elph/config"
)

// configFlags are the flags every command that reads configuration takes.
type configFlags struct {
	file     string
	set      []string
	dataDir  string
	logLevel string
}

func (f *configFlags) register(fs *pflag.FlagSet) {
	fs.StringVarP(&f.file, "config", "c", "", "YAML configuration file (default: none; $ELPH_CONFIG)")
	fs.StringArrayVar(&f.set, "set", nil, "set a configuration key, e.g. --set log.level=debug (repeatable)")
	fs.StringVar(&f.dataDir, "data-dir", "", "state directory (node.data_dir)")
	fs.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error (log.level)")
}

// source turns the flags into a config.Source. Flags win over the
// environment, which wins over the file.
func (f *configFlags) source(fs *pflag.FlagSet, extra map[string]string) (config.Source, error) {
	src := config.Source{File: f.file, Environ: os.Environ(), Flags: map[string]string{}}
	if src.File == "" {
		src.File = os.Getenv("ELPH_CONFIG")
	}
	for _, kv := range f.set {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return src, fmt.Errorf("--set %q: want key=value", kv)
		}
		src.Flags[strings.TrimSpace(k)] = v
	}
	if fs.Changed("data-dir") {
		src.Flags["node.data_dir"] = f.dataDir
	}
	if fs.Changed("log-level") {
		src.Flags["log.level"] = f.logLevel
	}
	for k, v := range extra {
		src.Flags[k] = v
	}
	return src, nil
}

// load reads the configuration and, when it has problems, prints every one
// of them to w and returns an exitError.
func load(src config.Source, w io.Writer) (*config.Loaded, error) {
	l, err := config.Load(src)
	if err != nil {
		if ps, ok := err.(config.Problems); ok {
			fmt.Fprintf(w, "configuration has %d problem(s):\n", len(ps))
			for _, p := range ps {
				fmt.Fprintf(w, "  %s\n", p)
			}
			return nil, exitError{code: 1}
		}
		return nil, err
	}
	return l, nil
}
