package config

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// The example file documents every key with its default: loading it must
// give exactly the defaults, and no key may be missing from it.
func TestExampleFileIsCompleteAndMatchesDefaults(t *testing.T) {
	const path = "../elph.example.yaml"
	l, err := Load(Source{File: path})
	if err != nil {
		t.Fatalf("example does not load: %v", err)
	}
	if def := Default(); !reflect.DeepEqual(l.Config, def) {
		t.Errorf("example differs from the defaults:\nexample %+v\ndefault %+v", l.Config, def)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	for _, k := range Keys() {
		leaf := k[strings.LastIndex(k, ".")+1:]
		if !regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(leaf) + `:`).MatchString(text) {
			t.Errorf("example lacks key %s", k)
		}
	}
}
