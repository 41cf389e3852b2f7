package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/promenroll/promenroll/internal/limit"
	"github.com/promenroll/promenroll/test/cluster"
	"github.com/promenroll/promenroll/webhook"
)

// webhookTimeout is deploy/'s timeoutSeconds; the harness' client gives up
// after it, as the API server does, and sends it in the URL as the API
// server does (the limiter waits at most half of it).
const (
	webhookTimeout = 5 * time.Second
	timeoutQuery   = "?timeout=5s"
)

// ruleReview is an AdmissionReview of a PrometheusRule of about size bytes
// of JSON: kube-prometheus' control-plane groups, repeated and renamed.
func ruleReview(root string, size int) ([]byte, error) {
	data, err := os.ReadFile(filepath.Join(root, "policy", "testdata", "rules", "default", "kube-prometheus", "kubernetesControlPlane.good.yaml"))
	if err != nil {
		return nil, err
	}
	var src struct {
		Spec struct {
			Groups []map[string]any `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &src); err != nil {
		return nil, err
	}
	var groups []json.RawMessage
	total := 0
fill:
	for i := 0; ; i++ {
		for _, g := range src.Spec.Groups {
			c := map[string]any{}
			for k, v := range g {
				c[k] = v
			}
			c["name"] = fmt.Sprintf("%s-%d", g["name"], i)
			raw, err := json.Marshal(c)
			if err != nil {
				return nil, err
			}
			if total+len(raw) > size {
				break fill
			}
			groups = append(groups, raw)
			total += len(raw) + 1
		}
	}
	obj, err := json.Marshal(map[string]any{
		"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
		"metadata": map[string]any{"name": "large", "namespace": "shop"},
		"spec":     map[string]any{"groups": groups},
	})
	if err != nil {
		return nil, err
	}
	return review("monitoring.coreos.com", "PrometheusRule", obj), nil
}

// deployMemoryLimit is the promenroll container's memory limit in
// deploy/base (the chart renders the same).
func deployMemoryLimit(root string) (int64, error) {
	data, err := os.ReadFile(filepath.Join(root, "deploy", "base", "deployment.yaml"))
	if err != nil {
		return 0, err
	}
	var d appsv1.Deployment
	if err := yaml.Unmarshal(data, &d); err != nil {
		return 0, err
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		if q, ok := c.Resources.Limits["memory"]; ok {
			return q.Value(), nil
		}
	}
	return 0, errors.New("deploy/base/deployment.yaml: no container has a memory limit")
}

// limitAndRule is deploy/'s memory limit and a rule review of size bytes.
func limitAndRule(size int) (int64, []byte, error) {
	root, err := cluster.RepoRoot()
	if err != nil {
		return 0, nil, err
	}
	memLimit, err := deployMemoryLimit(root)
	if err != nil {
		return 0, nil, err
	}
	body, err := ruleReview(root, size)
	return memLimit, body, err
}

// stream is one open-loop flow of identical requests.
type stream struct {
	url   string
	body  []byte
	times []time.Duration // send times from the run's start
}

// runOpenLoop sends every stream's requests at their times, each on its own
// goroutine (bounded by the streams' lengths and the client's timeout), and
// returns one sample per request, by stream.
func runOpenLoop(client *http.Client, streams []stream) [][]sample {
	out := make([][]sample, len(streams))
	var wg sync.WaitGroup
	start := time.Now()
	for si, s := range streams {
		out[si] = make([]sample, len(s.times))
		wg.Go(func() {
			var reqs sync.WaitGroup
			for i, at := range s.times {
				time.Sleep(time.Until(start.Add(at)))
				late := time.Since(start.Add(at))
				reqs.Go(func() {
					out[si][i] = send(client, s.url, s.body, start.Add(at))
					out[si][i].at, out[si][i].late = at, late
				})
			}
			reqs.Wait()
		})
	}
	wg.Wait()
	return out
}

// send posts one review; shed is a 429, failed anything but an allowed
// AdmissionReview.
func send(client *http.Client, url string, body []byte, at time.Time) sample {
	resp, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return sample{lat: time.Since(at), failed: true}
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	s := sample{lat: time.Since(at)}
	var ar admissionv1.AdmissionReview
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		s.shed = true
	case err != nil || resp.StatusCode != http.StatusOK || json.Unmarshal(data, &ar) != nil || ar.Response == nil || !ar.Response.Allowed:
		s.failed = true
	}
	return s
}

// tally splits samples scheduled in [from, to) into answered latencies and
// counts.
func tally(samples []sample, from, to time.Duration) (ok []time.Duration, all summary, shed, failed int) {
	var every []time.Duration
	for _, s := range samples {
		if s.at < from || s.at >= to {
			continue
		}
		every = append(every, s.lat)
		switch {
		case s.shed:
			shed++
		case s.failed:
			failed++
		default:
			ok = append(ok, s.lat)
		}
	}
	return ok, summarize(every), shed, failed
}

// shift adds d to every time.
func shift(ts []time.Duration, d time.Duration) []time.Duration {
	for i := range ts {
		ts[i] += d
	}
	return ts
}

// overload measures a pinned server's capacity for 512 KiB rule
// validations, then sends them open-loop at half of it for 10s, at twice it
// for d, and at half again for 10s, beside 100 Deployment CREATEs a second
// throughout. It checks the targets and fails if one is missed.
func overload(d time.Duration) error {
	memLimit, heavy, err := limitAndRule(512 * 1024)
	if err != nil {
		return err
	}
	srv, err := startChild([]string{fmt.Sprintf("GOMEMLIMIT=%d", memLimit)})
	if err != nil {
		return err
	}
	defer srv.stop()
	client := pinnedClient(webhookTimeout)
	capRun, err := measure(client, srv.url, scenario{name: "capacity: /validate 512 KiB PrometheusRule, 2 clients closed-loop", path: webhook.ValidatePath + timeoutQuery, body: heavy}, 60, 2, time.Minute)
	if err != nil {
		return err
	}
	capacity := capRun.rate
	const calm, light = 10 * time.Second, 100.0
	total := calm + d + calm
	heavyTimes := append(append(schedule(capacity/2, calm), shift(schedule(2*capacity, d), calm)...), shift(schedule(capacity/2, calm), calm+d)...)
	fmt.Printf("overload: server on CPU 0 (GOMAXPROCS=1, GOMEMLIMIT=%d MiB as deploy/ sets it), %d KiB rule bodies (%d bytes)\n", memLimit>>20, len(heavy)>>10, len(heavy))
	fmt.Printf("  capacity %.1f req/s; /validate at %.1f req/s for %v, %.1f req/s for %v, %.1f req/s for %v; /mutate Deployment CREATE at %.0f req/s throughout\n\n",
		capacity, capacity/2, calm, 2*capacity, d, capacity/2, calm, light)
	if err := resetPeakRSS(srv.pid()); err != nil {
		return err
	}
	res := runOpenLoop(client, []stream{
		{url: srv.url + webhook.ValidatePath + timeoutQuery, body: heavy, times: heavyTimes},
		{url: srv.url + webhook.MutatePath + timeoutQuery, body: review("apps", "Deployment", []byte(deployment)), times: schedule(light, total)},
	})
	rss, err := peakRSS(srv.pid())
	if err != nil {
		return err
	}
	heavyS, lightS := res[0], res[1]

	var misses []string
	phases := []struct {
		name     string
		from, to time.Duration
	}{{"before (½ capacity)", 0, calm}, {"overload (2× capacity)", calm, calm + d}, {"after (½ capacity)", calm + d, total}}
	var normal time.Duration
	for i, p := range phases {
		ok, all, shed, failed := tally(heavyS, p.from, p.to)
		okS := summarize(ok)
		lok, lall, lshed, lfailed := tally(lightS, p.from, p.to)
		lokS := summarize(lok)
		fmt.Printf("%s\n  /validate: %d sent, %d admitted (%.1f/s), %d shed, %d failed; admitted p50 %v p99 %v; any answer max %v\n",
			p.name, all.n, okS.n, float64(okS.n)/(p.to-p.from).Seconds(), shed, failed,
			okS.p50.Round(time.Millisecond), okS.p99.Round(time.Millisecond), all.max.Round(time.Millisecond))
		fmt.Printf("  /mutate:   %d sent, %d shed, %d failed; p50 %v p99 %v max %v\n",
			lall.n, lshed, lfailed, lokS.p50.Round(10*time.Microsecond), lokS.p99.Round(10*time.Microsecond), lall.max.Round(10*time.Microsecond))
		if i == 0 {
			normal = okS.p99
		}
		if m := max(all.max, lall.max); m > webhookTimeout/2 {
			misses = append(misses, fmt.Sprintf("%s: a request waited %v, more than half the %v timeout", p.name, m.Round(time.Millisecond), webhookTimeout))
		}
		if failed+lfailed > 0 {
			misses = append(misses, fmt.Sprintf("%s: %d requests failed other than by shedding", p.name, failed+lfailed))
		}
		if lshed > 0 {
			misses = append(misses, fmt.Sprintf("%s: %d Deployment CREATEs were shed", p.name, lshed))
		}
		if i == 0 && shed > 0 {
			misses = append(misses, fmt.Sprintf("%s: %d requests shed at half capacity", p.name, shed))
		}
	}
	p99, bad := windowP99(heavyS, calm+d, total, time.Second)
	back := recovered(p99, bad, 2*normal)
	fmt.Printf("\nafter the overload, /validate p99 by second (normal: %v, the p99 before; recovered: at most twice it, nothing shed):", normal.Round(time.Millisecond))
	for _, l := range p99 {
		fmt.Printf(" %v", l.Round(time.Millisecond))
	}
	fmt.Println()
	switch {
	case back < 0:
		misses = append(misses, "the /validate p99 did not come back to normal after the overload")
	case back > 5:
		misses = append(misses, fmt.Sprintf("the /validate p99 came back to normal %ds after the overload, more than 5s", back))
	default:
		fmt.Printf("recovered within %ds of the load dropping\n", back)
	}
	fmt.Printf("server peak RSS during the run: %.1f MiB (the Deployment's limit: %d MiB)\n", mib(rss), memLimit>>20)
	if rss > memLimit {
		misses = append(misses, fmt.Sprintf("peak RSS %.1f MiB is over the %d MiB limit", mib(rss), memLimit>>20))
	}
	return verdict(misses)
}

// verdict prints the targets missed and fails if there is one.
func verdict(misses []string) error {
	if len(misses) == 0 {
		fmt.Println("\nevery target met")
		return nil
	}
	for _, m := range misses {
		fmt.Println("MISSED:", m)
	}
	return fmt.Errorf("%d target(s) missed", len(misses))
}

// memory runs four concurrent validations of a 1.4 MiB rule (3 rounds) in
// a fresh pinned server per configuration and compares its peak RSS with
// deploy/'s memory limit. It fails if the deployed configuration goes over
// the limit or refuses one, or if the measured heap per body byte is above
// limit.HeapPerBodyByte (which sizes the default byte budget).
func memory() error {
	memLimit, body, err := limitAndRule(1468006) // 1.4 MiB
	if err != nil {
		return err
	}
	fmt.Printf("memory: 4 concurrent /validate calls of a %.2f MiB PrometheusRule review, 3 rounds (12 calls), server on CPU 0 with GOMAXPROCS=1; the Deployment's memory limit is %d MiB\n\n", mib(int64(len(body))), memLimit>>20)
	gomemlimit := fmt.Sprintf("GOMEMLIMIT=%d", memLimit)
	configs := []struct {
		name string
		env  []string
		args []string
	}{
		{"as deployed (GOMEMLIMIT from the limit, 1 heavy slot from GOMAXPROCS, byte budget from GOMEMLIMIT)", []string{gomemlimit}, nil},
		{"4 heavy slots (--max-heavy-validations=4), byte budget from GOMEMLIMIT", []string{gomemlimit}, []string{"-max-heavy", "4"}},
		{"4 heavy slots, no byte budget, no GOMEMLIMIT: the raw demand", nil, []string{"-max-heavy", "4", "-heavy-inflight-bytes", fmt.Sprint(int64(1) << 50)}},
	}
	var misses []string
	for i, c := range configs {
		srv, err := startChild(c.env, c.args...)
		if err != nil {
			return err
		}
		idle, err := peakRSS(srv.pid())
		if err != nil {
			srv.stop()
			return err
		}
		// Three rounds of four at once.
		client := pinnedClient(webhookTimeout)
		var calls []sample
		for range 3 {
			calls = append(calls, runOpenLoop(client, []stream{{url: srv.url + webhook.ValidatePath + timeoutQuery, body: body, times: make([]time.Duration, 4)}})[0]...)
		}
		rss, err := peakRSS(srv.pid())
		srv.stop()
		if err != nil {
			return err
		}
		_, sum, shed, failed := tally(calls, 0, time.Hour)
		perByte := float64(rss-idle) / float64(4*len(body))
		fmt.Printf("%s\n  idle RSS %.1f MiB, peak RSS %.1f MiB; %d admitted, %d shed, %d failed; latency p50 %v max %v\n",
			c.name, mib(idle), mib(rss), sum.n-shed-failed, shed, failed, sum.p50.Round(time.Millisecond), sum.max.Round(time.Millisecond))
		if i < 2 {
			if rss > memLimit {
				misses = append(misses, fmt.Sprintf("%s: peak RSS %.1f MiB is over the %d MiB limit", c.name, mib(rss), memLimit>>20))
			}
			if shed+failed > 0 {
				misses = append(misses, fmt.Sprintf("%s: %d of 12 calls were refused", c.name, shed+failed))
			}
			continue
		}
		fmt.Printf("  peak RSS above idle per byte of the 4 bodies in flight: %.1f (limit.HeapPerBodyByte: %d)\n", perByte, limit.HeapPerBodyByte)
		if perByte > limit.HeapPerBodyByte {
			misses = append(misses, fmt.Sprintf("heap per body byte %.1f is above limit.HeapPerBodyByte (%d): raise it", perByte, limit.HeapPerBodyByte))
		}
	}
	return verdict(misses)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
