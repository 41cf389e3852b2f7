package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"runtime"
	"runtime/debug"
	"time"

	"golang.org/x/sync/semaphore"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	// HeapPerBodyByte is the peak heap a heavy request takes per byte of
	// its body, measured on /validate of PrometheusRules (`go run
	// ./test/load -memory`, BENCHMARKS.md), rounded up. The default
	// in-flight byte budget divides the memory limit by it.
	HeapPerBodyByte = 40
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
type Limiter struct {
	slots      chan struct{}
	bytes      *semaphore.Weighted
	byteBudget int64
	heavyBytes int64
	budget     time.Duration
	metrics    *Metrics
}

// LimiterConfig sizes a Limiter; zero values take the defaults.
type LimiterConfig struct {
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
}

// NewLimiter returns a Limiter sized by c.
func NewLimiter(c LimiterConfig, m *Metrics) *Limiter {
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = runtime.GOMAXPROCS(0)
	}
	if c.HeavyBytes <= 0 {
		c.HeavyBytes = DefaultHeavyBytes
	}
	if c.Budget <= 0 {
		c.Budget = DefaultQueueBudget
	}
	if c.InFlightBytes <= 0 {
		c.InFlightBytes = DefaultInFlightBytes(debug.SetMemoryLimit(-1))
	}
	return &Limiter{
		slots: make(chan struct{}, c.MaxInFlight), bytes: semaphore.NewWeighted(c.InFlightBytes), byteBudget: c.InFlightBytes,
		heavyBytes: int64(c.HeavyBytes), budget: c.Budget, metrics: m,
	}
}

// DefaultInFlightBytes is the byte budget for a Go memory limit: half of it
// for heavy requests at HeapPerBodyByte each.
func DefaultInFlightBytes(memoryLimit int64) int64 {
	if memoryLimit <= 0 || memoryLimit == math.MaxInt64 {
		return math.MaxInt64
	}
	return max(memoryLimit/2/HeapPerBodyByte, DefaultHeavyBytes)
}

// Wrap bounds the heavy requests reaching next, the named webhook.
func (l *Limiter) Wrap(name string, next http.Handler) http.Handler {
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
		release, err := l.acquire(r.Context(), size, budget)
		if err != nil {
			l.shed(w, r, name, size, budget)
			return
		}
		defer release()
		next.ServeHTTP(w, r)
	})
}

// acquire takes a slot and size bytes of the budget (at most all of it),
// waiting at most budget.
func (l *Limiter) acquire(ctx context.Context, size int64, budget time.Duration) (func(), error) {
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	select {
	case l.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	weight := min(size, l.byteBudget)
	if err := l.bytes.Acquire(ctx, weight); err != nil {
		<-l.slots
		return nil, err
	}
	return func() { l.bytes.Release(weight); <-l.slots }, nil
}

// shed answers a heavy request that could not start: HTTP 429 with a Status
// naming the cause (the API server quotes it in the call's error), after
// reading the body so the connection stays usable. No Retry-After: the API
// server's client would retry, adding load.
func (l *Limiter) shed(w http.ResponseWriter, r *http.Request, name string, size int64, budget time.Duration) {
	l.metrics.Shed.WithLabelValues(name).Inc()
	_, _ = io.CopyN(io.Discard, r.Body, maxDrain)
	bound := fmt.Sprintf("%d requests of %d KiB or more", cap(l.slots), l.heavyBytes/1024)
	if l.byteBudget < math.MaxInt64 {
		bound += fmt.Sprintf(", %d KiB of their bodies", l.byteBudget/1024)
	}
	msg := fmt.Sprintf("promenroll is busy: this %d KiB request to /%s could not start within %v (at most %s in flight at once); the webhook's failurePolicy applies. Retry, or raise --max-heavy-validations or the memory limit",
		size/1024, name, budget.Round(time.Millisecond), bound)
	st := metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure,
		Code: http.StatusTooManyRequests, Reason: metav1.StatusReasonTooManyRequests, Message: msg}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusTooManyRequests)
	_ = json.NewEncoder(w).Encode(st)
}
