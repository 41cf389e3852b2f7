package clusterstate

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/promenroll/promenroll/internal/testdiff"
	"github.com/promenroll/promenroll/policy"
)

func TestCachedNamespacesFallsBackToALiveReadForANewNamespace(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	old := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"team": "payments"}}}
	fresh := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "brand-new", Labels: map[string]string{"team": "growth"},
		Annotations: map[string]string{policy.ModeAnnotation: "dry-run"}}}
	ns := CachedNamespaces{
		Cache: fake.NewClientBuilder().WithScheme(scheme).WithObjects(old).Build(),
		Live:  fake.NewClientBuilder().WithScheme(scheme).WithObjects(old, fresh).Build(),
	}
	for _, tt := range []struct {
		name string
		want policy.Namespace
	}{
		{"shop", policy.Namespace{Name: "shop", Labels: old.Labels}},
		{"brand-new", policy.Namespace{Name: "brand-new", Labels: fresh.Labels, Annotations: fresh.Annotations}},
	} {
		got, err := ns.Namespace(t.Context(), tt.name)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if diff := testdiff.Diff(tt.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
	}
	if _, err := ns.Namespace(t.Context(), "ghost"); err == nil {
		t.Error("a namespace that exists nowhere was found")
	}
}
