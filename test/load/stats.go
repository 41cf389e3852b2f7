package main

import (
	"math"
	"slices"
	"time"
)

// percentile is the nearest-rank q-quantile (0 < q <= 1) of sorted
// latencies: the smallest value with at least q of the values at or below
// it. Zero for no values.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	// ceil(q*n), tolerant of float error on exact ranks (0.99*100).
	rank := int(math.Ceil(q*float64(len(sorted)) - 1e-9))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// summary describes a set of latencies.
type summary struct {
	n                        int
	mean, p50, p90, p99, max time.Duration
}

// summarize sorts lat in place and describes it.
func summarize(lat []time.Duration) summary {
	if len(lat) == 0 {
		return summary{}
	}
	slices.Sort(lat)
	var sum time.Duration
	for _, l := range lat {
		sum += l
	}
	return summary{n: len(lat), mean: sum / time.Duration(len(lat)),
		p50: percentile(lat, 0.50), p90: percentile(lat, 0.90), p99: percentile(lat, 0.99), max: lat[len(lat)-1]}
}

// schedule is an open-loop phase: the send times, relative to the phase's
// start, of rate requests per second at fixed intervals for d.
func schedule(rate float64, d time.Duration) []time.Duration {
	n := int(rate * d.Seconds())
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(float64(i) * float64(time.Second) / rate)
	}
	return out
}

// sample is one request of an open-loop run.
type sample struct {
	at  time.Duration // scheduled send time, from the run's start
	lat time.Duration // from the scheduled time to the answer
	// late is how long after its scheduled time it was sent.
	late time.Duration
	// shed: answered 429; failed: any other failure.
	shed, failed bool
}

// windowP99 is the p99 latency of the samples scheduled in each window of
// width from `from` (exclusive of `to`), and whether any of them was shed or
// failed. A window without samples has p99 0.
func windowP99(samples []sample, from, to, width time.Duration) ([]time.Duration, []bool) {
	n := int((to - from + width - 1) / width)
	lats := make([][]time.Duration, n)
	bad := make([]bool, n)
	for _, s := range samples {
		if s.at < from || s.at >= to {
			continue
		}
		i := int((s.at - from) / width)
		lats[i] = append(lats[i], s.lat)
		bad[i] = bad[i] || s.shed || s.failed
	}
	p99 := make([]time.Duration, n)
	for i, l := range lats {
		slices.Sort(l)
		p99[i] = percentile(l, 0.99)
	}
	return p99, bad
}

// recovered is the index of the first window from which every window is
// normal (p99 at most limit, nothing shed or failed), or -1 if the last one
// is not.
func recovered(p99 []time.Duration, bad []bool, limit time.Duration) int {
	first := -1
	for i := range p99 {
		switch {
		case p99[i] > limit || bad[i]:
			first = -1
		case first < 0:
			first = i
		}
	}
	return first
}
