package clusterstate

import (
	openreports "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// RESTConfig loads API server access: kubeconfig if given, else
// $KUBECONFIG and the default loading rules, else the in-cluster config.
func RESTConfig(kubeconfig, userAgent string) (*rest.Config, error) {
	c, err := ClientConfig(kubeconfig).ClientConfig()
	if err != nil {
		return nil, err
	}
	c.UserAgent = userAgent
	return c, nil
}

// ClientConfig is the kubeconfig's (or $KUBECONFIG's, or the in-cluster)
// client configuration: RESTConfig's source, and the context's namespace.
func ClientConfig(kubeconfig string) clientcmd.ClientConfig {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		rules.ExplicitPath = kubeconfig
	}
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
}

// Scheme is the types serve, audit and status read and write: Kubernetes'
// built-in kinds, the Prometheus Operator's monitoring.coreos.com v1 and
// v1alpha1, and OpenReports' v1alpha1 (the status' Reports).
func Scheme() (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, monv1.AddToScheme, monv1alpha1.AddToScheme, openreports.Install} {
		if err := add(scheme); err != nil {
			return nil, err
		}
	}
	return scheme, nil
}
