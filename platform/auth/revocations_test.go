package auth

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

var r0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestRevocationsKeepFor(t *testing.T) {
	const keep = 10 * time.Minute
	tests := []struct {
		name  string
		after time.Duration // since Revoke
		want  bool
	}{
		{"at once", 0, true},
		{"just before keepFor", keep - time.Nanosecond, true},
		{"at keepFor", keep, false},
		{"long after", 24 * time.Hour, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &testClock{t: r0}
			r := NewRevocations(keep, c.Now)
			if r.IsRevoked("s1") {
				t.Fatal("s1 revoked before Revoke")
			}
			r.Revoke("s1")
			c.Advance(tt.after)
			if got := r.IsRevoked("s1"); got != tt.want {
				t.Errorf("IsRevoked after %v = %v, want %v", tt.after, got, tt.want)
			}
			if r.IsRevoked("s2") {
				t.Error("an unrelated session is revoked")
			}
		})
	}
}

func TestRevocationsRevokeAgainExtends(t *testing.T) {
	c := &testClock{t: r0}
	r := NewRevocations(10*time.Minute, c.Now)
	r.Revoke("s1")
	c.Advance(5 * time.Minute)
	r.Revoke("s1")
	c.Advance(7 * time.Minute)
	if !r.IsRevoked("s1") {
		t.Error("second Revoke did not extend the entry")
	}
}

func TestRevocationsDone(t *testing.T) {
	c := &testClock{t: r0}
	r := NewRevocations(10*time.Minute, c.Now)

	a, cancelA := r.Done("s1")
	b, cancelB := r.Done("s1")
	other, cancelOther := r.Done("s2")
	defer cancelA()
	defer cancelB()
	if isClosed(a) || isClosed(b) || isClosed(other) {
		t.Fatal("a Done channel is closed before any Revoke")
	}

	r.Revoke("s1")
	if !isClosed(a) || !isClosed(b) {
		t.Error("Revoke did not close every Done channel of its session")
	}
	if isClosed(other) {
		t.Error("Revoke closed another session's channel")
	}
	if _, ok := r.waiters["s1"]; ok {
		t.Error("waiters of a revoked session are still registered")
	}

	late, cancelLate := r.Done("s1")
	if !isClosed(late) {
		t.Error("Done for an already revoked session is not closed")
	}
	cancelLate()

	cancelOther()
	if n := len(r.waiters); n != 0 {
		t.Errorf("%d sessions still have waiters after every cancel", n)
	}
}

func TestRevocationsCancelUnregisters(t *testing.T) {
	r := NewRevocations(time.Minute, (&testClock{t: r0}).Now)
	var cancels []func()
	for i := range 100 {
		_, cancel := r.Done(fmt.Sprintf("s%d", i%10))
		cancels = append(cancels, cancel)
	}
	if n := len(r.waiters); n != 10 {
		t.Fatalf("waiters for %d sessions, want 10", n)
	}
	for _, cancel := range cancels {
		cancel()
		cancel() // a second call is harmless
	}
	if n := len(r.waiters); n != 0 {
		t.Errorf("waiters for %d sessions after cancel, want 0", n)
	}
	// Cancelling after the session is revoked is harmless too.
	_, cancel := r.Done("s1")
	r.Revoke("s1")
	cancel()
	if n := len(r.waiters); n != 0 {
		t.Errorf("waiters for %d sessions, want 0", n)
	}
}

func TestRevocationsSweepBoundsTheSet(t *testing.T) {
	const keep = 10 * time.Minute
	c := &testClock{t: r0}
	r := NewRevocations(keep, c.Now)
	for i := range 1000 {
		r.Revoke(fmt.Sprintf("old-%d", i))
	}
	c.Advance(keep / 2)
	r.Revoke("middle")
	if n := len(r.until); n != 1001 {
		t.Fatalf("%d entries before any expired, want 1001", n)
	}
	c.Advance(keep / 2)
	r.Revoke("new")
	if n := len(r.until); n != 2 {
		t.Errorf("%d entries after the sweep, want 2 (middle, new)", n)
	}
	if !r.IsRevoked("middle") || !r.IsRevoked("new") || r.IsRevoked("old-1") {
		t.Error("the sweep dropped a live entry or kept an expired one")
	}
}

func TestRevocationsConcurrent(t *testing.T) {
	r := NewRevocations(time.Minute, nil)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				id := fmt.Sprintf("s%d", (g+i)%16)
				ch, cancel := r.Done(id)
				if i%3 == 0 {
					r.Revoke(id)
					if !isClosed(ch) {
						t.Errorf("Done(%s) not closed after Revoke", id)
					}
				}
				_ = r.IsRevoked(id)
				cancel()
			}
		})
	}
	wg.Wait()
	if n := len(r.waiters); n != 0 {
		t.Errorf("waiters for %d sessions after every cancel, want 0", n)
	}
}

func TestNewRevocationsPanicsOnNonPositiveKeepFor(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("NewRevocations(0) did not panic")
		}
	}()
	NewRevocations(0, nil)
}
