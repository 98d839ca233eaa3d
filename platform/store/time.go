package store

import "time"

// Time returns t as both databases keep it: UTC, to the microsecond.
// Without it SQLite would keep nanoseconds and MySQL's DATETIME(6) round
// them, and a value read back would differ from the one written.
func Time(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// TimePtr is Time for nullable columns.
func TimePtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := Time(*t)
	return &v
}
