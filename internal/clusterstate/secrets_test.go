package clusterstate

import (
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// appliedSecret is a Secret's metadata as the API server sends it to a
// metadata-only watch after `kubectl apply`: the last-applied annotation
// holds the manifest, data included.
func appliedSecret(i int) *metav1.PartialObjectMetadata {
	s := SecretMeta()
	s.Name, s.Namespace, s.ResourceVersion = fmt.Sprintf("app-%d-credentials", i), fmt.Sprintf("team-%d", i%100), fmt.Sprint(1000+i)
	s.Labels = map[string]string{"app.kubernetes.io/name": "app", "app.kubernetes.io/instance": fmt.Sprint(i), "helm.sh/chart": "app-1.2.3"}
	s.Annotations = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": `{"apiVersion":"v1","data":{"password":"c2VjcmV0LXBhc3N3b3Jk","token":"` + strings.Repeat("dG9rZW4", 40) + `"},"kind":"Secret","metadata":{"name":"` + s.Name + `"}}`}
	s.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply, FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(`{"f:data":{"f:password":{},"f:token":{}}}`)}}
	return s
}

// TestTrimSecretKeepsItsNameOnly: what the cache keeps of a Secret is its
// name, namespace and resourceVersion; the annotation that carries its data
// after `kubectl apply`, its labels and managed fields are dropped.
func TestTrimSecretKeepsItsNameOnly(t *testing.T) {
	got, err := trimSecret(appliedSecret(7))
	if err != nil {
		t.Fatal(err)
	}
	s := got.(*metav1.PartialObjectMetadata)
	if s.Name != "app-7-credentials" || s.Namespace != "team-7" || s.ResourceVersion != "1007" || s.Kind != "Secret" {
		t.Errorf("trimmed too much: %+v", s)
	}
	if s.Annotations != nil || s.Labels != nil || s.ManagedFields != nil {
		t.Errorf("kept what no check reads (the annotation holds the data): %+v", s.ObjectMeta)
	}
}

// BenchmarkSecretCacheMemory reports the heap 10,000 cached Secrets take
// after trimming (bytes/10k-secrets).
func BenchmarkSecretCacheMemory(b *testing.B) {
	reportHeap(b, "bytes/10k-secrets", func(i int) any {
		s, _ := trimSecret(appliedSecret(i))
		return s
	})
}
