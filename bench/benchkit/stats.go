package benchkit

import (
	"fmt"
	"io"
	"slices"
	"time"
)

// Row prints name, count and min / median / p90 / p99 / max of values.
func Row(w io.Writer, name, unit string, values []float64) {
	if len(values) == 0 {
		fmt.Fprintf(w, "%-30s no samples\n", name)
		return
	}
	s := slices.Clone(values)
	slices.Sort(s)
	fmt.Fprintf(w, "%-30s %6d %9.2f %9.2f %9.2f %9.2f %9.2f %s\n", name, len(s), s[0], Quantile(s, .5), Quantile(s, .9), Quantile(s, .99), s[len(s)-1], unit)
}

// Header prints the column names Row uses.
func Header(w io.Writer) {
	fmt.Fprintf(w, "%-30s %6s %9s %9s %9s %9s %9s\n", "measure", "n", "min", "median", "p90", "p99", "max")
}

// Quantile of sorted values, nearest rank.
func Quantile(sorted []float64, q float64) float64 {
	return sorted[int(q*float64(len(sorted)-1)+0.5)]
}

// Millis converts durations to milliseconds for Row.
func Millis(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d.Microseconds()) / 1000
	}
	return out
}
