package push

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"
)

// The queue: one dispatcher claims due rows for the workers that are
// free (woken at once by an enqueue, and every pollEvery for retries and
// rows of other nodes); Config.Workers workers send them and settle each
// row: sent and given-up rows are deleted, failed ones rescheduled.

// dispatch is the dispatcher loop; it closes jobs when ctx ends, which
// lets the workers finish what they hold and return.
func (m *Module) dispatch(ctx context.Context, jobs chan<- []item) {
	defer close(jobs)
	t := time.NewTicker(m.pollEvery)
	defer t.Stop()
	m.refreshDepth(ctx)
	for {
		m.fill(ctx, jobs)
		select {
		case <-ctx.Done():
			return
		case <-m.wake:
		case <-t.C:
			m.refreshDepth(ctx)
		}
	}
}

// capacity is how many jobs may be out at once: a few per worker, so a
// worker that finishes finds its next row claimed already and a claim
// serves several rows.
func (m *Module) capacity() int64 {
	if m.relay != nil {
		return int64(m.cfg.Workers) // a job is a batch already
	}
	return int64(m.cfg.Workers * prefetch)
}

// lease is how long a claimed row is reserved: the longest it may wait
// for a worker and be sent, with a margin.
func (m *Module) lease() time.Duration {
	d := m.cfg.RequestTimeout * prefetch
	if m.relay != nil {
		d = 2 * m.cfg.RequestTimeout
	}
	return d + leaseMargin
}

// fill claims due rows while there is capacity and hands them out, as
// jobs of up to jobSize rows. There are never more jobs out than the
// capacity of jobs, so the send on jobs does not block.
func (m *Module) fill(ctx context.Context, jobs chan<- []item) {
	for ctx.Err() == nil {
		free := m.capacity() - m.inflight.Load()
		if free <= 0 {
			return
		}
		want := int(free) * m.jobSize
		now := m.now()
		owner := fmt.Sprintf("%s-%d", m.instance, m.claims.Add(1))
		// Not cut off half-way by Stop: a claim whose rows were leased but
		// never read would hold them until the lease runs out.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
		rows, err := m.store.claim(cctx, now, want, owner, now.Add(m.lease()))
		cancel()
		if err != nil {
			m.met.queueErrors.Inc()
			m.log.ErrorContext(ctx, "push: claiming queued pushes failed", "err", err)
			return
		}
		if len(rows) == 0 {
			return
		}
		if ctx.Err() != nil {
			// Stopping: leave them for the next start or another node.
			ids := make([]int64, len(rows))
			for i, r := range rows {
				ids[i] = r.ID
			}
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
			if err := m.store.release(rctx, ids); err != nil {
				m.met.queueErrors.Inc()
				m.log.WarnContext(ctx, "push: releasing claimed pushes failed (their leases will expire)", "err", err)
			}
			cancel()
			return
		}
		var job []item
		for _, r := range rows {
			it, err := r.item()
			if err != nil {
				// Not written by this code: give it up.
				m.finish(ctx, it, drop(dropInvalid, "", "unreadable payload: "+err.Error()))
				continue
			}
			job = append(job, it)
			if len(job) == m.jobSize {
				m.inflight.Add(1)
				jobs <- job
				job = nil
			}
		}
		if len(job) > 0 {
			m.inflight.Add(1)
			jobs <- job
		}
		if len(rows) < want {
			return
		}
	}
}

func (r queueRow) item() (item, error) {
	it := item{
		ID: r.ID, DeviceID: r.DeviceID, UserID: r.UserID, Platform: r.Platform, AppID: r.AppID, Token: r.Token,
		Kind: r.Kind, Priority: r.Priority, CollapseID: r.CollapseID, ExpiresAt: r.ExpiresAt.UTC(),
		CreatedAt: r.CreatedAt.UTC(), Attempts: r.Attempts,
	}
	return it, json.Unmarshal([]byte(r.Payload), &it.Note)
}

// work is one worker: it sends the jobs it gets until jobs is closed.
func (m *Module) work(ctx context.Context, jobs <-chan []item) {
	for job := range jobs {
		m.process(ctx, job)
		m.inflight.Add(-1)
		m.signal() // a worker is free: claim more
	}
}

// process sends one job and settles its rows.
func (m *Module) process(ctx context.Context, job []item) {
	now := m.now()
	live := make([]item, 0, len(job))
	for _, it := range job {
		if !it.ExpiresAt.After(now) {
			m.finish(ctx, it, drop(dropExpired, "", "expired before it could be sent"))
			continue
		}
		live = append(live, it)
	}
	if len(live) == 0 {
		return
	}
	results := make([]result, len(live))
	if m.relay != nil {
		start := time.Now()
		var outcome string
		results, outcome = m.relay.send(ctx, live)
		m.met.latency.WithLabelValues(platformRelay).Observe(time.Since(start).Seconds())
		m.met.relay.WithLabelValues("out", outcome).Inc()
		switch outcome {
		case "unauthorized", "not_found":
			m.log.ErrorContext(ctx, "push: the relay node refused this node's pushes: check push.relay.url and push.relay.token against its push.relay.accept_token",
				"outcome", outcome, "detail", results[0].detail)
		case "error":
			if results[0].reason != reasonCancelled {
				m.log.WarnContext(ctx, "push: relay request failed", "detail", results[0].detail, "items", len(live))
			}
		}
	} else {
		for i, it := range live {
			results[i] = m.direct.send(ctx, it)
		}
	}
	for i, it := range live {
		m.finish(ctx, it, results[i])
	}
}

