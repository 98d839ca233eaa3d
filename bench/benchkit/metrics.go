package benchkit

import (
	"bufio"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Metrics are a node's admin /metrics: every series by name and label
// set (`{a="b"}`, empty without labels).
type Metrics map[string]map[string]float64

// Get sums every series of name.
func (m Metrics) Get(name string) float64 {
	sum := 0.0
	for _, v := range m[name] {
		sum += v
	}
	return sum
}

// With sums the series of name whose labels contain label (e.g.
// `result="queued"`).
func (m Metrics) With(name, label string) float64 {
	sum := 0.0
	for l, v := range m[name] {
		if strings.Contains(l, label) {
			sum += v
		}
	}
	return sum
}

// Labelled lists the non-zero series of name, for a report line.
func (m Metrics) Labelled(name string) string {
	var s []string
	for l, v := range m[name] {
		if v != 0 {
			s = append(s, l+" "+strconv.FormatFloat(v, 'f', -1, 64))
		}
	}
	sort.Strings(s)
	if len(s) == 0 {
		return "none"
	}
	return "[" + strings.Join(s, ", ") + "]"
}

// Scrape reads the node's admin /metrics.
func (n *Node) Scrape() (Metrics, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + n.Admin + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("metrics: %s", resp.Status)
	}
	m := Metrics{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		name, labels := line[:sp], ""
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name, labels = name[:i], name[i:]
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		if m[name] == nil {
			m[name] = map[string]float64{}
		}
		m[name][labels] += v
	}
	return m, sc.Err()
}
