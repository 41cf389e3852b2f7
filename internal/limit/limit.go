// Package limit bounds the large admission requests decoded and judged at
// once, by count and by bytes, before their bodies are read.
package limit

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
)

// Defaults of the limit on large requests.
const (
	// DefaultHeavyBytes: request bodies at least this large are heavy.
	// Prometheus' rule parsing allocates tens of times an object's size; a
	// 64 KiB rule object costs a few MiB and a few milliseconds, below it
	// the cost is noise.
	DefaultHeavyBytes = 64 * 1024
	// DefaultQueueBudget is how long a heavy request may wait to start:
	// well inside the webhooks' 5s timeout, so a refusal reaches the API
	// server (and its failurePolicy) long before its own deadline.
	DefaultQueueBudget = time.Second
	// HeapPerBodyByte is the peak memory a heavy request takes per byte of
	// its body: 11.2 measured (RSS above idle, four 1.4 MiB PrometheusRule
	// validations in flight, GOGC=100; `make bench-memory` fails if a
	// change takes it above this), rounded up with room. The default
	// in-flight byte budget divides the memory limit by it.
	HeapPerBodyByte = 16
	// maxDrain is how much of a refused request's body is read so that the
	// connection can be reused (the API server's bodies are at most 3 MiB
	// of object, twice for an UPDATE).
	maxDrain = 8 << 20
)

// Limiter bounds the heavy requests (bodies of HeavyBytes or more) being
// decoded and judged at once: at most MaxInFlight of them (CPU), and at most
// InFlightBytes of their bodies (memory). It acts on the HTTP request before
// its body is read, so a refused request costs no decoding. A heavy request
// that cannot start within its budget is answered at once with HTTP 429,
// which the API server treats as a failed call: the webhook's failurePolicy
// applies, long before its timeout. Light requests (every enrollment) pass
// straight through and never wait behind a large rule.
//
// A burst waits up to the full budget. Under sustained overload, when no
// heavy request has started without waiting for a whole budget, the wait
// drops to a tenth of it: the requests admitted are then answered within
// about their own work, and the rest are refused at once, instead of every
// admitted request waiting the full budget in a standing queue (CoDel's
// idea, as in Facebook's "Fail at Scale").
type Limiter struct {
	// startedAt is when a heavy request last started without waiting
	// (UnixNano).
	startedAt  atomic.Int64
	slots      chan struct{}
	bytes      *semaphore.Weighted
	byteBudget int64
	heavyBytes int64
	budget     time.Duration
	shedCount  *prometheus.CounterVec
	clock      clock.PassiveClock
}

// Config sizes a Limiter; zero values take the defaults.
type Config struct {
	// MaxInFlight heavy requests at once. Default GOMAXPROCS: they are
	// CPU-bound, more only adds latency.
	MaxInFlight int
	// InFlightBytes of heavy bodies at once. Default: the Go memory limit
	// (GOMEMLIMIT, set from the container's limit in deploy/) divided by
	// 2×HeapPerBodyByte, half the limit left to the caches and the
	// runtime; unbounded without a memory limit. A body larger than the
	// budget runs alone.
	InFlightBytes int64
	// HeavyBytes: bodies this large or larger are heavy. Default
	// DefaultHeavyBytes.
	HeavyBytes int
	// Budget is the longest a heavy request waits to start. Default
	// DefaultQueueBudget; never more than half the API server's timeout
	// for the call.
	Budget time.Duration
	// Clock tells when a heavy request last started at once (sustained
	// overload). Default: the real clock.
	Clock clock.PassiveClock
}

// New returns a Limiter sized by c; shed counts its refusals by webhook
// name (promenroll_shed_requests_total).
func New(c Config, shed *prometheus.CounterVec) *Limiter {
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = runtime.GOMAXPROCS(0)
	}
	if c.HeavyBytes <= 0 {
		c.HeavyBytes = DefaultHeavyBytes
	}
	if c.Budget <= 0 {
		c.Budget = DefaultQueueBudget
	}
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	if c.InFlightBytes <= 0 {
		c.InFlightBytes = DefaultInFlightBytes(debug.SetMemoryLimit(-1))
	}
	l := &Limiter{
		slots: make(chan struct{}, c.MaxInFlight), bytes: semaphore.NewWeighted(c.InFlightBytes), byteBudget: c.InFlightBytes,
		heavyBytes: int64(c.HeavyBytes), budget: c.Budget, shedCount: shed, clock: c.Clock,
	}
	l.startedAt.Store(l.clock.Now().UnixNano())
	return l
}

