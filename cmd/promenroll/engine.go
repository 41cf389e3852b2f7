package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	yamlv3 "go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	sigsjson "sigs.k8s.io/json"

	"github.com/promenroll/promenroll/internal/clusterstate"
	"github.com/promenroll/promenroll/policy"
)

// object is one Kubernetes object check or audit judges: a document or an
// item of a List in check, a stored object in audit. Both engines hold it
// as JSON and decide on it only through the policy's two tables, as serve
// does on an admission request's object.
type object struct {
	doc  *document    // check only: the document it came from
	node *yamlv3.Node // check only: its YAML, for -o yaml
	js   []byte
	// stored is js as the API server would store it: the mutation's patch
	// applied (js when nothing is added or the kind is not mutated).
	stored   []byte
	gvk      schema.GroupVersionKind
	report   ObjectReport
	mutation *policy.Mutation // nil: the kind has no mutation entry
}

// engine judges objects as a CREATE through the webhooks would: the
// mutation table, its patch applied, then the gate table on the stored
// object, with the namespaces and cluster state it was given.
type engine struct {
	p          *policy.Policy
	cs         policy.ClusterState
	namespaces map[string]policy.Namespace
}

// namespace is what the webhook would read of a namespace: the one listed
// or in the input, or else what the API server gives every namespace.
func (e *engine) namespace(name string) policy.Namespace {
	if ns, ok := e.namespaces[name]; ok {
		return ns
	}
	return policy.Namespace{Name: name, Labels: map[string]string{"kubernetes.io/metadata.name": name}}
}

// mutate runs o through the mutation table as a CREATE and sets o.stored.
// The labels it reports are read back from the patch's JSON, the bytes
// /mutate sends.
func (e *engine) mutate(o *object) []patchOp {
	o.stored = o.js
	gk := o.gvk.GroupKind()
	if !e.p.Mutated(gk) {
		return nil
	}
	r := &o.report
	mu, err := e.p.Mutate(gk, policy.MutationRequest{Operation: policy.Create, Object: o.js,
		Namespace: e.namespace(r.Namespace), Prometheuses: e.cs.Prometheuses})
	if err != nil {
		r.add(Finding{Level: "deny", Code: "mutate", Message: err.Error()}, o)
		r.Denied = true
		return nil
	}
	o.mutation = &mu
	for _, w := range mu.Warnings() {
		r.add(Finding{Level: "warn", Code: "admission-warning", Message: w}, o)
	}
	stored, patch, err := mu.Apply(o.js)
	if err != nil {
		r.add(Finding{Level: "deny", Code: "mutate", Message: fmt.Sprintf("the webhook's patch does not apply: %v", err)}, o)
		r.Denied = true
		return nil
	}
	o.stored = stored
	var ops []patchOp
	if patch != nil {
		if err := json.Unmarshal(patch, &ops); err != nil {
			r.add(Finding{Level: "deny", Code: "mutate", Message: err.Error()}, o)
			r.Denied = true
			return nil
		}
	}
	for _, op := range ops {
		r.Labels = append(r.Labels, labelChanges(op.Path, op.Value)...)
	}
	return ops
}

