package webhook

import (
	"context"
	"fmt"
	"runtime"
	"time"
)

// Defaults of the heavy-validation limit.
const (
	// DefaultHeavyBytes: objects at least this large are heavy. Prometheus'
	// rule parsing allocates about 110 times an object's size; a 64 KiB
	// rule object costs a few MiB and a few milliseconds, below it the
	// cost is noise.
	DefaultHeavyBytes = 64 * 1024
	// DefaultQueueBudget is how long a heavy request may wait for a slot:
	// well inside the webhooks' 5s timeout, so a refusal reaches the API
	// server (and its failurePolicy) long before its own deadline.
	DefaultQueueBudget = time.Second
)

// Limiter bounds how many heavy validations run at once. Beyond that a
// heavy request waits at most its budget and is then answered at once with
// an error, counted in promenroll_shed_requests_total, instead of queueing
// until the API server's timeout and piling up transient heap. Requests
// below HeavyBytes, and every /mutate request, never wait on it: enrollment
// is never queued behind a large rule.
type Limiter struct {
	slots      chan struct{}
	HeavyBytes int
	Budget     time.Duration
	metrics    *Metrics
}

// NewLimiter allows n heavy validations at once (n <= 0: GOMAXPROCS).
func NewLimiter(n, heavyBytes int, budget time.Duration, m *Metrics) *Limiter {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	if heavyBytes <= 0 {
		heavyBytes = DefaultHeavyBytes
	}
	if budget <= 0 {
		budget = DefaultQueueBudget
	}
	return &Limiter{slots: make(chan struct{}, n), HeavyBytes: heavyBytes, Budget: budget, metrics: m}
}

// Acquire takes a slot for an object of size bytes, waiting at most the
// budget (or half of what is left of ctx, if less). It returns the release
// function, or an error saying why the request is shed. Light objects
// take no slot.
func (l *Limiter) Acquire(ctx context.Context, size int, kind string) (func(), error) {
	if l == nil || size < l.HeavyBytes {
		return func() {}, nil
	}
	budget := l.Budget
	if dl, ok := ctx.Deadline(); ok {
		budget = min(budget, time.Until(dl)/2)
	}
	select {
	case l.slots <- struct{}{}:
		return func() { <-l.slots }, nil
	default:
	}
	timer := time.NewTimer(budget)
	defer timer.Stop()
	select {
	case l.slots <- struct{}{}:
		return func() { <-l.slots }, nil
	case <-timer.C:
	case <-ctx.Done():
	}
	l.metrics.Shed.WithLabelValues(kind).Inc()
	return nil, fmt.Errorf("promenroll is busy: %d large objects (%d KiB or more) are being validated and this %s (%d KiB) could not start within %v; retry, or raise --max-heavy-validations (the webhook's failurePolicy applies to this request)",
		cap(l.slots), l.HeavyBytes/1024, kind, size/1024, budget.Round(time.Millisecond))
}
