// Package manifests checks a rendered promenroll install (kustomize's
// `kubectl kustomize deploy/<overlay>` or the Helm chart's render) against
// the safety properties the product promises. One checker serves both, so
// the chart and kustomize cannot drift apart on what keeps a cluster safe.
package manifests

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
	"strings"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/promenroll/promenroll/policy"
)

// Install is a rendered install, its documents grouped by kind.
type Install struct {
	Source string
	ByKind map[string][][]byte
}

// Parse splits a multi-document YAML render.
func Parse(source string, data []byte) (*Install, error) {
	in := &Install{Source: source, ByKind: map[string][][]byte{}}
	for i, doc := range bytes.Split(append([]byte("\n"), data...), []byte("\n---")) {
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		var meta struct{ Kind string }
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", source, i, err)
		}
		if meta.Kind == "" {
			return nil, fmt.Errorf("%s: document %d has no kind", source, i)
		}
		in.ByKind[meta.Kind] = append(in.ByKind[meta.Kind], doc)
	}
	return in, nil
}

func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(l); len(t) > 0 && t[0] != '#' {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

// One decodes the only object of kind, strictly.
func One[T any](in *Install, kind string) (*T, error) {
	if len(in.ByKind[kind]) != 1 {
		return nil, fmt.Errorf("%s: %d %s objects, want 1", in.Source, len(in.ByKind[kind]), kind)
	}
	var v T
	if err := yaml.UnmarshalStrict(in.ByKind[kind][0], &v); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", in.Source, kind, err)
	}
	return &v, nil
}

// All decodes every object of kind, strictly.
func All[T any](in *Install, kind string) ([]T, error) {
	var out []T
	for _, doc := range in.ByKind[kind] {
		var v T
		if err := yaml.UnmarshalStrict(doc, &v); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", in.Source, kind, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// Expect describes the install being checked.
type Expect struct {
	// Namespace promenroll is installed in (always excluded).
	Namespace string
	// TLSMode: selfManaged, certManager or existingSecret.
	TLSMode string
	// Name of the workload objects, Service and webhook configurations.
	Name string
	// SecretNames: the install opted in to the AlertmanagerConfig gate's
	// Secret warnings (--watch-secrets), so list and watch on every Secret
	// are expected, get still not.
	SecretNames bool
	// NativeEnrollment: the API server enrolls (native admission
	// policies), so the mutating configuration has no enroll webhook.
	NativeEnrollment bool
}

// checkNative: the native policies fail open like the enrollment webhook,
// exclude what it excludes, honour the opt-out, are each bound, and
// together match every kind it enrolls.
func checkNative(in *Install, excluded []string) []error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{in.Source}, args...)...))
	}
	mps, err := All[admissionregistrationv1.MutatingAdmissionPolicy](in, "MutatingAdmissionPolicy")
	if err != nil {
		return []error{err}
	}
	bindings, err := All[admissionregistrationv1.MutatingAdmissionPolicyBinding](in, "MutatingAdmissionPolicyBinding")
	if err != nil {
		return []error{err}
	}
	bound := map[string]bool{}
	for _, b := range bindings {
		bound[b.Spec.PolicyName] = true
	}
	var resources []string
	for _, mp := range mps {
		if fp := mp.Spec.FailurePolicy; fp == nil || *fp != admissionregistrationv1.Ignore {
			add("MutatingAdmissionPolicy %s: failurePolicy %v, want Ignore (enrollment fails open)", mp.Name, deref(fp))
		}
		if !bound[mp.Name] {
			add("MutatingAdmissionPolicy %s: no binding", mp.Name)
		}
		mc := mp.Spec.MatchConstraints
		if mc == nil || mc.NamespaceSelector == nil || mc.ObjectSelector == nil {
			add("MutatingAdmissionPolicy %s: no namespace and object selectors", mp.Name)
			continue
		}
		for _, ns := range excluded {
			if !slices.Contains(NotInValues(mc.NamespaceSelector.MatchExpressions, "kubernetes.io/metadata.name"), ns) {
				add("MutatingAdmissionPolicy %s: namespaceSelector does not exclude namespace %s", mp.Name, ns)
			}
		}
		if !slices.Contains(NotInValues(mc.ObjectSelector.MatchExpressions, policy.OptOutLabel), "false") {
			add("MutatingAdmissionPolicy %s: objectSelector does not honour the opt-out label %s=false", mp.Name, policy.OptOutLabel)
		}
		for _, r := range mc.ResourceRules {
			resources = append(resources, r.Resources...)
		}
	}
	for _, r := range []string{"deployments", "statefulsets", "daemonsets", "jobs", "cronjobs", "services"} {
		if !slices.Contains(resources, r) {
			add("no MutatingAdmissionPolicy enrolls %s", r)
		}
	}
	// The warnings' policies only ever warn: a Deny binding would refuse
	// writes with promenroll nowhere in the path to blame.
	vaps, err := All[admissionregistrationv1.ValidatingAdmissionPolicy](in, "ValidatingAdmissionPolicy")
	if err != nil {
		return append(errs, err)
	}
	vbs, err := All[admissionregistrationv1.ValidatingAdmissionPolicyBinding](in, "ValidatingAdmissionPolicyBinding")
	if err != nil {
		return append(errs, err)
	}
	if len(vbs) != len(vaps) {
		add("%d ValidatingAdmissionPolicies and %d bindings, want each warnings policy bound", len(vaps), len(vbs))
	}
	for _, v := range vaps {
		if fp := v.Spec.FailurePolicy; fp == nil || *fp != admissionregistrationv1.Ignore {
			add("ValidatingAdmissionPolicy %s: failurePolicy %v, want Ignore", v.Name, deref(fp))
		}
	}
	for _, b := range vbs {
		if !slices.Equal(b.Spec.ValidationActions, []admissionregistrationv1.ValidationAction{admissionregistrationv1.Warn}) {
			add("ValidatingAdmissionPolicyBinding %s: validationActions %v, want [Warn] only", b.Name, b.Spec.ValidationActions)
		}
	}
	return errs
}

