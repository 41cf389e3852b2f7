package clusterstate

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/promenroll/promenroll/policy"
)

// CachedServices reads Services from the manager's informer cache for the
// monitor gate's warnings (list/watch services); never the API server.
type CachedServices struct {
	Cache client.Reader
}

// Services implements policy.ServiceReader. A cache error reads as no
// Services in that namespace: the checks only warn.
func (c CachedServices) Services(namespaces []string, all bool) []policy.Service {
	ctx := context.Background()
	var out []policy.Service
	list := func(opts ...client.ListOption) {
		var l corev1.ServiceList
		if err := c.Cache.List(ctx, &l, opts...); err != nil {
			return
		}
		for i := range l.Items {
			out = append(out, ServiceOf(&l.Items[i]))
		}
	}
	eachNamespace(namespaces, all, list)
	return out
}

// eachNamespace calls list once for all namespaces, or once per namespace
// (the cache's namespace index serves each).
func eachNamespace(namespaces []string, all bool, list func(opts ...client.ListOption)) {
	if all {
		list()
		return
	}
	for _, ns := range namespaces {
		list(client.InNamespace(ns))
	}
}

// ServiceOf is what the monitor gate reads of a Service.
func ServiceOf(s *corev1.Service) policy.Service {
	ps := policy.Service{Namespace: s.Namespace, Name: s.Name, Labels: s.Labels}
	for _, p := range s.Spec.Ports {
		ps.Ports = append(ps.Ports, policy.Port{Name: p.Name, Number: p.Port, TargetPort: p.TargetPort})
	}
	return ps
}

// trimService keeps of a Service only what the checks and the status read
// (name, namespace, labels, scrape annotations, ports), so the cache costs
// a few hundred bytes per Service, not its whole spec, status and managed
// fields.
func trimService(obj any) (any, error) {
	s, ok := obj.(*corev1.Service)
	if !ok {
		return obj, nil
	}
	trimmed := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace, Labels: s.Labels, Annotations: scrapeAnnotations(s.Annotations), ResourceVersion: s.ResourceVersion, UID: s.UID},
	}
	for _, p := range s.Spec.Ports {
		trimmed.Spec.Ports = append(trimmed.Spec.Ports, corev1.ServicePort{Name: p.Name, Port: p.Port, TargetPort: p.TargetPort})
	}
	return trimmed, nil
}

// CacheOptions registers the trimming transforms of the caches the monitor
// gate reads: Services and the workloads' pod templates.
func CacheOptions() cache.Options {
	opts := cache.Options{ByObject: map[client.Object]cache.ByObject{&corev1.Service{}: {Transform: trimService}}}
	for _, obj := range PodOwners() {
		opts.ByObject[obj] = cache.ByObject{Transform: trimWorkload}
	}
	return opts
}

// PodOwners are the built-in pod owners the PodMonitor checks read, one
// empty object of each kind for the informers.
func PodOwners() []client.Object {
	return []client.Object{&appsv1.Deployment{}, &appsv1.StatefulSet{}, &appsv1.DaemonSet{}, &batchv1.Job{}, &batchv1.CronJob{}}
}

// StatusServices lists the Services the status reports on, from the
// cache, as enrollment reads them, with their UIDs.
func StatusServices(ctx context.Context, c client.Reader, opts ...client.ListOption) ([]policy.Object, []types.UID, error) {
	var list corev1.ServiceList
	if err := c.List(ctx, &list, opts...); err != nil {
		return nil, nil, fmt.Errorf("list Services: %w", err)
	}
	objs := make([]policy.Object, 0, len(list.Items))
	uids := make([]types.UID, 0, len(list.Items))
	for i := range list.Items {
		s := &list.Items[i]
		objs = append(objs, policy.Object{Kind: "Service", Namespace: s.Namespace, Name: s.Name, Labels: s.Labels, Annotations: s.Annotations, Ports: ServiceOf(s).Ports})
		uids = append(uids, s.UID)
	}
	return objs, uids, nil
}