// count records the outcome of one send in the metrics.
func (m *Module) count(it item, r result) {
	if r.status == statusSent {
		m.met.sent.WithLabelValues(it.Platform, it.Kind).Inc()
		return
	}
	if r.reason != "" && r.reason != reasonCancelled {
		m.met.failures.WithLabelValues(it.Platform, r.reason).Inc()
	}
}

// finish settles a row after a send (or instead of one).
func (m *Module) finish(ctx context.Context, it item, r result) {
	// The bookkeeping must happen even when Stop cancelled the send.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
	defer cancel()
	log := m.log.With("push_id", it.ID, "kind", it.Kind, "platform", it.Platform, "device_id", it.DeviceID,
		"user_id", it.UserID, "token", tokenHint(it.Token))
	if r.status == statusRetry && r.reason == reasonCancelled {
		if err := m.store.release(dctx, []int64{it.ID}); err != nil {
			m.met.queueErrors.Inc()
			log.WarnContext(ctx, "push: releasing a cancelled push failed (its lease will expire)", "err", err)
		}
		return
	}
	m.count(it, r)
	var err error
	switch r.status {
	case statusSent:
		m.done <- it.ID
		log.DebugContext(ctx, "push sent", "attempts", it.Attempts+1, "queued_for", m.now().Sub(it.CreatedAt))
	case statusInvalid:
		var removed bool
		if removed, err = m.store.removeInvalid(dctx, it.DeviceID, it.Token); removed {
			m.met.invalid.WithLabelValues(it.Platform).Inc()
			log.InfoContext(ctx, "push: device removed, its token is no longer valid", "reason", r.reason, "detail", r.detail)
		}
	case statusDrop:
		m.met.dropped.WithLabelValues(r.drop).Inc()
		m.done <- it.ID
		if r.drop != dropExpired {
			log.WarnContext(ctx, "push dropped", "why", r.drop, "reason", r.reason, "detail", r.detail)
		} else {
			log.InfoContext(ctx, "push expired before it could be sent", "attempts", it.Attempts)
		}
	default:
		attempts := it.Attempts + 1
		wait := r.retryAfter
		if wait <= 0 {
			wait = m.backoff(attempts)
		}
		next := m.now().Add(wait)
		switch {
		case attempts >= m.cfg.MaxAttempts:
			m.met.dropped.WithLabelValues(dropAttempts).Inc()
			m.done <- it.ID
			log.WarnContext(ctx, "push dropped after its last attempt", "attempts", attempts, "reason", r.reason, "detail", r.detail)
		case !next.Before(it.ExpiresAt):
			m.met.dropped.WithLabelValues(dropExpired).Inc()
			m.done <- it.ID
			log.InfoContext(ctx, "push dropped: it would expire before its next attempt", "attempts", attempts, "reason", r.reason, "detail", r.detail)
		default:
			err = m.store.reschedule(dctx, it.ID, attempts, next, r.detail)
			log.InfoContext(ctx, "push failed, will retry", "attempts", attempts, "retry_in", wait.Round(time.Millisecond), "reason", r.reason, "detail", r.detail)
		}
	}
	if err != nil {
		m.met.queueErrors.Inc()
		log.ErrorContext(ctx, "push: settling a push failed", "err", err)
	}
}

// backoff is the delay before attempt+1: backoffBase doubling per
// attempt, capped at backoffMax, ±20 % jitter so pushes that failed
// together do not retry in lockstep.
func (m *Module) backoff(attempt int) time.Duration {
	d := m.backoffBase
	for i := 1; i < attempt && d < m.backoffMax; i++ {
		d *= 2
	}
	d = min(d, m.backoffMax)
	j := d / 5
	return d - j + rand.N(2*j+1)
}

// settle deletes the rows whose ids come on done, as many per statement
// as have arrived meanwhile (one commit per push would bound the
// throughput on SQLite), until done is closed.
func (m *Module) settle(done <-chan int64) {
	batch := make([]int64, 0, settleBatch)
	for id := range done {
		batch = append(batch[:0], id)
	gather:
		for len(batch) < settleBatch {
			select {
			case id, ok := <-done:
				if !ok {
					break gather
				}
				batch = append(batch, id)
			default:
				break gather
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
		if err := m.store.complete(ctx, batch); err != nil {
			// Sent rows come back when their lease runs out: sent twice
			// rather than lost.
			m.met.queueErrors.Inc()
			m.log.Error("push: deleting settled pushes failed", "rows", len(batch), "err", err)
		}
		cancel()
	}
}

func (m *Module) refreshDepth(ctx context.Context) {
	n, err := m.store.depth(ctx)
	if err != nil {
		if ctx.Err() == nil {
			m.met.queueErrors.Inc()
			m.log.WarnContext(ctx, "push: counting the queue failed", "err", err)
		}
		return
	}
	m.met.depth.Set(float64(n))
}
