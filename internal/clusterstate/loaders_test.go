package clusterstate

import (
	"context"
	"testing"

	"github.com/go-logr/logr"
	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/promenroll/promenroll/internal/testdiff"
)

// fakeInformers records which informers were started and removed, and
// serves objects from a fake client.
type fakeInformers struct {
	client.Reader
	started, removed []string
}

func (f *fakeInformers) GetInformer(_ context.Context, obj client.Object, _ ...cache.InformerGetOption) (cache.Informer, error) {
	f.started = append(f.started, kindName(obj))
	return nil, nil
}

func (f *fakeInformers) RemoveInformer(_ context.Context, obj client.Object) error {
	f.removed = append(f.removed, kindName(obj))
	return nil
}

func kindName(obj client.Object) string {
	switch obj.(type) {
	case *monv1.Prometheus:
		return "Prometheus"
	case *monv1alpha1.PrometheusAgent:
		return "PrometheusAgent"
	}
	return "?"
}

func TestDynamicPrometheusesFollowTheCRDs(t *testing.T) {
	scheme := runtime.NewScheme()
	_ = monv1.AddToScheme(scheme)
	_ = monv1alpha1.AddToScheme(scheme)
	all := &metav1.LabelSelector{}
	objs := fake.NewClientBuilder().WithScheme(scheme).WithObjects(
		&monv1.Prometheus{ObjectMeta: metav1.ObjectMeta{Name: "k8s", Namespace: "monitoring"}, Spec: monv1.PrometheusSpec{CommonPrometheusFields: monv1.CommonPrometheusFields{ServiceMonitorSelector: all}}},
		&monv1alpha1.PrometheusAgent{ObjectMeta: metav1.ObjectMeta{Name: "edge", Namespace: "agents"}, Spec: monv1alpha1.PrometheusAgentSpec{CommonPrometheusFields: monv1.CommonPrometheusFields{PodMonitorSelector: all}}},
	).Build()
	informers := &fakeInformers{Reader: objs}
	served := map[string]bool{}
	d := &DynamicPrometheuses{Cache: informers, Log: logr.Discard(), IsServed: func(_, resource string) (bool, error) { return served[resource], nil }}
	names := func() []string {
		got, err := d.Prometheuses(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, p := range got {
			out = append(out, p.Namespace+"/"+p.Name)
		}
		return out
	}
	step := func(what string, wantStarted, wantRemoved, wantNames []string) {
		t.Helper()
		if err := d.Sync(t.Context()); err != nil {
			t.Fatal(err)
		}
		if diff := testdiff.Diff(wantStarted, informers.started); diff != "" {
			t.Errorf("%s: informers started (-want +got):\n%s", what, diff)
		}
		if diff := testdiff.Diff(wantRemoved, informers.removed); diff != "" {
			t.Errorf("%s: informers removed (-want +got):\n%s", what, diff)
		}
		if diff := testdiff.Diff(wantNames, names()); diff != "" {
			t.Errorf("%s: loaders (-want +got):\n%s", what, diff)
		}
	}
	step("no CRD served: nothing watched, nothing listed", nil, nil, nil)
	served["prometheuses"] = true
	step("the Prometheus CRD appears", []string{"Prometheus"}, nil, []string{"monitoring/k8s"})
	served["prometheusagents"] = true
	step("the PrometheusAgent CRD appears too", []string{"Prometheus", "PrometheusAgent"}, nil, []string{"monitoring/k8s", "agents/edge"})
	step("nothing changed: nothing started twice", []string{"Prometheus", "PrometheusAgent"}, nil, []string{"monitoring/k8s", "agents/edge"})
	served["prometheusagents"] = false
	step("the PrometheusAgent CRD goes", []string{"Prometheus", "PrometheusAgent"}, []string{"PrometheusAgent"}, []string{"monitoring/k8s"})
	served["prometheuses"] = false
	step("the Prometheus CRD goes", []string{"Prometheus", "PrometheusAgent"}, []string{"PrometheusAgent", "Prometheus"}, nil)
}
