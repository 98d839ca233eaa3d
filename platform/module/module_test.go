package module

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

type fake struct {
	name     string
	startErr error
	stopErr  error
	events   *[]string
}

func (f *fake) Name() string         { return f.name }
func (f *fake) Routes() http.Handler { return nil }
func (f *fake) Topics() Topics       { return Topics{} }
func (f *fake) Start(context.Context) error {
	*f.events = append(*f.events, "start "+f.name)
	return f.startErr
}
func (f *fake) Stop(context.Context) error {
	*f.events = append(*f.events, "stop "+f.name)
	return f.stopErr
}

func TestGroupOrder(t *testing.T) {
	var ev []string
	g := NewGroup(slog.New(slog.DiscardHandler), []Module{&fake{name: "a", events: &ev}, &fake{name: "b", events: &ev}, &fake{name: "c", events: &ev}})
	if err := g.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := g.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := []string{"start a", "start b", "start c", "stop c", "stop b", "stop a"}
	if !reflect.DeepEqual(ev, want) {
		t.Errorf("events %v, want %v", ev, want)
	}
	// A second Stop stops nothing twice.
	ev = nil
	if err := g.Stop(t.Context()); err != nil || len(ev) != 0 {
		t.Errorf("second stop: %v %v", ev, err)
	}
}

func TestGroupStartFailureStopsStarted(t *testing.T) {
	var ev []string
	boom := errors.New("boom")
	g := NewGroup(slog.New(slog.DiscardHandler), []Module{
		&fake{name: "a", events: &ev}, &fake{name: "b", startErr: boom, events: &ev}, &fake{name: "c", events: &ev},
	})
	err := g.Start(t.Context())
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "start module b") {
		t.Fatalf("err = %v", err)
	}
	want := []string{"start a", "start b", "stop a"}
	if !reflect.DeepEqual(ev, want) {
		t.Errorf("events %v, want %v (c never started, a stopped)", ev, want)
	}
}

func TestGroupStopCollectsEveryError(t *testing.T) {
	var ev []string
	e1, e2 := errors.New("e1"), errors.New("e2")
	g := NewGroup(slog.New(slog.DiscardHandler), []Module{&fake{name: "a", stopErr: e1, events: &ev}, &fake{name: "b", stopErr: e2, events: &ev}})
	if err := g.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	err := g.Stop(t.Context())
	if !errors.Is(err, e1) || !errors.Is(err, e2) || len(ev) != 4 {
		t.Errorf("err = %v, events %v: every module must get its Stop", err, ev)
	}
}

func TestSelect(t *testing.T) {
	specs := []Spec{{Name: "sso", Roles: []string{"server"}}, {Name: "edge", Roles: []string{"edge"}}, {Name: "web", Roles: []string{"server"}}}
	none := func(string) bool { return false }
	names := func(ss []Spec) []string {
		out := []string{}
		for _, s := range ss {
			out = append(out, s.Name)
		}
		return out
	}
	tests := []struct {
		name     string
		role     string
		explicit []string
		disabled func(string) bool
		want     []string
		err      string
	}{
		{"all", "all", nil, none, []string{"sso", "edge", "web"}, ""},
		{"server", "server", nil, none, []string{"sso", "web"}, ""},
		{"edge", "edge", nil, none, []string{"edge"}, ""},
		{"proxy runs no module", "proxy", nil, none, []string{}, ""},
		{"disabled skipped", "all", nil, func(n string) bool { return n == "web" }, []string{"sso", "edge"}, ""},
		{"explicit wins over role", "proxy", []string{"web", "sso", "web"}, none, []string{"web", "sso"}, ""},
		{"explicit unknown", "all", []string{"chat"}, none, nil, `"chat" is not built`},
		{"explicit disabled", "all", []string{"web"}, func(n string) bool { return n == "web" }, nil, "enabled is false"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Select(specs, tt.role, tt.explicit, tt.disabled)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(names(got), tt.want) {
				t.Errorf("got %v, %v; want %v", names(got), err, tt.want)
			}
		})
	}
}

func TestEveryRunsUntilCancelledAndLogsFailures(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	var buf strings.Builder
	log := slog.New(slog.NewTextHandler(&buf, nil))
	runs := make(chan int, 10)
	n := 0
	done := make(chan struct{})
	go func() {
		Every(ctx, time.Millisecond, log, "job", func(context.Context) error {
			n++
			runs <- n
			if n == 2 {
				return errors.New("boom")
			}
			return nil
		})
		close(done)
	}()
	for got := range runs {
		if got == 3 {
			break
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Every did not return after cancel")
	}
	if !strings.Contains(buf.String(), `msg="job failed" err=boom`) {
		t.Errorf("failure not logged: %q", buf.String())
	}
	if strings.Count(buf.String(), "failed") != 1 {
		t.Errorf("only the failing run is logged: %q", buf.String())
	}
}
