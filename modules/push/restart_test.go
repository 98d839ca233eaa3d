package push_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/elph-server/elph/modules/push"
	"github.com/elph-server/elph/platform/bus"
	"github.com/elph-server/elph/platform/store"
	"github.com/elph-server/elph/platform/store/storetest"
)

// TestQueueSurvivesRestart: pushes queued by a module that stopped before
// sending them go out after the next Start of a new module on the same
// database; a row leased by a node that died goes out once its lease
// runs out.
func TestQueueSurvivesRestart(t *testing.T) {
	forEachDialect(t, envOptions{noStart: true}, func(t *testing.T, e *env) {
		e.phones(t, bob)
		// Queued, never sent: the module is not started.
		if err := push.Handle(t.Context(), e.mod, busEvent(t, push.TopicMessageCreated, chatMessage(1, 1, alice, []int64{alice, bob}, nil, "before the restart"))); err != nil {
			t.Fatal(err)
		}
		if err := push.Handle(t.Context(), e.mod, busEvent(t, push.TopicCallStarted, callEvent("r-1", bob, "inbound", e.clock.Now()))); err != nil {
			t.Fatal(err)
		}
		e.stop(t)
		if q := e.queue(t); len(q) != 4 {
			t.Fatalf("queued %d rows, want 4 (message: APNs and FCM; call: VoIP and FCM)", len(q))
		}
		if n := len(e.apns.pushes()) + len(e.fcm.pushes()); n != 0 {
			t.Fatalf("%d pushes sent by a module that never started", n)
		}
		// A third row is leased by a node that died mid-send.
		if err := push.Handle(t.Context(), e.mod, busEvent(t, push.TopicCallMissed, missedCall(bob, "r-2", 1))); err != nil {
			t.Fatal(err)
		}
		q := e.queue(t)
		dead := q[len(q)-1].ID
		until := store.Time(e.clock.Now().Add(time.Minute))
		if _, err := e.db.ExecContext(t.Context(), "UPDATE push_queue SET lease_owner = 'dead-node', lease_until = ? WHERE id = ? OR id = ?", until, dead, dead-1); err != nil {
			t.Fatal(err)
		}

		m := e.newModule(t, prometheus.NewRegistry(), e.bus, nil)
		e.start(t, m)
		e.apns.wait(t, 2)
		e.fcm.wait(t, 2)
		eventually(t, "only the leased rows are left", func() bool { return len(e.queue(t)) == 2 })
		got := e.apns.pushes()
		if got[0].PushType == got[1].PushType || got[0].Payload["type"] == "missed_call" || got[1].Payload["type"] == "missed_call" {
			t.Fatalf("after the restart APNs got %+v, want the message and the call", got)
		}
		e.clock.Advance(2 * time.Minute)
		e.apns.wait(t, 3)
		e.fcm.wait(t, 3)
		eventually(t, "the queue empties", func() bool { return len(e.queue(t)) == 0 })
	})
}

// TestTwoNodesSendOnce: two nodes on one database claim from the same
// queue; every push goes out exactly once.
func TestTwoNodesSendOnce(t *testing.T) {
	forEachDialect(t, envOptions{noStart: true}, func(t *testing.T, e *env) {
		e.register(t, bob, push.PlatformAPNs, iosApp, apnsToken("bob"))
		const n = 60
		for i := range n {
			if err := push.Handle(t.Context(), e.mod, busEvent(t, push.TopicMessageCreated, chatMessage(1, int64(i+1), alice, []int64{alice, bob}, nil, fmt.Sprint("m", i)))); err != nil {
				t.Fatal(err)
			}
		}
		b2, err := bus.NewMemory(bus.MemoryOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b2.Close(context.Background()) })
		nodes := []*push.Module{e.newModule(t, nil, e.bus, nil), e.newModule(t, nil, b2, nil)}
		for _, m := range nodes {
			e.start(t, m)
		}
		e.apns.wait(t, n)
		eventually(t, "the queue empties", func() bool { return len(e.queue(t)) == 0 })
		for _, m := range nodes {
			if err := m.Stop(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		seen := map[any]int{}
		for _, p := range e.apns.pushes() {
			seen[p.Payload["message_id"]]++
		}
		if len(e.apns.pushes()) != n || len(seen) != n {
			t.Fatalf("APNs got %d pushes of %d messages, want each of %d once", len(e.apns.pushes()), len(seen), n)
		}
	})
}

// TestStopLeavesUnsent: Stop returns while a send hangs once its context
// ends, and the row stays queued with its lease released.
func TestStopLeavesUnsent(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db, envOptions{edit: func(o *push.Options) { o.Config.RequestTimeout = time.Minute }})
		hang := make(chan struct{})
		t.Cleanup(func() { close(hang) })
		e.apns.holdAll(hang)
		e.register(t, bob, push.PlatformAPNs, iosApp, apnsToken("bob"))
		e.message(t, 1, 1, alice, []int64{alice, bob}, nil, "stuck")
		eventually(t, "the push is in flight", func() bool { return e.apns.requestsNow() == 1 })
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		e.stopped = true
		if err := e.mod.Stop(ctx); err == nil {
			t.Error("Stop returned nil with a send still in flight at its deadline")
		}
		q := e.queue(t)
		if len(q) != 1 || q[0].LeaseOwner != "" || q[0].Attempts != 0 {
			t.Fatalf("after Stop the queue holds %+v, want the row released and not counted as an attempt", q)
		}
	})
}
