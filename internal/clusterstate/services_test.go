package clusterstate

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/promenroll/promenroll/internal/clusterstate/clusterstatetest"
)

func TestTrimServiceKeepsWhatTheChecksRead(t *testing.T) {
	got, _ := trimService(clusterstatetest.Service(7))
	s := got.(*corev1.Service)
	if s.Name != "svc-7" || s.Namespace != "ns-7" || s.Labels["app.kubernetes.io/name"] != "api" || len(s.Spec.Ports) != 2 || s.Spec.Ports[1].Name != "metrics" || s.Spec.Ports[1].TargetPort.StrVal != "metrics" {
		t.Errorf("trimmed too much: %+v", s)
	}
	if len(s.Annotations) != 0 || len(s.ManagedFields) != 0 || s.Spec.Selector != nil || s.Spec.ClusterIP != "" {
		t.Errorf("kept what no check reads: %+v", s)
	}
}

// BenchmarkServiceCacheMemory reports the heap 10,000 cached Services take
// after trimming (bytes/10k-services).
func BenchmarkServiceCacheMemory(b *testing.B) {
	reportHeap(b, "bytes/10k-services", func(i int) any {
		s, _ := trimService(clusterstatetest.Service(i))
		return s
	})
}
