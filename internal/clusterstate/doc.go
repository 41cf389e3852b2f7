// Package clusterstate reads what promenroll's decisions need of the
// cluster besides the object: namespaces' metadata, Services' labels and
// ports, workloads' pod template labels and ports, and the Prometheus and
// PrometheusAgent objects' selectors. Each comes from a controller-runtime
// informer cache trimmed to what a decision reads (never the API server on
// the request path), and the same converters (ServiceOf, WorkloadOf,
// PrometheusSelectorsOf) build the policy's view for check and audit.
package clusterstate
