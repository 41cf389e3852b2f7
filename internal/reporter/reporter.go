// Package reporter runs the monitoring status in serve: every interval,
// on the leader only, it reads the informer caches, asks each Prometheus
// that loads a monitor or rule for its targets and rules, joins both with
// policy.Status, and publishes the results as OpenReports (one Report per
// namespace, written only when its content changed), as Events on the
// objects (only on a change of state, bounded per cycle) and as metrics
// (counts by namespace, check and result; never a label per object).
package reporter

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-logr/logr"
	openreports "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/promenroll/promenroll/internal/clusterstate"
	"github.com/promenroll/promenroll/internal/promapi"
	"github.com/promenroll/promenroll/policy"
)

// Defaults of a Config.
const (
	DefaultInterval = time.Minute
	// DefaultMaxEvents bounds the Events of one cycle; the rest wait for
	// the next one (their state is not recorded as reported).
	DefaultMaxEvents = 100
	// ReportName is the name of promenroll's Report in each namespace.
	ReportName = "promenroll"
	// Source is the results' source, and the Report's.
	Source = "promenroll"
	// FieldOwner is the server-side apply manager of the Reports.
	FieldOwner = "promenroll-reporter"
	// parallelAsks bounds the Prometheuses asked at once.
	parallelAsks = 4
)

// managedBy marks the Reports the reporter owns.
var managedBy = map[string]string{"app.kubernetes.io/managed-by": "promenroll"}

// Config says what the reporter publishes and how it reaches Prometheus.
type Config struct {
	// Interval between cycles (default DefaultInterval).
	Interval time.Duration
	// Endpoints override, by namespace/name, how a Prometheus is reached;
	// the key "*" applies to every Prometheus without its own entry (its
	// URL then comes from the Prometheus object).
	Endpoints map[string]promapi.Endpoint
	// Timeout bounds one call to a Prometheus (default: a quarter of the
	// interval, at most promapi.DefaultTimeout).
	Timeout time.Duration
	// Reports, Events: where the results go (metrics always).
	Reports, Events bool
	// MaxEvents per cycle (default DefaultMaxEvents).
	MaxEvents int
}

// Policies gives the policy in force.
type Policies interface{ Policy() *policy.Policy }

// Kinds says which CRDs are served and lists Prometheus objects (the
// manager's CRD follower).
type Kinds interface {
	Served(kind string) bool
	Prometheuses(ctx context.Context) ([]policy.PrometheusSelectors, error)
}

// Writer writes and lists the Reports (the manager's client).
type Writer interface {
	Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error
	Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error
	List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error
}

// Reporter is the status' runnable.
type Reporter struct {
	Config   Config
	Policies Policies
	Kinds    Kinds
	// Cache is read for every object; Client writes Reports (and lists
	// them once per leadership term); Recorder writes Events.
	Cache    client.Reader
	Client   Writer
	Recorder recorder.EventRecorder
	Metrics  *Metrics
	Log      logr.Logger

	mu      sync.Mutex
	clients map[string]*asker
	// states: the last state per subject and check that an Event told
	// (nil until the first cycle, which only records).
	states map[string]string
	// written: per namespace, the content last written (or found).
	written map[string]*openreports.Report
	loaded  bool
}