// Check returns every safety property the install violates.
func Check(in *Install, want Expect) []error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{in.Source}, args...)...))
	}
	excluded := []string{"kube-system", "kube-public", "kube-node-lease", want.Namespace}

	mut, err := One[admissionregistrationv1.MutatingWebhookConfiguration](in, "MutatingWebhookConfiguration")
	if err != nil {
		return []error{err}
	}
	val, err := One[admissionregistrationv1.ValidatingWebhookConfiguration](in, "ValidatingWebhookConfiguration")
	if err != nil {
		return []error{err}
	}
	hook := func(name string, fp *admissionregistrationv1.FailurePolicyType, wantFP admissionregistrationv1.FailurePolicyType,
		timeout *int32, se *admissionregistrationv1.SideEffectClass, nsSel *metav1.LabelSelector, cc admissionregistrationv1.WebhookClientConfig, wantPath string) {
		if fp == nil || *fp != wantFP {
			add("webhook %s: failurePolicy %v, want %s", name, deref(fp), wantFP)
		}
		if timeout == nil || *timeout > 5 || *timeout < 1 {
			add("webhook %s: timeoutSeconds %v, want 1..5 (the API server waits this long on every write)", name, deref(timeout))
		}
		if se == nil || *se != admissionregistrationv1.SideEffectClassNone {
			add("webhook %s: sideEffects %v, want None (required for server-side dry-run)", name, deref(se))
		}
		var notIn []string
		if nsSel != nil {
			notIn = NotInValues(nsSel.MatchExpressions, "kubernetes.io/metadata.name")
		}
		for _, ns := range excluded {
			if !slices.Contains(notIn, ns) {
				add("webhook %s: namespaceSelector does not exclude namespace %s", name, ns)
			}
		}
		if cc.Service == nil || cc.Service.Path == nil || *cc.Service.Path != wantPath || cc.Service.Name != want.Name || cc.Service.Namespace != want.Namespace {
			add("webhook %s: clientConfig does not call Service %s/%s at %s: %+v", name, want.Namespace, want.Name, wantPath, cc.Service)
		}
		switch want.TLSMode {
		case "existingSecret":
			if len(cc.CABundle) == 0 {
				add("webhook %s: existingSecret needs a caBundle", name)
			}
		default:
			if len(cc.CABundle) != 0 {
				add("webhook %s: a rendered caBundle (%s fills it in the cluster; a rendered one makes GitOps tools see a diff)", name, want.TLSMode)
			}
		}
	}
	for _, w := range mut.Webhooks {
		hook(w.Name, w.FailurePolicy, admissionregistrationv1.Ignore, w.TimeoutSeconds, w.SideEffects, w.NamespaceSelector, w.ClientConfig, "/mutate")
		if w.ReinvocationPolicy == nil || *w.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy {
			add("webhook %s: reinvocationPolicy %v, want IfNeeded", w.Name, deref(w.ReinvocationPolicy))
		}
		if w.ObjectSelector == nil || !slices.Contains(NotInValues(w.ObjectSelector.MatchExpressions, policy.OptOutLabel), "false") {
			add("webhook %s: objectSelector does not honour the opt-out label %s=false", w.Name, policy.OptOutLabel)
		}
	}
	for _, w := range mut.Webhooks {
		var resources []string
		for _, r := range w.Rules {
			resources = append(resources, r.Resources...)
		}
		want := map[string][]string{
			"enroll.promenroll.io":   {"deployments", "statefulsets", "daemonsets", "jobs", "cronjobs", "services"},
			"monitors.promenroll.io": {"servicemonitors", "podmonitors", "prometheusrules", "probes", "scrapeconfigs", "alertmanagerconfigs"},
		}[w.Name]
		if !slices.Equal(resources, want) {
			add("mutating webhook %s: resources %v, want %v", w.Name, resources, want)
		}
	}
	if want.NativeEnrollment {
		errs = append(errs, checkNative(in, excluded)...)
	}
	switch {
	case want.NativeEnrollment && len(mut.Webhooks) != 1:
		add("%d mutating webhooks, want 1 (monitors: native policies enroll)", len(mut.Webhooks))
	case !want.NativeEnrollment && len(mut.Webhooks) != 2:
		add("%d mutating webhooks, want 2 (enroll, monitors)", len(mut.Webhooks))
	}
	if len(val.Webhooks) != 3 {
		add("%d validating webhooks, want 3 (rules, monitors, alertmanagerconfigs)", len(val.Webhooks))
	}
	for _, w := range val.Webhooks {
		var resources []string
		for _, r := range w.Rules {
			resources = append(resources, r.Resources...)
		}
		switch w.Name {
		case "rules.promenroll.io":
			hook(w.Name, w.FailurePolicy, admissionregistrationv1.Fail, w.TimeoutSeconds, w.SideEffects, w.NamespaceSelector, w.ClientConfig, "/validate")
			if !slices.Equal(resources, []string{"prometheusrules"}) {
				add("webhook %s fails closed for more than PrometheusRules: %v", w.Name, resources)
			}
		case "monitors.promenroll.io":
			hook(w.Name, w.FailurePolicy, admissionregistrationv1.Ignore, w.TimeoutSeconds, w.SideEffects, w.NamespaceSelector, w.ClientConfig, "/validate")
			if !slices.Equal(resources, []string{"servicemonitors", "podmonitors", "probes", "scrapeconfigs"}) {
				add("webhook %s: resources %v", w.Name, resources)
			}
		case "alertmanagerconfigs.promenroll.io":
			hook(w.Name, w.FailurePolicy, admissionregistrationv1.Fail, w.TimeoutSeconds, w.SideEffects, w.NamespaceSelector, w.ClientConfig, "/validate")
			if !slices.Equal(resources, []string{"alertmanagerconfigs"}) {
				add("webhook %s: resources %v", w.Name, resources)
			}
		default:
			add("unexpected validating webhook %s", w.Name)
		}
	}
	if want.TLSMode == "certManager" {
		for _, a := range []map[string]string{mut.Annotations, val.Annotations} {
			if a["cert-manager.io/inject-ca-from"] != want.Namespace+"/"+want.Name {
				add("certManager: cert-manager.io/inject-ca-from = %q, want %s/%s", a["cert-manager.io/inject-ca-from"], want.Namespace, want.Name)
			}
		}
	}

	errs = append(errs, checkDeployment(in, want)...)
	errs = append(errs, checkRBAC(in, want)...)
	return errs
}

