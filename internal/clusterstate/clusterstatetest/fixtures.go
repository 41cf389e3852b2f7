// Package clusterstatetest holds fixtures for tests of the caches and of
// what reads them.
package clusterstatetest

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Service is a typical Service as the API server sends it: labels from a
// Helm chart, annotations, two ports, managed fields.
func Service(i int) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("svc-%d", i), Namespace: fmt.Sprintf("ns-%d", i%1000), UID: "0d4c5a8e-8f1b-4c1e-9b6f-3a2f1c0e7d%02d", ResourceVersion: "123456",
			Labels:        map[string]string{"app.kubernetes.io/name": "api", "app.kubernetes.io/instance": "shop", "helm.sh/chart": "api-1.2.3", "app.kubernetes.io/managed-by": "Helm"},
			Annotations:   map[string]string{"meta.helm.sh/release-name": "shop", "meta.helm.sh/release-namespace": "shop", "kubectl.kubernetes.io/last-applied-configuration": `{"apiVersion":"v1","kind":"Service","metadata":{"annotations":{},"labels":{"app":"api"},"name":"api","namespace":"shop"},"spec":{"ports":[{"name":"http","port":80,"targetPort":"http"},{"name":"metrics","port":9090,"targetPort":"metrics"}],"selector":{"app":"api"}}}`},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "helm", Operation: metav1.ManagedFieldsOperationUpdate, FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(strings.Repeat(" ", 600))}},
		},
		Spec: corev1.ServiceSpec{
			Ports:      []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP}, {Name: "metrics", Port: 9090, TargetPort: intstr.FromString("metrics"), Protocol: corev1.ProtocolTCP}},
			Selector:   map[string]string{"app.kubernetes.io/name": "api"},
			ClusterIP:  "10.96.12.34",
			ClusterIPs: []string{"10.96.12.34"},
			Type:       corev1.ServiceTypeClusterIP,
		},
	}
}