type asker struct {
	endpoint promapi.Endpoint
	client   *promapi.Client
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: one
// replica reports.
func (r *Reporter) NeedLeaderElection() bool { return true }

// Start implements manager.Runnable: a cycle at once, then every interval.
func (r *Reporter) Start(ctx context.Context) error {
	interval := r.interval()
	r.Log.Info("reporting", "interval", interval.String(), "reports", r.Config.Reports, "events", r.Config.Events)
	t := time.NewTicker(interval)
	defer t.Stop()
	defer r.closeClients()
	for {
		if err := r.Cycle(ctx); err != nil && ctx.Err() == nil {
			r.Log.Error(err, "status cycle")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Cycle runs one report: read, ask, join, publish.
func (r *Reporter) Cycle(ctx context.Context) (err error) {
	start := time.Now()
	defer func() { r.Metrics.cycle(time.Since(start), err) }()
	in, subjects, err := r.gather(ctx)
	if err != nil {
		return err
	}
	p := r.Policies.Policy()
	results := p.Status(in)
	for i := range results {
		if uid, ok := subjects[subjectKey(results[i].Subject)]; ok {
			results[i].Subject.UID = string(uid)
		}
	}
	r.Metrics.publish(results)
	var errs []error
	if r.Config.Events {
		r.events(results)
	}
	if r.Config.Reports && r.Kinds.Served(clusterstate.ReportKind) {
		errs = append(errs, r.reports(ctx, results, time.Now()))
	}
	return errors.Join(errs...)
}

func subjectKey(s policy.Subject) string { return s.Kind + "/" + s.Namespace + "/" + s.Name }

// gather reads the objects from the caches and asks the Prometheuses.
func (r *Reporter) gather(ctx context.Context) (policy.StatusInput, map[string]types.UID, error) {
	proms, err := r.Kinds.Prometheuses(ctx)
	if err != nil {
		return policy.StatusInput{}, nil, err
	}
	in, subjects, err := clusterstate.ReadStatusInput(ctx, r.Cache, r.Policies.Policy(), r.Kinds.Served, proms, client.UnsafeDisableDeepCopy)
	if err != nil {
		return in, nil, err
	}
	in.States = r.ask(ctx, in.Prometheuses)
	return in, subjects, nil
}

// ask asks every Prometheus at once (at most parallelAsks in flight).
func (r *Reporter) ask(ctx context.Context, proms []policy.PrometheusSelectors) map[string]policy.PrometheusState {
	states := map[string]policy.PrometheusState{}
	var mu sync.Mutex
	g := errgroup.Group{}
	g.SetLimit(parallelAsks)
	for _, pr := range proms {
		if pr.Kind == policy.KindAlertmanager {
			continue // it scrapes nothing and evaluates no rule
		}
		key := pr.Namespace + "/" + pr.Name
		c, err := r.client(key, pr.APIURL)
		if err != nil {
			states[key] = policy.PrometheusState{Err: err.Error()}
			r.Metrics.askError(key)
			continue
		}
		agent := pr.Kind == policy.KindPrometheusAgent
		g.Go(func() error {
			st := c.State(ctx, agent)
			if st.Err != "" {
				r.Metrics.askError(key)
			}
			r.Metrics.reachable(key, st.Err == "")
			mu.Lock()
			states[key] = st
			mu.Unlock()
			return nil
		})
	}
	_ = g.Wait()
	return states
}

// client returns the client of one Prometheus, kept while its endpoint
// stays the same.
func (r *Reporter) client(key, defaultURL string) (*promapi.Client, error) {
	e, ok := r.Config.Endpoints[key]
	if !ok {
		e = r.Config.Endpoints["*"]
	}
	e.URL = cmp.Or(e.URL, defaultURL)
	r.mu.Lock()
	defer r.mu.Unlock()
	if a, ok := r.clients[key]; ok && a.endpoint == e {
		return a.client, nil
	}
	c, err := promapi.New(e)
	if err != nil {
		return nil, fmt.Errorf("the Prometheus %s: %w", key, err)
	}
	c.Timeout = r.timeout()
	if r.clients == nil {
		r.clients = map[string]*asker{}
	}
	if old, ok := r.clients[key]; ok {
		old.client.Close()
	}
	r.clients[key] = &asker{endpoint: e, client: c}
	return c, nil
}

func (r *Reporter) timeout() time.Duration {
	if r.Config.Timeout > 0 {
		return r.Config.Timeout
	}
	return min(r.interval()/4, promapi.DefaultTimeout)
}

// interval is the configured interval, or DefaultInterval.
func (r *Reporter) interval() time.Duration {
	if r.Config.Interval > 0 {
		return r.Config.Interval
	}
	return DefaultInterval
}

func (r *Reporter) closeClients() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range r.clients {
		a.client.Close()
	}
	r.clients = nil
}

// apiVersions are the versions subjects are named in.
var apiVersions = map[string]string{
	"Deployment": "apps/v1", "StatefulSet": "apps/v1", "DaemonSet": "apps/v1", "Service": "v1",
	"ServiceMonitor": "monitoring.coreos.com/v1", "PodMonitor": "monitoring.coreos.com/v1", "Probe": "monitoring.coreos.com/v1",
	"PrometheusRule": "monitoring.coreos.com/v1", "ScrapeConfig": "monitoring.coreos.com/v1alpha1",
}

func reference(s policy.Subject) corev1.ObjectReference {
	return corev1.ObjectReference{APIVersion: apiVersions[s.Kind], Kind: s.Kind, Namespace: s.Namespace, Name: s.Name, UID: types.UID(s.UID)}
}

// healthy are the states an Event tells as Normal.
var healthy = map[string]bool{policy.StateScraped: true, policy.StateMonitorLoaded: true, policy.StateRulesEvaluating: true}

// events tells, on each object, a change of its state since the last
// cycle (or its first state, for an object seen after the first cycle).
// The first cycle only records: a restart or a failover tells nothing.
func (r *Reporter) events(results []policy.StatusResult) {
	first := r.states == nil
	if first {
		r.states = map[string]string{}
	}
	sent := 0
	max := r.Config.MaxEvents
	if max <= 0 {
		max = DefaultMaxEvents
	}
	live := make(map[string]bool, len(results))
	for _, res := range results {
		key := subjectKey(res.Subject) + "/" + res.Check
		live[key] = true
		if r.states[key] == res.State {
			continue
		}
		if first {
			r.states[key] = res.State
			continue
		}
		if res.Subject.UID == "" || sent >= max {
			if sent >= max {
				r.Metrics.EventsDeferred.Inc()
			}
			continue
		}
		regarding := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: apiVersions[res.Subject.Kind], Kind: res.Subject.Kind},
			ObjectMeta: metav1.ObjectMeta{Namespace: res.Subject.Namespace, Name: res.Subject.Name, UID: types.UID(res.Subject.UID)}}
		kind := corev1.EventTypeWarning
		if healthy[res.State] {
			kind = corev1.EventTypeNormal
		}
		r.Recorder.Eventf(regarding, nil, kind, res.State, "Report", "%s", res.Message)
		r.Metrics.Events.Inc()
		r.states[key] = res.State
		sent++
	}
	for key := range r.states {
		if !live[key] {
			delete(r.states, key)
		}
	}
}

// reports applies one Report per namespace with results, when its content
// differs from what was last written, and deletes the reporter's Reports
// of namespaces that have nothing left to report.
func (r *Reporter) reports(ctx context.Context, results []policy.StatusResult, now time.Time) error {
	if !r.loaded {
		if err := r.loadReports(ctx); err != nil {
			return err
		}
	}
	byNS := map[string][]policy.StatusResult{}
	for _, res := range results {
		byNS[res.Subject.Namespace] = append(byNS[res.Subject.Namespace], res)
	}
	var errs []error
	for _, ns := range slices.Sorted(maps.Keys(byNS)) {
		rep := buildReport(ns, byNS[ns], r.written[ns], now)
		if old := r.written[ns]; old != nil && sameContent(old, rep) {
			continue
		}
		if err := r.Client.Patch(ctx, rep, client.Apply, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil { //nolint:staticcheck // SA1019: typed objects apply as a whole, which is the intent
			errs = append(errs, fmt.Errorf("apply Report %s/%s: %w", ns, ReportName, err))
			continue
		}
		r.Metrics.ReportWrites.Inc()
		r.written[ns] = rep
	}
	for ns := range r.written {
		if _, ok := byNS[ns]; ok {
			continue
		}
		rep := &openreports.Report{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ReportName}}
		if err := r.Client.Delete(ctx, rep); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("delete Report %s/%s: %w", ns, ReportName, err))
			continue
		}
		r.Metrics.ReportWrites.Inc()
		delete(r.written, ns)
	}
	return errors.Join(errs...)
}

