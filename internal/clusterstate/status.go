package clusterstate

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/promenroll/promenroll/policy"
)

// ReadStatusInput reads what the status joins, but Prometheus' answers:
// namespaces, the workloads and Services in the policy's scope, the
// monitors and PrometheusRules of the kinds served, and the Prometheus
// objects given. The reporter reads its caches (with
// client.UnsafeDisableDeepCopy in opts: it only reads, so the cached
// objects are not copied); `promenroll status` the API server (opts:
// client.InNamespace, which narrows the workloads, Services and rules).
// subjects maps kind/namespace/name to the object's UID.
func ReadStatusInput(ctx context.Context, r client.Reader, p *policy.Policy, served func(kind string) bool, proms []policy.PrometheusSelectors, opts ...client.ListOption) (in policy.StatusInput, subjects map[string]types.UID, err error) {
	var unscoped []client.ListOption
	for _, o := range opts {
		if _, ns := o.(client.InNamespace); !ns {
			unscoped = append(unscoped, o)
		}
	}
	var nsList metav1.PartialObjectMetadataList
	nsList.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NamespaceList"))
	if err := r.List(ctx, &nsList, unscoped...); err != nil {
		return in, nil, fmt.Errorf("list namespaces: %w", err)
	}
	namespaces := make(map[string]policy.Namespace, len(nsList.Items))
	for _, ns := range nsList.Items {
		namespaces[ns.Name] = policy.Namespace{Name: ns.Name, Labels: ns.Labels, Annotations: ns.Annotations}
	}
	in.Namespace = func(name string) policy.Namespace {
		if ns, ok := namespaces[name]; ok {
			return ns
		}
		return policy.Namespace{Name: name, Labels: map[string]string{"kubernetes.io/metadata.name": name}}
	}
	in.Prometheuses = proms
	subjects = map[string]types.UID{}
	// Workloads and Services in namespaces the policy leaves alone are not
	// in its scope: nothing is reported on them.
	inScope := func(objs []policy.Object, uids []types.UID) []policy.Object {
		out := objs[:0]
		for i, o := range objs {
			if _, excluded := p.ExcludedNamespace(in.Namespace(o.Namespace)); excluded {
				continue
			}
			subjects[o.Kind+"/"+o.Namespace+"/"+o.Name] = uids[i]
			out = append(out, o)
		}
		return out
	}
	ws, wuids, err := StatusWorkloads(ctx, r, opts...)
	if err != nil {
		return in, nil, err
	}
	in.Workloads = inScope(ws, wuids)
	ss, suids, err := StatusServices(ctx, r, opts...)
	if err != nil {
		return in, nil, err
	}
	in.Services = inScope(ss, suids)
	if in.Monitors, err = MonitorObjectsFrom(ctx, r, served, unscoped...); err != nil {
		return in, nil, err
	}
	if served("PrometheusRule") {
		if in.Rules, err = RuleObjectsFrom(ctx, r, opts...); err != nil {
			return in, nil, err
		}
	}
	return in, subjects, nil
}