// patchOp is a patch operation as read back from its JSON.
type patchOp struct {
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// gate runs the stored object through its gate, if its kind has one.
func (e *engine) gate(o *object) *policy.Report {
	gk := o.gvk.GroupKind()
	if !policy.Gated(gk) || o.report.Denied {
		return nil
	}
	r := &o.report
	res, err := e.p.Gate(gk, o.stored, e.namespace(r.Namespace), e.cs)
	if err != nil {
		r.add(Finding{Level: "deny", Code: "decode", Message: err.Error()}, o)
		r.Denied = true
		return nil
	}
	rep := res.Report
	r.Mode = string(rep.Mode)
	if rep.Reason != "" {
		r.NotChecked = rep.Reason
	} else {
		r.Checked, r.CheckedWhat = rep.Checked, res.Noun(gk)
	}
	r.Skipped = append(r.Skipped, rep.Skipped...)
	for _, f := range rep.Findings {
		r.add(Finding{Level: string(f.Level), Code: f.Check, Field: f.Err.Field, Message: f.Err.ErrorBody()}, o)
	}
	if len(rep.Denials()) > 0 && rep.Mode == policy.ModeEnforce {
		r.Denied = true
	}
	return &rep
}

// clusterState is the cluster state found among objects (check: the
// input as stored after the webhooks; audit: the stored objects):
// namespaces, Services, workloads and Prometheus objects, each decoded as
// serve's caches decode them.
type clusterState struct {
	// p says which kinds own pods, and where their templates are; owners
	// holds the built-in ones' paths, filled on first use.
	p            *policy.Policy
	owners       map[schema.GroupKind][]string
	namespaces   map[string]policy.Namespace
	services     staticServices
	workloads    staticWorkloads
	prometheuses []monv1.Prometheus
	agents       []monv1alpha1.PrometheusAgent
	ams          []monv1.Alertmanager
	// secrets are the input's Secrets by namespace/name (metadata only).
	secrets staticSecrets
}

// podOwner is the path of gk's pod template, nil if gk owns no pods or is
// a declared kind: serve's caches watch only the built-in pod owners, and
// check and audit read the same cluster state.
func (st *clusterState) podOwner(gk schema.GroupKind) []string {
	if st.owners == nil {
		st.owners = map[schema.GroupKind][]string{}
		for _, b := range policy.BuiltinMutatedKinds() {
			if path, ok := st.p.PodOwner(b); ok {
				st.owners[b] = strings.Split(path, ".")
			}
		}
	}
	return st.owners[gk]
}

// add records o if it is cluster state; only the kinds kept are decoded.
func (st *clusterState) add(gvk schema.GroupVersionKind, doc []byte) {
	decode := func(v any) bool { return sigsjson.UnmarshalCaseSensitivePreserveInts(doc, v) == nil }
	switch {
	case gvk.Group == "" && gvk.Kind == "Namespace":
		var ns corev1.Namespace
		if decode(&ns) {
			st.namespaces[ns.Name] = policy.Namespace{Name: ns.Name, Labels: ns.Labels, Annotations: ns.Annotations}
		}
	case st.podOwner(gvk.GroupKind()) != nil:
		var u unstructured.Unstructured
		var tmpl corev1.PodTemplateSpec
		if decode(&u.Object) {
			m, _, _ := unstructured.NestedMap(u.Object, st.podOwner(gvk.GroupKind())...)
			if runtime.DefaultUnstructuredConverter.FromUnstructured(m, &tmpl) == nil {
				meta := metav1.ObjectMeta{Name: u.GetName(), Namespace: u.GetNamespace()}
				st.workloads = append(st.workloads, clusterstate.WorkloadOf(gvk.Kind, &meta, &tmpl))
			}
		}
	case gvk.Group == "" && gvk.Kind == "Secret":
		var m metav1.PartialObjectMetadata
		if decode(&m) {
			if st.secrets == nil {
				st.secrets = staticSecrets{}
			}
			st.secrets[m.Namespace+"/"+m.Name] = true
		}
	case gvk.Group == "" && gvk.Kind == "Service":
		var s corev1.Service
		if decode(&s) {
			st.services = append(st.services, clusterstate.ServiceOf(&s))
		}
	case gvk.Group == monv1.SchemeGroupVersion.Group && gvk.Kind == monv1.PrometheusesKind:
		var pr monv1.Prometheus
		if decode(&pr) {
			defaultScrapeInterval(&pr.Spec.ScrapeInterval)
			st.prometheuses = append(st.prometheuses, pr)
		}
	case gvk.Group == monv1.SchemeGroupVersion.Group && gvk.Kind == monv1alpha1.PrometheusAgentsKind:
		var ag monv1alpha1.PrometheusAgent
		if decode(&ag) {
			defaultScrapeInterval(&ag.Spec.ScrapeInterval)
			st.agents = append(st.agents, ag)
		}
	case gvk.Group == monv1.SchemeGroupVersion.Group && gvk.Kind == monv1.AlertmanagersKind:
		var am monv1.Alertmanager
		if decode(&am) {
			st.ams = append(st.ams, am)
		}
	}
}

// defaultScrapeInterval applies the CRD's default (30s), which a manifest
// in check's input has not been through.
func defaultScrapeInterval(d *monv1.Duration) {
	if *d == "" {
		*d = "30s"
	}
}

// state is the cluster state for the gates. Services and workloads are
// known only when some were found (none at all: the input says nothing of
// them, and their checks are skipped); scope limits them to namespaces
// (audit -n).
func (st *clusterState) state(scope []string) policy.ClusterState {
	loaders := append(clusterstate.PrometheusSelectorsOf(st.prometheuses), clusterstate.AgentSelectorsOf(st.agents)...)
	cs := policy.ClusterState{Prometheuses: append(loaders, clusterstate.AlertmanagerSelectorsOf(st.ams)...), Scope: scope}
	if len(st.services) > 0 || scope != nil {
		cs.Services = st.services
	}
	if len(st.workloads) > 0 || scope != nil {
		cs.Workloads = st.workloads
	}
	// Secrets only when the input has some: audit lists none (their data
	// is not promenroll's to read), and a manifest set without them says
	// nothing of the cluster's.
	if st.secrets != nil {
		cs.Secrets = st.secrets
	}
	return cs
}

// staticWorkloads serves the workloads found.
type staticWorkloads []policy.Workload

func (s staticWorkloads) Workloads(namespaces []string, all bool) []policy.Workload {
	return inNamespaces(s, func(w policy.Workload) string { return w.Namespace }, namespaces, all)
}

// staticServices serves the Services found.
// staticSecrets are check's input's Secrets, by namespace/name.
type staticSecrets map[string]bool

// SecretExists implements policy.SecretReader.
func (s staticSecrets) SecretExists(namespace, name string) bool { return s[namespace+"/"+name] }

type staticServices []policy.Service

func (s staticServices) Services(namespaces []string, all bool) []policy.Service {
	return inNamespaces(s, func(svc policy.Service) string { return svc.Namespace }, namespaces, all)
}

// inNamespaces keeps the items in the given namespaces (all: every item).
func inNamespaces[T any](items []T, namespaceOf func(T) string, namespaces []string, all bool) []T {
	var out []T
	for _, it := range items {
		if all || slices.Contains(namespaces, namespaceOf(it)) {
			out = append(out, it)
		}
	}
	return out
}

// gvkOf is the version a kind of the two tables is listed and reported
// in: the declared one for the policy's declared kinds.
func gvkOf(p *policy.Policy, gk schema.GroupKind) schema.GroupVersionKind {
	for _, d := range p.DeclaredKinds() {
		if d.GroupKind() == gk {
			return d.GroupVersionKind
		}
	}
	return schema.FromAPIVersionAndKind(apiVersionOf(gk), gk.Kind)
}

// apiVersionOf is the served version a built-in kind of the two tables is
// listed and reported in.
func apiVersionOf(gk schema.GroupKind) string {
	switch {
	case gk.Group == "":
		return "v1"
	case gk.Group == "apps":
		return "apps/v1"
	case gk.Kind == "ScrapeConfig":
		return "monitoring.coreos.com/v1alpha1"
	case gk.Kind == "AlertmanagerConfig":
		// The CRD's storage version, which every operator release serves
		// without a conversion webhook (v1beta1 needs one).
		return "monitoring.coreos.com/v1alpha1"
	}
	return strings.TrimSuffix(gk.Group+"/v1", "/")
}
