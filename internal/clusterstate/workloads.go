package clusterstate

import (
	"context"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/promenroll/promenroll/policy"
)

// CachedWorkloads reads Deployments, StatefulSets, DaemonSets, Jobs and
// CronJobs (the built-in pod owners) from the
// manager's informer cache for the PodMonitor checks (list/watch);
// never the API server.
type CachedWorkloads struct {
	Cache client.Reader
}

// Workloads implements policy.WorkloadReader. A cache error reads as no
// workloads there: the checks only warn.
func (c CachedWorkloads) Workloads(namespaces []string, all bool) []policy.Workload {
	ctx := context.Background()
	var out []policy.Workload
	list := func(opts ...client.ListOption) {
		var ds appsv1.DeploymentList
		if c.Cache.List(ctx, &ds, opts...) == nil {
			for i := range ds.Items {
				out = append(out, WorkloadOf("Deployment", &ds.Items[i].ObjectMeta, &ds.Items[i].Spec.Template))
			}
		}
		var ss appsv1.StatefulSetList
		if c.Cache.List(ctx, &ss, opts...) == nil {
			for i := range ss.Items {
				out = append(out, WorkloadOf("StatefulSet", &ss.Items[i].ObjectMeta, &ss.Items[i].Spec.Template))
			}
		}
		var dss appsv1.DaemonSetList
		if c.Cache.List(ctx, &dss, opts...) == nil {
			for i := range dss.Items {
				out = append(out, WorkloadOf("DaemonSet", &dss.Items[i].ObjectMeta, &dss.Items[i].Spec.Template))
			}
		}
		var js batchv1.JobList
		if c.Cache.List(ctx, &js, opts...) == nil {
			for i := range js.Items {
				out = append(out, WorkloadOf("Job", &js.Items[i].ObjectMeta, &js.Items[i].Spec.Template))
			}
		}
		var cjs batchv1.CronJobList
		if c.Cache.List(ctx, &cjs, opts...) == nil {
			for i := range cjs.Items {
				out = append(out, WorkloadOf("CronJob", &cjs.Items[i].ObjectMeta, &cjs.Items[i].Spec.JobTemplate.Spec.Template))
			}
		}
	}
	eachNamespace(namespaces, all, list)
	return out
}

// WorkloadOf is what the PodMonitor checks read of a workload.
func WorkloadOf(kind string, meta *metav1.ObjectMeta, tmpl *corev1.PodTemplateSpec) policy.Workload {
	w := policy.Workload{Kind: kind, Namespace: meta.Namespace, Name: meta.Name, PodLabels: tmpl.Labels}
	for _, c := range tmpl.Spec.Containers {
		for _, p := range c.Ports {
			w.Ports = append(w.Ports, policy.Port{Name: p.Name, Number: p.ContainerPort})
		}
	}
	return w
}

// trimTemplate keeps of a pod template only its labels, its scrape
// annotations (prometheus.io/*, which the status reads) and the
// containers' ports, gathered in one container (a Container is a large
// struct; which container declares a port does not matter to the checks).
func trimTemplate(t corev1.PodTemplateSpec) corev1.PodTemplateSpec {
	out := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: t.Labels, Annotations: scrapeAnnotations(t.Annotations)}}
	var ports []corev1.ContainerPort
	for _, c := range t.Spec.Containers {
		for _, p := range c.Ports {
			ports = append(ports, corev1.ContainerPort{Name: p.Name, ContainerPort: p.ContainerPort})
		}
	}
	if len(ports) > 0 {
		out.Spec.Containers = []corev1.Container{{Name: "ports", Ports: ports}}
	}
	return out
}

// trimWorkload keeps of a built-in pod owner only what the checks and the
// status read (name, namespace, labels, the pod template's labels, scrape
// annotations and ports), so the caches cost little per workload.
func trimWorkload(obj any) (any, error) {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return &appsv1.Deployment{ObjectMeta: trimMeta(o.ObjectMeta), Spec: appsv1.DeploymentSpec{Template: trimTemplate(o.Spec.Template)}}, nil
	case *appsv1.StatefulSet:
		return &appsv1.StatefulSet{ObjectMeta: trimMeta(o.ObjectMeta), Spec: appsv1.StatefulSetSpec{Template: trimTemplate(o.Spec.Template)}}, nil
	case *appsv1.DaemonSet:
		return &appsv1.DaemonSet{ObjectMeta: trimMeta(o.ObjectMeta), Spec: appsv1.DaemonSetSpec{Template: trimTemplate(o.Spec.Template)}}, nil
	case *batchv1.Job:
		return &batchv1.Job{ObjectMeta: trimMeta(o.ObjectMeta), Spec: batchv1.JobSpec{Template: trimTemplate(o.Spec.Template)}}, nil
	case *batchv1.CronJob:
		return &batchv1.CronJob{ObjectMeta: trimMeta(o.ObjectMeta), Spec: batchv1.CronJobSpec{JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: trimTemplate(o.Spec.JobTemplate.Spec.Template)}}}}, nil
	}
	return obj, nil
}

// scrapeAnnotations keeps the prometheus.io/* annotations, the only ones
// read (nil when there are none).
func scrapeAnnotations(a map[string]string) map[string]string {
	var out map[string]string
	for k, v := range a {
		if strings.HasPrefix(k, "prometheus.io/") {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}

// EnrollObjectOf is what enrollment reads of a stored pod owner whose
// template is at spec.template (the status judges it as a CREATE).
func EnrollObjectOf(kind string, meta *metav1.ObjectMeta, tmpl *corev1.PodTemplateSpec) policy.Object {
	w := WorkloadOf(kind, meta, tmpl)
	return policy.Object{Kind: kind, Namespace: meta.Namespace, Name: meta.Name, Labels: meta.Labels,
		PodTemplatePath: "spec.template", HasPodTemplate: true, PodTemplateLabels: tmpl.Labels, PodTemplateAnnotations: tmpl.Annotations, Ports: w.Ports}
}

// StatusWorkloads lists the Deployments, StatefulSets and DaemonSets the
// status reports on, from the cache, with their UIDs.
func StatusWorkloads(ctx context.Context, c client.Reader, opts ...client.ListOption) ([]policy.Object, []types.UID, error) {
	var objs []policy.Object
	var uids []types.UID
	add := func(kind string, meta *metav1.ObjectMeta, tmpl *corev1.PodTemplateSpec) {
		objs, uids = append(objs, EnrollObjectOf(kind, meta, tmpl)), append(uids, meta.UID)
	}
	var ds appsv1.DeploymentList
	if err := c.List(ctx, &ds, opts...); err != nil {
		return nil, nil, fmt.Errorf("list Deployments: %w", err)
	}
	for i := range ds.Items {
		add("Deployment", &ds.Items[i].ObjectMeta, &ds.Items[i].Spec.Template)
	}
	var ss appsv1.StatefulSetList
	if err := c.List(ctx, &ss, opts...); err != nil {
		return nil, nil, fmt.Errorf("list StatefulSets: %w", err)
	}
	for i := range ss.Items {
		add("StatefulSet", &ss.Items[i].ObjectMeta, &ss.Items[i].Spec.Template)
	}
	var dss appsv1.DaemonSetList
	if err := c.List(ctx, &dss, opts...); err != nil {
		return nil, nil, fmt.Errorf("list DaemonSets: %w", err)
	}
	for i := range dss.Items {
		add("DaemonSet", &dss.Items[i].ObjectMeta, &dss.Items[i].Spec.Template)
	}
	return objs, uids, nil
}
