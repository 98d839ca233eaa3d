package benchkit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// HTTPError is an answer with a status the caller did not want.
type HTTPError struct {
	status int
	msg    string
}

func (e *HTTPError) Error() string { return fmt.Sprintf("%d %s", e.status, e.msg) }

// Call sends a JSON request (body may be nil) with an optional bearer
// token, and decodes the answer into out when its status is one of want.
func Call(ctx context.Context, c *http.Client, method, url, token string, body, out any, want ...int) (int, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if !slices.Contains(want, resp.StatusCode) {
		return resp.StatusCode, &HTTPError{resp.StatusCode, method + " " + url + ": " + strings.TrimSpace(string(b))}
	}
	if out != nil {
		return resp.StatusCode, json.Unmarshal(b, out)
	}
	return resp.StatusCode, nil
}

// SystemCPU is the busy time of every CPU from /proc/stat, in seconds.
func SystemCPU() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, errors.New("unexpected /proc/stat")
	}
	var busy float64
	for i, v := range f[1:] {
		n, _ := strconv.ParseFloat(v, 64)
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest times are in user already
			continue
		}
		busy += n
	}
	return busy / 100, nil // USER_HZ
}

// CPUOf is the user plus system time of a rusage, in seconds.
func CPUOf(r syscall.Rusage) float64 {
	return float64(r.Utime.Nano()+r.Stime.Nano()) / 1e9
}
