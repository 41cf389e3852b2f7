package clusterstate

import (
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/promenroll/promenroll/internal/testdiff"
)

func TestTrimWorkloadKeepsWhatTheChecksRead(t *testing.T) {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: "shop", Labels: map[string]string{"app": "api"}, Annotations: map[string]string{"a": "b"}},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "api"}, Annotations: map[string]string{"x": "y"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "api", Image: "registry.example/api:1", Env: []corev1.EnvVar{{Name: "A", Value: "1"}},
				Ports: []corev1.ContainerPort{{Name: "metrics", ContainerPort: 9090}}}}},
		}},
	}
	got, _ := trimWorkload(d)
	w := WorkloadOf("Deployment", &got.(*appsv1.Deployment).ObjectMeta, &got.(*appsv1.Deployment).Spec.Template)
	want := WorkloadOf("Deployment", &d.ObjectMeta, &d.Spec.Template)
	if diff := testdiff.Diff(want, w); diff != "" {
		t.Errorf("the trimmed workload reads differently (-want +got):\n%s", diff)
	}
	tr := got.(*appsv1.Deployment)
	if len(tr.Annotations) != 0 || len(tr.Spec.Template.Annotations) != 0 || tr.Spec.Template.Spec.Containers[0].Image != "" || len(tr.Spec.Template.Spec.Containers[0].Env) != 0 {
		t.Errorf("kept what no check reads: %+v", tr)
	}
}

// BenchmarkWorkloadCacheMemory reports the heap 10,000 cached Deployments
// take after trimming (bytes/10k-deployments): a typical chart's Deployment
// with two containers, env, probes and resources.
func BenchmarkWorkloadCacheMemory(b *testing.B) {
	deployment := func(i int) *appsv1.Deployment {
		container := func(name string) corev1.Container {
			return corev1.Container{Name: name, Image: "registry.example/" + name + ":1.2.3", Args: []string{"--port=8080", "--metrics-port=9090"},
				Env:   []corev1.EnvVar{{Name: "LOG_LEVEL", Value: "info"}, {Name: "GOMAXPROCS", Value: "2"}},
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "metrics", ContainerPort: 9090}}}
		}
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("app-%d", i), Namespace: fmt.Sprintf("ns-%d", i%1000),
				Labels:      map[string]string{"app.kubernetes.io/name": "app", "app.kubernetes.io/instance": fmt.Sprintf("i-%d", i), "helm.sh/chart": "app-1.2.3"},
				Annotations: map[string]string{"deployment.kubernetes.io/revision": "3", "meta.helm.sh/release-name": "app"}},
			Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app.kubernetes.io/name": "app", "app.kubernetes.io/instance": fmt.Sprintf("i-%d", i)}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{container("app"), container("sidecar")}},
			}},
		}
	}
	reportHeap(b, "bytes/10k-deployments", func(i int) any {
		w, _ := trimWorkload(deployment(i))
		return w
	})
}
