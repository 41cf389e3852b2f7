package webhook

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	if diff := cmp.Diff(want, w); diff != "" {
		t.Errorf("the trimmed workload reads differently (-want +got):\n%s", diff)
	}
	tr := got.(*appsv1.Deployment)
	if len(tr.Annotations) != 0 || len(tr.Spec.Template.Annotations) != 0 || tr.Spec.Template.Spec.Containers[0].Image != "" || len(tr.Spec.Template.Spec.Containers[0].Env) != 0 {
		t.Errorf("kept what no check reads: %+v", tr)
	}
}
