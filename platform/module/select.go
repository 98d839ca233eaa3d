package module

import (
	"fmt"
	"slices"
	"strings"
)

// Select picks the specs a node runs: the explicit list when given,
// otherwise every spec whose Roles include role ("all" takes every spec).
// disabled names modules switched off in configuration. Unknown names are
// an error that lists what this binary has.
func Select(specs []Spec, role string, explicit []string, disabled func(string) bool) ([]Spec, error) {
	byName := make(map[string]Spec, len(specs))
	names := make([]string, 0, len(specs))
	for _, s := range specs {
		byName[s.Name] = s
		names = append(names, s.Name)
	}
	var out []Spec
	if len(explicit) > 0 {
		for _, n := range explicit {
			s, ok := byName[n]
			if !ok {
				return nil, fmt.Errorf("module %q is not built into this binary (it has: %s)", n, strings.Join(names, ", "))
			}
			if disabled(n) {
				return nil, fmt.Errorf("module %q is asked for but modules.%s.enabled is false", n, n)
			}
			if !slices.ContainsFunc(out, func(x Spec) bool { return x.Name == n }) {
				out = append(out, s)
			}
		}
		return out, nil
	}
	for _, s := range specs {
		if disabled(s.Name) {
			continue
		}
		if role == "all" || slices.Contains(s.Roles, role) {
			out = append(out, s)
		}
	}
	return out, nil
}
