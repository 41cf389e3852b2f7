package reporter

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/go-logr/logr"
	openreports "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/promenroll/promenroll/internal/clusterstate"
	"github.com/promenroll/promenroll/internal/promapi"
	"github.com/promenroll/promenroll/internal/promapi/promapitest"
	"github.com/promenroll/promenroll/policy"
)

const testPolicy = `apiVersion: promenroll.io/v1alpha1
kind: Policy
mode: enforce
enroll:
- name: workloads
  kinds: [Deployment]
  labels: {monitoring.promenroll.io/scrape: "true"}
  podTemplateLabels: {monitoring.promenroll.io/scrape: "true"}
`

type staticPolicy struct{ p *policy.Policy }

func (s staticPolicy) Policy() *policy.Policy { return s.p }

type kinds struct {
	served map[string]bool
	proms  []policy.PrometheusSelectors
}

func (k kinds) Served(kind string) bool { return k.served[kind] }
func (k kinds) Prometheuses(context.Context) ([]policy.PrometheusSelectors, error) {
	return k.proms, nil
}

// reports stands for the API server's Reports: applies and deletes are
// counted, and the stored Reports listed back.
type reports struct {
	mu      sync.Mutex
	stored  map[string]*openreports.Report
	applies int
	deletes int
}

func (w *reports) Patch(_ context.Context, obj client.Object, patch client.Patch, _ ...client.PatchOption) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if patch != client.Apply { //nolint:staticcheck // SA1019: what the reporter sends
		return apierrors.NewBadRequest("want server-side apply")
	}
	w.applies++
	w.stored[obj.GetNamespace()] = obj.(*openreports.Report).DeepCopy()
	return nil
}

func (w *reports) Delete(_ context.Context, obj client.Object, _ ...client.DeleteOption) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.deletes++
	delete(w.stored, obj.GetNamespace())
	return nil
}

func (w *reports) List(_ context.Context, list client.ObjectList, _ ...client.ListOption) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := list.(*openreports.ReportList)
	for _, r := range w.stored {
		l.Items = append(l.Items, *r.DeepCopy())
	}
	return nil
}

func enrolledDeployment(ns, name string, port string) *appsv1.Deployment {
	scrape := map[string]string{"monitoring.promenroll.io/scrape": "true"}
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name), Labels: scrape},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: scrape},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Ports: []corev1.ContainerPort{{Name: port, ContainerPort: 9090}}}}}}}}
}

type fixture struct {
	r       *Reporter
	store   *reports
	rec     *events.FakeRecorder
	mu      sync.Mutex
	targets []promapitest.Target
	fail    bool
}

func newFixture(t *testing.T, objs ...client.Object) *fixture {
	t.Helper()
	p, err := policy.Parse("policy.yaml", []byte(testPolicy), policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{store: &reports{stored: map[string]*openreports.Report{}}, rec: events.NewFakeRecorder(100)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.fail {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/targets") {
			_ = promapitest.WriteTargets(w, f.targets, nil)
			return
		}
		_ = promapitest.WriteRules(w, nil)
	}))
	t.Cleanup(srv.Close)
	scheme, err := clusterstate.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	release := &metav1.LabelSelector{}
	objs = append(objs,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"kubernetes.io/metadata.name": "shop"}}},
		&monv1.PodMonitor{ObjectMeta: metav1.ObjectMeta{Namespace: "promenroll-system", Name: "promenroll-workloads", UID: "uid-pm"},
			Spec: monv1.PodMonitorSpec{Selector: metav1.LabelSelector{MatchLabels: map[string]string{"monitoring.promenroll.io/scrape": "true"}}, NamespaceSelector: monv1.NamespaceSelector{Any: true}}})
	cache := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).Build()
	f.r = &Reporter{
		Config:   Config{Reports: true, Events: true, Endpoints: map[string]promapi.Endpoint{"monitoring/k8s": {URL: srv.URL}}},
		Policies: staticPolicy{p},
		Kinds: kinds{served: map[string]bool{"PodMonitor": true, clusterstate.ReportKind: true},
			proms: []policy.PrometheusSelectors{{Namespace: "monitoring", Name: "k8s", PodMonitor: release, PodMonitorNamespace: release, APIURL: "http://unused.invalid"}}},
		Cache: cache, Client: f.store, Recorder: f.rec, Metrics: NewMetrics(nil), Log: logr.Discard(),
	}
	return f
}

func (f *fixture) setTargets(fail bool, ts ...promapitest.Target) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail, f.targets = fail, ts
}