// statusEvents is the status' one unnamed cluster-wide write: creating and
// patching events.k8s.io Events, nothing else.
func statusEvents(r rbacv1.PolicyRule) bool {
	return slices.Equal(r.APIGroups, []string{"events.k8s.io"}) && slices.Equal(r.Resources, []string{"events"}) &&
		!slices.ContainsFunc(r.Verbs, func(v string) bool { return v != "create" && v != "patch" })
}

func checkDeployment(in *Install, want Expect) []error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{in.Source}, args...)...))
	}
	d, err := One[appsv1.Deployment](in, "Deployment")
	if err != nil {
		return []error{err}
	}
	if d.Namespace != want.Namespace {
		add("Deployment in namespace %q, want %q", d.Namespace, want.Namespace)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		add("replicas %v, want 2 or more", deref(d.Spec.Replicas))
	}
	if len(d.Spec.Template.Spec.TopologySpreadConstraints) == 0 && d.Spec.Template.Spec.Affinity == nil {
		add("replicas are not spread (no topologySpreadConstraints nor affinity)")
	}
	pdb, err := One[policyv1.PodDisruptionBudget](in, "PodDisruptionBudget")
	if err != nil {
		errs = append(errs, err)
	} else if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() < 1 {
		add("PDB minAvailable %v, want >= 1", pdb.Spec.MinAvailable)
	}
	pod := d.Spec.Template.Spec
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot ||
		pod.SecurityContext.SeccompProfile == nil || pod.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		add("pod securityContext is not restricted: %+v", pod.SecurityContext)
	}
	if len(pod.Containers) != 1 {
		add("%d containers, want 1", len(pod.Containers))
		return errs
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		add("container securityContext is not restricted: %+v", sc)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" ||
		c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		add("probes do not use /readyz and /healthz")
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		if m.SubPath != "" {
			add("mount %s uses subPath: it would never see ConfigMap or Secret updates", m.Name)
		}
		mounts[m.Name] = m
	}
	args := strings.Join(c.Args, " ")
	if !strings.Contains(args, "--policy="+mounts["policy"].MountPath+"/policy.yaml") {
		add("args %q do not read the policy from its mount %+v", args, mounts["policy"])
	}
	if !strings.Contains(args, "--tls-mode="+want.TLSMode) {
		add("args %q do not select --tls-mode=%s", args, want.TLSMode)
	}
	if strings.Contains(args, "--watch-secrets") != want.SecretNames {
		add("args %q: --watch-secrets is %v, want %v (only with the opt-in Secret warnings)", args, !want.SecretNames, want.SecretNames)
	}
	secretVolume := ""
	for _, v := range pod.Volumes {
		if v.Secret != nil {
			secretVolume = v.Secret.SecretName
		}
	}
	switch want.TLSMode {
	case "selfManaged":
		if secretVolume != "" || strings.Contains(args, "--cert-dir") {
			add("selfManaged mounts Secret %q / passes --cert-dir: the certificate is read from the API", secretVolume)
		}
		secrets, err := All[corev1.Secret](in, "Secret")
		if err != nil {
			errs = append(errs, err)
		}
		found := false
		for _, s := range secrets {
			if strings.Contains(args, "--tls-secret="+s.Name) || (s.Name == want.Name+"-tls" && !strings.Contains(args, "--tls-secret=")) {
				found = true
				if len(s.Data) > 0 || len(s.StringData) > 0 {
					add("the self-managed Secret %s is rendered with data: promenroll fills it", s.Name)
				}
			}
		}
		if !found {
			add("selfManaged: the Secret promenroll fills is not shipped (RBAC cannot grant create by name)")
		}
		if len(in.ByKind["Lease"]) != 1 {
			add("selfManaged: %d leader election Leases shipped, want 1 (uninstall must remove it)", len(in.ByKind["Lease"]))
		}
	default:
		if secretVolume == "" || !strings.Contains(args, "--cert-dir="+mounts["tls"].MountPath) {
			add("%s: args %q do not read --cert-dir from the mounted Secret (%q)", want.TLSMode, args, secretVolume)
		}
	}
	if want.TLSMode == "certManager" {
		// One Certificate writes the mounted Secret; a CA Certificate, if
		// shipped, signs it, so a serving renewal leaves the caBundle as
		// it is.
		serving, cas := 0, 0
		for _, doc := range in.ByKind["Certificate"] {
			var cert struct {
				Spec struct {
					SecretName string `json:"secretName"`
					IsCA       bool   `json:"isCA"`
				} `json:"spec"`
			}
			if err := yaml.Unmarshal(doc, &cert); err != nil {
				add("certManager: a Certificate does not parse: %v", err)
				continue
			}
			switch {
			case cert.Spec.SecretName == secretVolume && !cert.Spec.IsCA:
				serving++
			case cert.Spec.IsCA:
				cas++
			default:
				add("certManager: Certificate for Secret %q is neither the serving certificate nor a CA", cert.Spec.SecretName)
			}
		}
		if serving != 1 || cas > 1 {
			add("certManager: %d serving Certificates and %d CA Certificates, want 1 and at most 1", serving, cas)
		}
	}
	// GOMEMLIMIT follows the container's memory limit, so the GC tightens
	// before the kernel OOM-kills.
	memLimit := false
	for _, e := range c.Env {
		if e.Name == "GOMEMLIMIT" && e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil && e.ValueFrom.ResourceFieldRef.Resource == "limits.memory" &&
			(e.ValueFrom.ResourceFieldRef.Divisor.IsZero() || e.ValueFrom.ResourceFieldRef.Divisor.Value() == 1) {
			memLimit = true
		}
	}
	if !memLimit || c.Resources.Limits.Memory().IsZero() {
		add("GOMEMLIMIT must come from limits.memory in bytes, with a memory limit set: env %+v, limits %v", c.Env, c.Resources.Limits)
	}
	// promenroll's own ServiceMonitor and PrometheusRule live in its
	// namespace, which every webhook excludes: installing them never waits
	// for promenroll itself.
	for _, kind := range []string{"ServiceMonitor", "PrometheusRule", "PodMonitor"} {
		for _, doc := range in.ByKind[kind] {
			var m metav1.PartialObjectMetadata
			if err := yaml.Unmarshal(doc, &m); err != nil {
				errs = append(errs, err)
				continue
			}
			if m.Namespace != want.Namespace {
				add("%s %s/%s is outside promenroll's excluded namespace: its install would go through promenroll's own webhooks", kind, m.Namespace, m.Name)
			}
		}
	}
	return errs
}

