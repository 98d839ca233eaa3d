package config

import (
	"fmt"
	"reflect"
	"time"

	"github.com/knadh/koanf/maps"
	"go.yaml.in/yaml/v3"
)

// Masked stands in for a secret in printed configuration.
const Masked = "***"

// YAML renders the effective configuration with secrets masked. maskDSN
// masks the password inside a database DSN (the store knows each driver's
// syntax); secrets tagged secret:"true" are replaced whole.
func (c *Config) YAML(maskDSN func(driver, dsn string) string) ([]byte, error) {
	flat := make(map[string]any)
	for _, f := range fields(reflect.ValueOf(c)) {
		v := f.value.Interface()
		switch x := v.(type) {
		case time.Duration:
			v = x.String()
		case ByteSize:
			v = x.String()
		}
		if s, ok := v.(string); ok && s != "" {
			switch f.secret {
			case "true":
				v = Masked
			case "dsn":
				v = maskDSN(c.Database.Driver, s)
			}
		}
		flat[f.key] = v
	}
	out, err := yaml.Marshal(maps.Unflatten(flat, "."))
	if err != nil {
		return nil, fmt.Errorf("render configuration: %w", err)
	}
	return out, nil
}
