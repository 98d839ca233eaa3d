package config

import (
	"reflect"
	"strings"
	"time"
)

// field is one leaf of the configuration: its dotted key, its value and how
// it is masked when printed.
type field struct {
	key    string
	value  reflect.Value
	secret string // "", "true" (mask whole value) or "dsn" (mask the password inside)
}

// fields walks a Config (or a pointer to one) and returns its leaves in
// declaration order. Embedded structs tagged ",squash" share their parent's
// prefix, as mapstructure decodes them.
func fields(v reflect.Value) []field {
	var out []field
	var walk func(v reflect.Value, prefix string)
	walk = func(v reflect.Value, prefix string) {
		if v.Kind() == reflect.Pointer {
			v = v.Elem()
		}
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			tag := sf.Tag.Get("koanf")
			name, opts, _ := strings.Cut(tag, ",")
			fv := v.Field(i)
			if opts == "squash" {
				walk(fv, prefix)
				continue
			}
			if name == "" {
				continue
			}
			key := name
			if prefix != "" {
				key = prefix + "." + name
			}
			if sf.Type.Kind() == reflect.Struct && sf.Type != reflect.TypeOf(time.Duration(0)) {
				walk(fv, key)
				continue
			}
			out = append(out, field{key: key, value: fv, secret: sf.Tag.Get("secret")})
		}
	}
	walk(v, "")
	return out
}

// Keys lists every configuration key in declaration order.
func Keys() []string {
	c := Default()
	fs := fields(reflect.ValueOf(&c))
	keys := make([]string, len(fs))
	for i, f := range fs {
		keys[i] = f.key
	}
	return keys
}

// EnvName is the environment variable that sets key.
func EnvName(key string) string {
	return "ELPH_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// flatten turns a Config into a dotted-key map of plain values, the form
// koanf loads defaults from.
func flatten(c *Config) map[string]any {
	m := make(map[string]any)
	for _, f := range fields(reflect.ValueOf(c)) {
		m[f.key] = f.value.Interface()
	}
	return m
}

// Diff lists the keys whose values differ between a and b, in declaration
// order; a reload uses it to say which changes need a restart.
func Diff(a, b *Config) []string {
	fa, fb := fields(reflect.ValueOf(a)), fields(reflect.ValueOf(b))
	var out []string
	for i := range fa {
		if !reflect.DeepEqual(fa[i].value.Interface(), fb[i].value.Interface()) {
			out = append(out, fa[i].key)
		}
	}
	return out
}