// DefaultInFlightBytes is the byte budget for a Go memory limit: half of it
// for heavy requests at HeapPerBodyByte each.
func DefaultInFlightBytes(memoryLimit int64) int64 {
	if memoryLimit <= 0 || memoryLimit == math.MaxInt64 {
		return math.MaxInt64
	}
	return max(memoryLimit/2/HeapPerBodyByte, DefaultHeavyBytes)
}

// Wrap bounds the heavy requests reaching next, the named webhook. A nil
// Limiter bounds nothing.
func (l *Limiter) Wrap(name string, next http.Handler) http.Handler {
	if l == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		size := r.ContentLength
		if size < 0 {
			size = l.heavyBytes // unknown length: count it as heavy
		}
		if size < l.heavyBytes {
			next.ServeHTTP(w, r)
			return
		}
		budget := l.budget
		if t, err := time.ParseDuration(r.URL.Query().Get("timeout")); err == nil && t > 0 {
			budget = min(budget, t/2)
		}
		release, waited, err := l.acquire(r.Context(), size, budget)
		if err != nil {
			l.shed(w, r, name, size, waited)
			return
		}
		defer release()
		next.ServeHTTP(w, r)
	})
}

// acquire takes a slot and size bytes of the budget (at most all of it),
// at once if it can; otherwise it waits at most budget, or a tenth of the
// limiter's budget under sustained overload. On failure it returns how long
// it waited.
func (l *Limiter) acquire(ctx context.Context, size int64, budget time.Duration) (func(), time.Duration, error) {
	weight := min(size, l.byteBudget)
	release := func() { l.bytes.Release(weight); <-l.slots }
	select {
	case l.slots <- struct{}{}:
		if l.bytes.TryAcquire(weight) {
			l.startedAt.Store(l.clock.Now().UnixNano())
			return release, 0, nil
		}
		<-l.slots
	default:
	}
	if l.clock.Since(time.Unix(0, l.startedAt.Load())) > l.budget {
		budget = min(budget, l.budget/10)
	}
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	select {
	case l.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, budget, ctx.Err()
	}
	if err := l.bytes.Acquire(ctx, weight); err != nil {
		<-l.slots
		return nil, budget, err
	}
	return release, 0, nil
}

// shed answers a heavy request that could not start: HTTP 429 with a Status
// naming the cause (the API server quotes it in the call's error), after
// reading the body so the connection stays usable. No Retry-After: the API
// server's client would retry, adding load.
func (l *Limiter) shed(w http.ResponseWriter, r *http.Request, name string, size int64, budget time.Duration) {
	l.shedCount.WithLabelValues(name).Inc()
	_, _ = io.CopyN(io.Discard, r.Body, maxDrain)
	bound := fmt.Sprintf("%d requests of %s or more", cap(l.slots), sizeOf(l.heavyBytes))
	if l.byteBudget < math.MaxInt64 {
		bound += fmt.Sprintf(", %s of their bodies", sizeOf(l.byteBudget))
	}
	msg := fmt.Sprintf("promenroll is busy: this %s request to /%s could not start within %v (at most %s in flight at once); the webhook's failurePolicy applies. Retry, or raise --max-heavy-validations or the memory limit",
		sizeOf(size), name, budget.Round(time.Millisecond), bound)
	st := metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure,
		Code: http.StatusTooManyRequests, Reason: metav1.StatusReasonTooManyRequests, Message: msg}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusTooManyRequests)
	_ = json.NewEncoder(w).Encode(st)
}

// sizeOf is n bytes for a message: KiB from 1 KiB up.
func sizeOf(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%d KiB", n/1024)
}