// checkRBAC: cluster-wide access is read-only; every write names the exact
// objects it may touch (resourceNames), but for creating a Lease or an
// Event in promenroll's own namespace, and the status' Events
// (events.k8s.io) on the objects it reports on, which no name can scope.
func checkRBAC(in *Install, want Expect) []error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{in.Source}, args...)...))
	}
	clusterRoles, err := All[rbacv1.ClusterRole](in, "ClusterRole")
	if err != nil {
		return []error{err}
	}
	roles, err := All[rbacv1.Role](in, "Role")
	if err != nil {
		return []error{err}
	}
	check := func(where string, r rbacv1.PolicyRule, namespaced bool) {
		if statusEvents(r) {
			return
		}
		for _, v := range r.Verbs {
			switch v {
			case "get", "list", "watch":
				if slices.Contains(r.Resources, "secrets") && len(r.ResourceNames) == 0 &&
					!(want.SecretNames && v != "get" && slices.Equal(r.Resources, []string{"secrets"}) && !namespaced) {
					add("%s reads every Secret", where)
				}
				continue
			case "update", "patch", "delete":
				if len(r.ResourceNames) == 0 {
					add("%s grants %s on %v without resourceNames", where, v, r.Resources)
				}
				for _, res := range r.Resources {
					if v == "delete" && res != "reports" || !slices.Contains([]string{"secrets", "leases", "mutatingwebhookconfigurations", "validatingwebhookconfigurations", "events", "reports"}, res) {
						add("%s grants %s on %s", where, v, res)
					}
				}
			case "create":
				if !namespaced || slices.ContainsFunc(r.Resources, func(res string) bool { return res != "leases" && res != "events" }) {
					add("%s grants create on %v", where, r.Resources)
				}
			default:
				add("%s grants %s on %v", where, v, r.Resources)
			}
		}
		if slices.Contains(r.Verbs, "*") || slices.Contains(r.Resources, "*") || slices.Contains(r.APIGroups, "*") {
			add("%s uses a wildcard: %+v", where, r)
		}
	}
	for _, cr := range clusterRoles {
		for _, r := range cr.Rules {
			check("ClusterRole "+cr.Name, r, false)
			if slices.Contains(r.Resources, "mutatingwebhookconfigurations") && !slices.Equal(r.ResourceNames, []string{want.Name}) {
				add("ClusterRole %s: webhook configurations not limited to %s: %v", cr.Name, want.Name, r.ResourceNames)
			}
		}
	}
	for _, role := range roles {
		if role.Namespace != want.Namespace {
			add("Role %s/%s outside promenroll's namespace", role.Namespace, role.Name)
		}
		for _, r := range role.Rules {
			check("Role "+role.Name, r, true)
		}
	}
	if want.TLSMode != "selfManaged" {
		for _, cr := range clusterRoles {
			for _, r := range cr.Rules {
				if !statusEvents(r) && !slices.Equal(r.Resources, []string{"reports"}) && slices.ContainsFunc(r.Verbs, func(v string) bool { return v != "get" && v != "list" && v != "watch" }) {
					add("%s: ClusterRole %s grants writes promenroll does not need without selfManaged TLS", want.TLSMode, cr.Name)
				}
			}
		}
	}
	return errs
}