// loadReports reads the reporter's Reports once per leadership term, so a
// new leader writes only what changed.
func (r *Reporter) loadReports(ctx context.Context) error {
	var list openreports.ReportList
	if err := r.Client.List(ctx, &list, client.MatchingLabels(managedBy)); err != nil {
		return fmt.Errorf("list the Reports written before: %w", err)
	}
	r.written = map[string]*openreports.Report{}
	for i := range list.Items {
		if rep := &list.Items[i]; rep.Name == ReportName {
			r.written[rep.Namespace] = rep
		}
	}
	r.loaded = true
	return nil
}

// buildReport is the Report of one namespace. A result keeps the
// timestamp it had while its outcome and message stay the same, so an
// unchanged namespace yields the same content.
func buildReport(ns string, results []policy.StatusResult, old *openreports.Report, now time.Time) *openreports.Report {
	since := map[string]metav1.Timestamp{}
	if old != nil {
		for _, res := range old.Results {
			if len(res.Subjects) == 1 {
				since[resultKey(res)] = res.Timestamp
			}
		}
	}
	rep := &openreports.Report{
		TypeMeta:   metav1.TypeMeta{APIVersion: openreports.SchemeGroupVersion.String(), Kind: clusterstate.ReportKind},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ReportName, Labels: managedBy},
		Source:     Source,
		Scope:      &corev1.ObjectReference{APIVersion: "v1", Kind: "Namespace", Name: ns},
	}
	// What needs attention first, then by object: when a namespace has more
	// than MaxResults, the passing ones are those left out.
	slices.SortFunc(results, func(a, b policy.StatusResult) int {
		return cmp.Or(cmp.Compare(outcomeRank[a.Outcome], outcomeRank[b.Outcome]),
			strings.Compare(subjectKey(a.Subject)+"/"+a.Check, subjectKey(b.Subject)+"/"+b.Check))
	})
	if len(results) > MaxResults {
		rep.Configuration = &openreports.ReportConfiguration{Limits: openreports.Limits{MaxResults: MaxResults}}
	}
	for i, res := range results {
		switch res.Outcome {
		case policy.OutcomePass:
			rep.Summary.Pass++
		case policy.OutcomeWarn:
			rep.Summary.Warn++
		case policy.OutcomeFail:
			rep.Summary.Fail++
		case policy.OutcomeError:
			rep.Summary.Error++
		case policy.OutcomeSkip:
			rep.Summary.Skip++
		}
		if i >= MaxResults {
			continue // counted in the summary, not listed
		}
		rr := openreports.ReportResult{Source: Source, Policy: "monitoring-status", Rule: res.Check, Result: openreports.Result(res.Outcome),
			Subjects: []corev1.ObjectReference{reference(res.Subject)}, Description: truncate(res.Message, maxMessage), Properties: nonEmpty(res.Properties)}
		if res.State != "" {
			if rr.Properties == nil {
				rr.Properties = map[string]string{}
			}
			rr.Properties["state"] = res.State
		}
		rr.Timestamp = metav1.Timestamp{Seconds: now.Unix()}
		if ts, ok := since[resultKey(rr)]; ok {
			rr.Timestamp = ts
		}
		rep.Results = append(rep.Results, rr)
	}
	return rep
}

