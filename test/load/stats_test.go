package main

import (
	"math/rand/v2"
	"testing"
	"time"
)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// oneToN is 1ms..n ms, shuffled.
func oneToN(n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = ms(i + 1)
	}
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func TestSummarizeKnownInputs(t *testing.T) {
	for _, c := range []struct {
		name string
		lat  []time.Duration
		want summary
	}{
		{"1..100ms", oneToN(100), summary{n: 100, mean: 50500 * time.Microsecond, p50: ms(50), p90: ms(90), p99: ms(99), max: ms(100)}},
		{"1..1000ms", oneToN(1000), summary{n: 1000, mean: 500500 * time.Microsecond, p50: ms(500), p90: ms(900), p99: ms(990), max: ms(1000)}},
		// Nearest rank: with 10 values the p99 is the largest.
		{"1..10ms", oneToN(10), summary{n: 10, mean: 5500 * time.Microsecond, p50: ms(5), p90: ms(9), p99: ms(10), max: ms(10)}},
		{"one value", []time.Duration{ms(7)}, summary{n: 1, mean: ms(7), p50: ms(7), p90: ms(7), p99: ms(7), max: ms(7)}},
		{"none", nil, summary{}},
		// 99 fast answers and one slow one: the p99 is still fast, the max is not.
		{"one outlier in 100", append(repeat(ms(1), 99), time.Second), summary{n: 100, mean: 10990 * time.Microsecond, p50: ms(1), p90: ms(1), p99: ms(1), max: time.Second}},
	} {
		if got := summarize(c.lat); got != c.want {
			t.Errorf("%s: summarize = %+v, want %+v", c.name, got, c.want)
		}
	}
}

func repeat(d time.Duration, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}

func TestScheduleRate(t *testing.T) {
	s := schedule(1000, 2*time.Second)
	if len(s) != 2000 || s[0] != 0 || s[1] != time.Millisecond || s[1999] != 1999*time.Millisecond {
		t.Errorf("1000/s for 2s: %d sends, first %v %v, last %v; want 2000 at 0, 1ms, ..., 1.999s", len(s), s[0], s[1], s[len(s)-1])
	}
	// A fractional rate: 2.5/s for 4s is 10 sends 400ms apart.
	s = schedule(2.5, 4*time.Second)
	if len(s) != 10 || s[1] != ms(400) || s[9] != ms(3600) {
		t.Errorf("2.5/s for 4s: %v", s)
	}
}

func TestWindowsAndRecovery(t *testing.T) {
	// Five 1s windows from 10s, 100 samples each: window 0 slow, window 1
	// normal but one shed, windows 2-4 normal. A sample outside is ignored.
	var samples []sample
	for w := range 5 {
		for i := range 100 {
			s := sample{at: 10*time.Second + time.Duration(w)*time.Second + time.Duration(i)*10*time.Millisecond, lat: ms(5)}
			if w == 0 {
				s.lat = ms(900)
			}
			if w == 1 && i == 50 {
				s.shed = true
			}
			samples = append(samples, s)
		}
	}
	samples = append(samples, sample{at: 9 * time.Second, lat: time.Hour})
	p99, bad := windowP99(samples, 10*time.Second, 15*time.Second, time.Second)
	if len(p99) != 5 || p99[0] != ms(900) || p99[2] != ms(5) || !bad[1] || bad[2] {
		t.Fatalf("windows: p99 %v, bad %v", p99, bad)
	}
	if got := recovered(p99, bad, ms(10)); got != 2 {
		t.Errorf("recovered at window %d, want 2 (window 1 shed a request)", got)
	}
	// A relapse in the last window: not recovered.
	p99[4] = time.Second
	if got := recovered(p99, bad, ms(10)); got != -1 {
		t.Errorf("recovered at window %d after a relapse, want -1", got)
	}
}