// NotInValues returns the values of the NotIn expressions on key.
func NotInValues(exprs []metav1.LabelSelectorRequirement, key string) []string {
	var out []string
	for _, e := range exprs {
		if e.Key == key && e.Operator == metav1.LabelSelectorOpNotIn {
			out = append(out, e.Values...)
		}
	}
	return out
}

func deref[T any](p *T) any {
	if p == nil {
		return "unset"
	}
	return *p
}

// Policy loads the policy the install's ConfigMap ships.
func Policy(in *Install, namespace string) (*policy.Policy, error) {
	cms, err := All[corev1.ConfigMap](in, "ConfigMap")
	if err != nil {
		return nil, err
	}
	var found []corev1.ConfigMap
	for _, cm := range cms {
		if _, ok := cm.Data["policy.yaml"]; ok {
			found = append(found, cm)
		}
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("%s: %d ConfigMaps with a policy.yaml, want 1", in.Source, len(found))
	}
	return policy.Parse(in.Source+": ConfigMap "+found[0].Name+" policy.yaml", []byte(found[0].Data["policy.yaml"]), policy.Options{OwnNamespace: namespace})
}

// OwnRule is the PrometheusRule the install ships for promenroll itself.
func OwnRule(in *Install) (*monv1.PrometheusRule, int, error) {
	pr, err := One[monv1.PrometheusRule](in, "PrometheusRule")
	if err != nil {
		return nil, 0, err
	}
	raw, err := yaml.YAMLToJSON(in.ByKind["PrometheusRule"][0])
	return pr, len(raw), err
}

