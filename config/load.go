package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"sort"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
)

// MaxFileBytes bounds the configuration file; a larger one is a mistake.
const MaxFileBytes = 1 << 20

// Source is everything a configuration is built from. Environ and Flags are
// passed in rather than read from the process so tests and `config check`
// see exactly what serve would.
type Source struct {
	// File is a YAML file; empty means none. A named file that does not
	// exist is an error.
	File string
	// Environ is the process environment (os.Environ()); only ELPH_* matter.
	Environ []string
	// Flags maps keys to values given on the command line.
	Flags map[string]string
}

// Problem is one thing wrong with the configuration, tied to its key.
type Problem struct {
	Key     string
	Message string
}

func (p Problem) String() string {
	if p.Key == "" {
		return p.Message
	}
	return p.Key + ": " + p.Message
}

// Problems is every problem found; it is the error Load and Validate return.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return fmt.Sprintf("%d configuration problem(s):\n  %s", len(ps), strings.Join(lines, "\n  "))
}

// Loaded is a configuration together with the notes made while loading it.
type Loaded struct {
	Config Config
	// Warnings are oddities that do not stop the node, such as an ELPH_*
	// variable that names no key.
	Warnings []string
}

// envIgnored are ELPH_* variables that are not configuration keys.
var envIgnored = map[string]bool{
	"ELPH_CONFIG":           true,
	"ELPH_REQUIRE_SERVICES": true,
	"ELPH_TEST_MYSQL_DSN":   true,
}

// Load builds the configuration from defaults, then the file, then the
// environment, then flags, and validates it. Every problem found is
// returned together as Problems.
func Load(src Source) (*Loaded, error) {
	def := Default()
	known := make(map[string]bool)
	byEnv := make(map[string]string)
	for _, k := range Keys() {
		known[k] = true
		byEnv[EnvName(k)] = k
	}

	k := koanf.New(".")
	if err := k.Load(confmap.Provider(flatten(&def), "."), nil); err != nil {
		return nil, fmt.Errorf("load defaults: %w", err)
	}

	var problems Problems
	loaded := &Loaded{}

	if src.File != "" {
		st, err := os.Stat(src.File)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, Problems{{Key: "", Message: fmt.Sprintf("config file %s does not exist", src.File)}}
		case err != nil:
			return nil, Problems{{Message: fmt.Sprintf("config file %s: %v", src.File, err)}}
		case st.Size() > MaxFileBytes:
			return nil, Problems{{Message: fmt.Sprintf("config file %s is %d bytes, more than the %d allowed", src.File, st.Size(), MaxFileBytes)}}
		}
		fk := koanf.New(".")
		if err := fk.Load(file.Provider(src.File), yaml.Parser()); err != nil {
			return nil, Problems{{Message: fmt.Sprintf("config file %s: %v", src.File, err)}}
		}
		for _, key := range fk.Keys() {
			if !known[key] && !(fk.Get(key) == nil && isPrefix(key, known)) {
				problems = append(problems, Problem{Key: key, Message: "unknown key" + suggest(key, known)})
			}
		}
		if err := k.Merge(fk); err != nil {
			return nil, fmt.Errorf("merge %s: %w", src.File, err)
		}
	}

	env := make(map[string]any)
	for _, kv := range src.Environ {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, "ELPH_") || envIgnored[name] {
			continue
		}
		key, ok := byEnv[name]
		if !ok {
			loaded.Warnings = append(loaded.Warnings, fmt.Sprintf("environment variable %s names no configuration key", name))
			continue
		}
		env[key] = val
	}
	if err := k.Load(confmap.Provider(env, "."), nil); err != nil {
		return nil, fmt.Errorf("load environment: %w", err)
	}

	flags := make(map[string]any)
	for key, val := range src.Flags {
		if !known[key] {
			problems = append(problems, Problem{Key: key, Message: "unknown key given on the command line" + suggest(key, known)})
			continue
		}
		flags[key] = val
	}
	if err := k.Load(confmap.Provider(flags, "."), nil); err != nil {
		return nil, fmt.Errorf("load flags: %w", err)
	}

	// Decode key by key so one bad value names its key and does not hide
	// the problems of the others.
	var cfg Config
	for _, f := range fields(reflect.ValueOf(&cfg)) {
		if err := decode(k.Get(f.key), f.value.Addr().Interface()); err != nil {
			problems = append(problems, Problem{Key: f.key, Message: err.Error()})
		}
		// An empty list from YAML ([]) and an absent one mean the same.
		if f.value.Kind() == reflect.Slice && f.value.Len() == 0 {
			f.value.SetZero()
		}
	}
	loaded.Config = cfg
	problems = append(problems, cfg.Validate()...)
	if len(problems) > 0 {
		return loaded, problems
	}
	return loaded, nil
}

func decode(in any, out any) error {
	d, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.TextUnmarshallerHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
		),
		WeaklyTypedInput: true,
		Result:           out,
	})
	if err != nil {
		return err
	}
	if err := d.Decode(in); err != nil {
		// mapstructure prefixes its own path ("'' expected ..."); keep the reason.
		msg := err.Error()
		if i := strings.LastIndex(msg, "error(s) decoding:\n\n* "); i >= 0 {
			msg = msg[i+len("error(s) decoding:\n\n* "):]
		}
		return errors.New(strings.TrimPrefix(msg, "'' "))
	}
	return nil
}

func isPrefix(key string, known map[string]bool) bool {
	for k := range known {
		if strings.HasPrefix(k, key+".") {
			return true
		}
	}
	return false
}

// suggest names the known key closest to a mistyped one.
func suggest(key string, known map[string]bool) string {
	best, bestD := "", 4
	keys := make([]string, 0, len(known))
	for k := range known {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if d := distance(key, k); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

// distance is the Levenshtein distance, enough to catch typos in keys.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