// A Report is one object, so it must stay under the API server's request
// limit (3 MiB) and etcd's object limit (1.5 MiB by default): at most
// MaxResults results of at most maxMessage bytes of message each (a result
// is under 1 KiB). The summary counts every result; the Report's
// configuration.limits.maxResults says when some are not listed.
const (
	MaxResults = 1000
	maxMessage = 512
)

// outcomeRank orders results by what needs attention.
var outcomeRank = map[policy.Outcome]int{policy.OutcomeFail: 0, policy.OutcomeError: 1, policy.OutcomeWarn: 2, policy.OutcomeSkip: 3, policy.OutcomePass: 4}

// truncate cuts s to at most n bytes, at a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func nonEmpty(m map[string]string) map[string]string {
	var out map[string]string
	for k, v := range m {
		if v != "" {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}

// resultKey is what must stay the same for a result to keep its timestamp.
func resultKey(rr openreports.ReportResult) string {
	s := rr.Subjects[0]
	return s.Kind + "/" + s.Name + "/" + string(s.UID) + "/" + rr.Rule + "/" + string(rr.Result) + "/" + rr.Description
}

// sameContent compares what the reporter writes of two Reports.
func sameContent(a, b *openreports.Report) bool {
	if a.Source != b.Source || a.Summary != b.Summary || len(a.Results) != len(b.Results) || !maps.Equal(a.Labels, b.Labels) {
		return false
	}
	for i := range a.Results {
		x, y := a.Results[i], b.Results[i]
		if x.Source != y.Source || x.Policy != y.Policy || x.Rule != y.Rule || x.Result != y.Result || x.Description != y.Description ||
			x.Timestamp != y.Timestamp || !slices.Equal(x.Subjects, y.Subjects) || !maps.Equal(x.Properties, y.Properties) {
			return false
		}
	}
	return true
}

// ParseEndpoints reads the --prometheus-url, --prometheus-ca-file and
// --prometheus-bearer-token-file values: each NAMESPACE/NAME=VALUE for
// one Prometheus, or a bare VALUE (CA and token only) for all of them.
func ParseEndpoints(urls, caFiles, tokenFiles []string) (map[string]promapi.Endpoint, error) {
	out := map[string]promapi.Endpoint{}
	var errs []error
	each := func(flag string, values []string, bare bool, set func(e *promapi.Endpoint, v string)) {
		for _, v := range values {
			key, val, ok := strings.Cut(v, "=")
			switch {
			case !ok && bare:
				key, val = "*", v
			case !ok || strings.Count(key, "/") != 1 || strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/") || val == "":
				errs = append(errs, fmt.Errorf("--%s %q: want NAMESPACE/NAME=VALUE (the Prometheus object's namespace and name)", flag, v))
				continue
			}
			e := out[key]
			set(&e, val)
			out[key] = e
		}
	}
	each("prometheus-url", urls, false, func(e *promapi.Endpoint, v string) { e.URL = v })
	each("prometheus-ca-file", caFiles, true, func(e *promapi.Endpoint, v string) { e.CAFile = v })
	each("prometheus-bearer-token-file", tokenFiles, true, func(e *promapi.Endpoint, v string) { e.BearerTokenFile = v })
	// Every Prometheus with its own entry but no CA or token of its own
	// takes the shared ones.
	for key, e := range out {
		if key == "*" {
			continue
		}
		e.CAFile, e.BearerTokenFile = cmp.Or(e.CAFile, out["*"].CAFile), cmp.Or(e.BearerTokenFile, out["*"].BearerTokenFile)
		out[key] = e
	}
	for key, e := range out {
		if key == "*" || e.URL == "" {
			continue
		}
		if _, err := promapi.New(promapi.Endpoint{URL: e.URL}); err != nil {
			errs = append(errs, fmt.Errorf("--prometheus-url %s: %w", key, err))
		}
	}
	return out, errors.Join(errs...)
}