// Safety projects the fields that decide how an install behaves in a
// cluster (webhook matching and failure handling, who promenroll is, what
// it may do, how it runs), so two installs can be compared: names and
// labels that only decorate are left out.
func Safety(in *Install) (string, error) {
	mut, err := One[admissionregistrationv1.MutatingWebhookConfiguration](in, "MutatingWebhookConfiguration")
	if err != nil {
		return "", err
	}
	val, err := One[admissionregistrationv1.ValidatingWebhookConfiguration](in, "ValidatingWebhookConfiguration")
	if err != nil {
		return "", err
	}
	d, err := One[appsv1.Deployment](in, "Deployment")
	if err != nil {
		return "", err
	}
	for i := range mut.Webhooks {
		mut.Webhooks[i].ClientConfig.CABundle = nil
	}
	for i := range val.Webhooks {
		val.Webhooks[i].ClientConfig.CABundle = nil
	}
	var rules []string
	for _, kind := range []string{"ClusterRole", "Role"} {
		docs, err := All[rbacv1.ClusterRole](in, kind)
		if err != nil {
			return "", err
		}
		for _, r := range docs {
			for _, rule := range r.Rules {
				b, _ := yaml.Marshal(rule)
				rules = append(rules, kind+": "+string(b))
			}
		}
	}
	sort.Strings(rules)
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	view := map[string]any{
		"mutating":                 mut.Webhooks,
		"validating":               val.Webhooks,
		"rbac":                     rules,
		"replicas":                 d.Spec.Replicas,
		"strategy":                 d.Spec.Strategy,
		"podSecurityContext":       pod.SecurityContext,
		"containerSecurityContext": c.SecurityContext,
		"args":                     c.Args,
		"env":                      c.Env,
		"resources":                c.Resources,
		"probes":                   []any{c.ReadinessProbe, c.LivenessProbe},
		"ports":                    c.Ports,
		"priorityClassName":        pod.PriorityClassName,
		"terminationGracePeriod":   pod.TerminationGracePeriodSeconds,
		"serviceAccountToken":      pod.AutomountServiceAccountToken,
	}
	b, err := yaml.Marshal(view)
	if err != nil {
		return "", err
	}
	return string(b), nil
}
