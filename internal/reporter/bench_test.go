package reporter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	openreports "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	"github.com/promenroll/promenroll/internal/clusterstate"
	"github.com/promenroll/promenroll/internal/promapi"
	"github.com/promenroll/promenroll/internal/promapi/promapitest"
	"github.com/promenroll/promenroll/policy"
)

// BenchmarkCycle10000 is one reporter cycle over 10,000 Deployments and
// 10,000 Services in 100 namespaces, and a Prometheus answering with
// 10,000 active targets (real-shaped JSON, every discovered label), from
// the second cycle on: nothing changed, so nothing is written. It reports
// the process CPU time per cycle, the peak heap above what the caches
// hold, and the API writes per cycle.
func BenchmarkCycle10000(b *testing.B) {
	const n, namespaces = 10000, 100
	scheme, err := clusterstate.Scheme()
	if err != nil {
		b.Fatal(err)
	}
	var objs []client.Object
	var targets []promapitest.Target
	for i := 0; i < namespaces; i++ {
		objs = append(objs, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ns-%d", i)}})
	}
	for i := 0; i < n; i++ {
		ns, name := fmt.Sprintf("ns-%d", i%namespaces), fmt.Sprintf("app-%d", i)
		d := enrolledDeployment(ns, name, "metrics")
		d.UID = types.UID(fmt.Sprintf("d-%d", i))
		objs = append(objs, d, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(fmt.Sprintf("s-%d", i)),
			Labels: map[string]string{"app.kubernetes.io/name": name}},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}}})
		targets = append(targets, promapitest.Target{Pool: "podMonitor/promenroll-system/promenroll-workloads/0", Namespace: ns, Pod: name + "-6f7d8c9b5-abcde",
			IP: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), ControllerKind: "ReplicaSet", Name: name, Hash: "6f7d8c9b5", Port: "metrics", Health: "up"})
	}
	var answer bytes.Buffer
	if err := promapitest.WriteTargets(&answer, targets, nil); err != nil {
		b.Fatal(err)
	}
	b.Logf("the targets answer: %d targets, %.1f MiB of JSON", n, float64(answer.Len())/(1<<20))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/targets") {
			_, _ = w.Write(answer.Bytes())
			return
		}
		_ = promapitest.WriteRules(w, nil)
	}))
	defer srv.Close()
	objs = append(objs, &monv1.PodMonitor{ObjectMeta: metav1.ObjectMeta{Namespace: "promenroll-system", Name: "promenroll-workloads", UID: "pm"},
		Spec: monv1.PodMonitorSpec{Selector: metav1.LabelSelector{MatchLabels: map[string]string{"monitoring.promenroll.io/scrape": "true"}}, NamespaceSelector: monv1.NamespaceSelector{Any: true}}})
	cache := newInformerLike(b, scheme, objs)
	p, err := policy.Parse("policy.yaml", []byte(testPolicy), policy.Options{})
	if err != nil {
		b.Fatal(err)
	}
	store := &reports{stored: map[string]*openreports.Report{}}
	all := &metav1.LabelSelector{}
	r := &Reporter{
		Config:   Config{Reports: true, Events: true, Endpoints: map[string]promapi.Endpoint{"monitoring/k8s": {URL: srv.URL}}, Timeout: time.Minute},
		Policies: staticPolicy{p},
		Kinds:    kinds{served: map[string]bool{"PodMonitor": true, clusterstate.ReportKind: true}, proms: []policy.PrometheusSelectors{{Namespace: "monitoring", Name: "k8s", PodMonitor: all, PodMonitorNamespace: all}}},
		Cache:    cache, Client: store, Recorder: events.NewFakeRecorder(1000), Metrics: NewMetrics(nil), Log: logr.Discard(),
	}
	ctx := context.Background()
	if err := r.Cycle(ctx); err != nil {
		b.Fatal(err)
	}
	if len(store.stored) != namespaces+1 {
		b.Fatalf("%d Reports, want one per namespace and promenroll-system's", len(store.stored))
	}
	runtime.GC()
	base := heapObjects()
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
				if h := heapObjects(); h > peak.Load() {
					peak.Store(h)
				}
			}
		}
	}()
	applies := store.applies
	cpu := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := r.Cycle(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	used := cpuTime() - cpu
	close(stop)
	<-done
	b.ReportMetric(float64(used.Milliseconds())/float64(b.N), "cpu-ms/cycle")
	b.ReportMetric(float64(peak.Load()-min(base, peak.Load()))/(1<<20), "peak-MiB-added")
	b.ReportMetric(float64(store.applies-applies)/float64(b.N), "writes/cycle")
}

func heapObjects() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// informerLike reads objects as controller-runtime's informer cache does
// (pkg/cache/internal.CacheReader.List): from memory, deep-copied unless
// client.UnsafeDisableDeepCopy, set into the list with meta.SetList. The
// fake client would add a JSON round trip per object that no cache makes.
type informerLike struct {
	scheme *kruntime.Scheme
	byKind map[schema.GroupVersionKind][]kruntime.Object
}

func newInformerLike(tb testing.TB, scheme *kruntime.Scheme, objs []client.Object) *informerLike {
	c := &informerLike{scheme: scheme, byKind: map[schema.GroupVersionKind][]kruntime.Object{}}
	for _, o := range objs {
		gvk, err := apiutil.GVKForObject(o, scheme)
		if err != nil {
			tb.Fatal(err)
		}
		c.byKind[gvk] = append(c.byKind[gvk], o)
		if gvk.Kind == "Namespace" {
			pm := &metav1.PartialObjectMetadata{ObjectMeta: *o.(*corev1.Namespace).ObjectMeta.DeepCopy()}
			pm.SetGroupVersionKind(gvk)
			c.byKind[schema.GroupVersionKind{Version: "v1", Kind: "PartialNamespace"}] = append(c.byKind[schema.GroupVersionKind{Version: "v1", Kind: "PartialNamespace"}], pm)
		}
	}
	return c
}

func (c *informerLike) Get(context.Context, client.ObjectKey, client.Object, ...client.GetOption) error {
	return errors.New("not used")
}

func (c *informerLike) List(_ context.Context, list client.ObjectList, opts ...client.ListOption) error {
	var lo client.ListOptions
	lo.ApplyOptions(opts)
	gvk, err := apiutil.GVKForObject(list, c.scheme)
	if err != nil {
		return err
	}
	kind := schema.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: strings.TrimSuffix(gvk.Kind, "List")}
	if _, partial := list.(*metav1.PartialObjectMetadataList); partial {
		kind = schema.GroupVersionKind{Version: "v1", Kind: "PartialNamespace"}
	}
	var out []kruntime.Object
	for _, o := range c.byKind[kind] {
		if lo.Namespace != "" && o.(client.Object).GetNamespace() != lo.Namespace {
			continue
		}
		if lo.UnsafeDisableDeepCopy == nil || !*lo.UnsafeDisableDeepCopy {
			o = o.DeepCopyObject()
		}
		out = append(out, o)
	}
	return apimeta.SetList(list, out)
}