func target(name, health, lastError string) promapitest.Target {
	return promapitest.Target{Pool: "podMonitor/promenroll-system/promenroll-workloads/0", Namespace: "shop", Pod: name + "-6f7d8c9b5-abcde", IP: fmt.Sprintf("10.0.0.%d", name[0]),
		ControllerKind: "ReplicaSet", Name: name, Hash: "6f7d8c9b5", Port: "metrics", Health: health, LastError: lastError}
}

func (f *fixture) drainEvents() []string {
	var out []string
	for {
		select {
		case e := <-f.rec.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func resultOf(t *testing.T, rep *openreports.Report, kind, name string) openreports.ReportResult {
	t.Helper()
	for _, r := range rep.Results {
		if r.Subjects[0].Kind == kind && r.Subjects[0].Name == name {
			return r
		}
	}
	t.Fatalf("no result for %s %s in %+v", kind, name, rep.Results)
	return openreports.ReportResult{}
}

func TestACycleReportsWritesOnlyChangesAndTellsChangesAsEvents(t *testing.T) {
	f := newFixture(t, enrolledDeployment("shop", "checkout", "metrics"))
	ctx := context.Background()
	f.setTargets(false, target("checkout", "up", ""))
	if err := f.r.Cycle(ctx); err != nil {
		t.Fatal(err)
	}
	rep := f.store.stored["shop"]
	if rep == nil {
		t.Fatalf("no Report in shop: %v", f.store.stored)
	}
	res := resultOf(t, rep, "Deployment", "checkout")
	if res.Result != "pass" || res.Description != "1 targets up in Prometheus monitoring/k8s" || res.Subjects[0].UID != "uid-checkout" || res.Subjects[0].APIVersion != "apps/v1" {
		t.Errorf("checkout's result: %+v", res)
	}
	if rep.Source != Source || rep.Scope.Name != "shop" || rep.Summary.Pass != 1 || rep.Labels["app.kubernetes.io/managed-by"] != "promenroll" {
		t.Errorf("Report: source %q scope %v summary %+v labels %v", rep.Source, rep.Scope, rep.Summary, rep.Labels)
	}
	if pm := f.store.stored["promenroll-system"]; pm == nil || resultOf(t, pm, "PodMonitor", "promenroll-workloads").Result != "pass" {
		t.Errorf("the PodMonitor's Report: %+v", pm)
	}
	if ev := f.drainEvents(); len(ev) != 0 {
		t.Errorf("the first cycle told %v: it only records (a restart tells nothing)", ev)
	}

	// Nothing changed: no write, no Event.
	applies := f.store.applies
	if err := f.r.Cycle(ctx); err != nil {
		t.Fatal(err)
	}
	if f.store.applies != applies {
		t.Errorf("%d applies in a cycle where nothing changed, want 0", f.store.applies-applies)
	}

	// The target goes down: one write for shop, one Warning Event.
	f.setTargets(false, target("checkout", "down", "server returned HTTP status 500 Internal Server Error"))
	if err := f.r.Cycle(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.store.applies - applies; got != 2 {
		t.Errorf("%d applies after a target went down, want 2 (shop, and the PodMonitor's namespace)", got)
	}
	res = resultOf(t, f.store.stored["shop"], "Deployment", "checkout")
	if res.Result != "fail" || res.Properties["lastError"] != "server returned HTTP status 500 Internal Server Error" {
		t.Errorf("after the target went down: %+v", res)
	}
	ev := f.drainEvents()
	if len(ev) != 2 || !strings.HasPrefix(ev[0], "Warning TargetsDown 1 of 1 targets down in Prometheus monitoring/k8s") {
		t.Errorf("events %q, want the Deployment's and the PodMonitor's TargetsDown", ev)
	}

	// Prometheus stops answering: error results, one Event each, no crash.
	f.setTargets(true)
	if err := f.r.Cycle(ctx); err != nil {
		t.Fatal(err)
	}
	res = resultOf(t, f.store.stored["shop"], "Deployment", "checkout")
	if res.Result != "error" || !strings.Contains(res.Description, "HTTP 503") {
		t.Errorf("Prometheus down: %+v", res)
	}
	// It comes back: pass again.
	f.setTargets(false, target("checkout", "up", ""))
	if err := f.r.Cycle(ctx); err != nil {
		t.Fatal(err)
	}
	if res = resultOf(t, f.store.stored["shop"], "Deployment", "checkout"); res.Result != "pass" {
		t.Errorf("Prometheus back: %+v", res)
	}
}

func TestANewLeaderWritesOnlyWhatChanged(t *testing.T) {
	f := newFixture(t, enrolledDeployment("shop", "checkout", "metrics"))
	f.setTargets(false, target("checkout", "up", ""))
	if err := f.r.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	next := newFixture(t, enrolledDeployment("shop", "checkout", "metrics"))
	next.store = f.store
	next.r.Client = f.store
	next.setTargets(false, target("checkout", "up", ""))
	applies := f.store.applies
	if err := next.r.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f.store.applies != applies {
		t.Errorf("a new leader applied %d Reports whose content it found unchanged", f.store.applies-applies)
	}
}

func TestAReportIsRemovedWhenItsNamespaceHasNothingToReport(t *testing.T) {
	f := newFixture(t)
	f.store.stored["gone"] = &openreports.Report{ObjectMeta: metav1.ObjectMeta{Namespace: "gone", Name: ReportName, Labels: managedBy}}
	if err := f.r.Cycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.store.stored["gone"]; ok || f.store.deletes != 1 {
		t.Errorf("the Report of a namespace with nothing to report stayed (deletes %d)", f.store.deletes)
	}
}

func TestEventsPerCycleAreBoundedAndTheRestComeLater(t *testing.T) {
	var objs []client.Object
	for _, n := range []string{"a", "b", "c"} {
		objs = append(objs, enrolledDeployment("shop", n, "metrics"))
	}
	f := newFixture(t, objs...)
	f.r.Config.MaxEvents = 2
	f.r.Config.Reports = false
	ctx := context.Background()
	if err := f.r.Cycle(ctx); err != nil {
		t.Fatal(err)
	}
	f.setTargets(false, target("a", "up", ""), target("b", "up", ""), target("c", "up", ""))
	if err := f.r.Cycle(ctx); err != nil {
		t.Fatal(err)
	}
	if ev := f.drainEvents(); len(ev) != 2 {
		t.Errorf("%d events in one cycle, want the bound (2)", len(ev))
	}
	if err := f.r.Cycle(ctx); err != nil {
		t.Fatal(err)
	}
	if ev := f.drainEvents(); len(ev) != 2 {
		t.Errorf("%d events in the next cycle, want the deferred one and the PodMonitor's", len(ev))
	}
}

func TestParseEndpoints(t *testing.T) {
	got, err := ParseEndpoints([]string{"monitoring/k8s=http://127.0.0.1:9090"}, []string{"/ca.pem"}, []string{"monitoring/k8s=/token"})
	if err != nil {
		t.Fatal(err)
	}
	if e := got["monitoring/k8s"]; e != (promapi.Endpoint{URL: "http://127.0.0.1:9090", CAFile: "/ca.pem", BearerTokenFile: "/token"}) {
		t.Errorf("monitoring/k8s: %+v", e)
	}
	if e := got["*"]; e != (promapi.Endpoint{CAFile: "/ca.pem"}) {
		t.Errorf("*: %+v", e)
	}
	for _, bad := range [][]string{{"http://x"}, {"k8s=http://x"}, {"a/b=ftp://x"}, {"/b=http://x"}} {
		if _, err := ParseEndpoints(bad, nil, nil); err == nil {
			t.Errorf("--prometheus-url %v accepted", bad)
		}
	}
}

// A namespace with more objects than a Report can hold: the Report lists
// what needs attention first, counts everything in its summary, and says
// it is limited; every message is bounded.
func TestAReportStaysWithinTheAPIServersLimits(t *testing.T) {
	var results []policy.StatusResult
	for i := 0; i < MaxResults+500; i++ {
		r := policy.StatusResult{Subject: policy.Subject{Kind: "Service", Namespace: "big", Name: fmt.Sprintf("svc-%05d", i)}, Check: policy.CheckScraped,
			Outcome: policy.OutcomePass, Message: "1 targets up in Prometheus monitoring/k8s"}
		if i%700 == 0 {
			r.Outcome, r.Message = policy.OutcomeFail, strings.Repeat("é", 2000)
		}
		results = append(results, r)
	}
	rep := buildReport("big", results, nil, time.Now())
	if len(rep.Results) != MaxResults || rep.Configuration == nil || rep.Configuration.Limits.MaxResults != MaxResults {
		t.Fatalf("%d results listed, configuration %+v: want %d and the limit stated", len(rep.Results), rep.Configuration, MaxResults)
	}
	if rep.Summary.Fail != 3 || rep.Summary.Pass != MaxResults+497 {
		t.Errorf("summary %+v: want every result counted", rep.Summary)
	}
	for i := 0; i < 3; i++ {
		if r := rep.Results[i]; r.Result != "fail" || len(r.Description) > maxMessage || !strings.HasSuffix(r.Description, "…") || !utf8.ValidString(r.Description) {
			t.Errorf("result %d: %s, %d bytes: want the failures first, messages cut at a rune boundary", i, r.Result, len(r.Description))
		}
	}
	js, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	if len(js) > 1<<20 {
		t.Errorf("the Report is %d bytes: over 1 MiB, too close to etcd's 1.5 MiB", len(js))
	}
}
