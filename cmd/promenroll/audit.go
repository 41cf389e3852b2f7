package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	"github.com/spf13/cobra"
	"golang.org/x/term"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/promenroll/promenroll/internal/clusterstate"
	"github.com/promenroll/promenroll/internal/reporter"
	"github.com/promenroll/promenroll/policy"
)

// newAuditCommand: audit scans a live cluster, read-only, with the
// webhook's engine: which workloads and Services are not enrolled and what
// enrollment would add, which monitors miss the selector labels or are
// loaded by no Prometheus, and which stored PrometheusRules and monitors
// the gates would refuse today. It exits 1 when one would be refused.
func newAuditCommand() *cobra.Command {
	var policyPath, kubeconfig, namespace, output string
	var allNamespaces, withPrometheus bool
	var promURLs []string
	var chunk int64
	c := &cobra.Command{
		Use:   "audit --policy POLICY [-n NAMESPACE | -A]",
		Short: "Scan a live cluster, read-only, with the same engine",
		Long: `audit lists the cluster's workloads, Services, monitors, rules and Prometheus
objects (in pages of --chunk-size, as kubectl does), every field as stored,
and judges each through the same mutation and gate tables as serve judges a
CREATE of it today, against the cluster's state. It changes nothing.

With -n, only that namespace's Services and workloads are read: every check
whose inputs lie there runs, and a monitor that selects in other namespaces
says which check it skipped.

Exit codes: 0 nothing would be refused, 1 a stored PrometheusRule or monitor
would be refused today, 2 usage, policy or API error.`,
		Example: `  promenroll audit --policy policy.yaml -A
  promenroll audit --policy policy.yaml -n shop --kubeconfig ~/.kube/config`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if policyPath == "" {
				return usageError{errors.New("--policy is required (run 'promenroll audit --help')")}
			}
			if allNamespaces && namespace != "" {
				return usageError{errors.New("-A and -n exclude each other")}
			}
			if chunk <= 0 {
				return usageError{errors.New("--chunk-size must be positive")}
			}
			if output != "text" && output != "json" {
				return usageError{fmt.Errorf("--output %q: use text or json", output)}
			}
			p, err := policy.Load(policyPath, policy.Options{})
			if err != nil {
				return err
			}
			cl, err := auditClient(kubeconfig)
			if err != nil {
				return err
			}
			a := &auditor{ctx: c.Context(), c: cl, p: p, out: c.OutOrStdout(), ns: namespace, chunk: chunk,
				res: &Result{APIVersion: ResultAPIVersion, Policy: PolicyInfo{Path: policyPath, Generation: p.Generation, Mode: string(p.Source.Mode),
					Engine: string(p.Engine()), EnrollmentGeneration: p.EnrollmentGeneration}}}
			if output == "json" {
				a.out = io.Discard
			}
			// Progress on stderr, only for a person watching a terminal.
			if f, ok := c.ErrOrStderr().(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				a.progress = f
			}
			err = a.run()
			if withPrometheus && (err == nil || errors.Is(err, errCheckFailed)) {
				if serr := a.status(kubeconfig, promURLs); serr != nil {
					return serr
				}
			}
			if output == "json" {
				a.res.summarize()
				if werr := writeJSON(c.OutOrStdout(), a.res); werr != nil {
					return werr
				}
			}
			return err
		},
	}
	fs := c.Flags()
	fs.StringVar(&policyPath, "policy", "", "policy file (required)")
	fs.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig (default: $KUBECONFIG, then in-cluster)")
	fs.StringVarP(&namespace, "namespace", "n", "", "scan only this namespace")
	fs.BoolVarP(&allNamespaces, "all-namespaces", "A", false, "scan every namespace (the default without -n)")
	fs.Int64Var(&chunk, "chunk-size", 500, "objects per list request (the API server's limit/continue paging)")
	fs.BoolVar(&withPrometheus, "with-prometheus", false, "also ask each Prometheus (through the API server's service proxy) and report what the monitoring status says: targets up or down, monitors without targets, rules failing evaluation")
	fs.StringArrayVar(&promURLs, "prometheus-url", nil, "with --with-prometheus: NAMESPACE/NAME=URL of a Prometheus' API, instead of the service proxy; repeatable")
	fs.StringVarP(&output, "output", "o", "text", "text, or json (check's schema, source \"cluster\")")
	_ = c.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"text", "json"}, cobra.ShellCompDirectiveNoFileComp))
	return c
}

func auditClient(kubeconfig string) (client.Client, error) {
	cfg, err := clusterstate.RESTConfig(kubeconfig, "promenroll-audit")
	if err != nil {
		return nil, fmt.Errorf("kubernetes client config: %w", err)
	}
	scheme, err := clusterstate.Scheme()
	if err != nil {
		return nil, err
	}
	return client.New(cfg, client.Options{Scheme: scheme})
}

type auditor struct {
	ctx   context.Context
	c     client.Client
	p     *policy.Policy
	out   io.Writer
	ns    string
	chunk int64

	notEnrolled, conflicts, unselected, unlabelled, denied, checked int
	requests                                                        int

	progress io.Writer // nil: no progress lines

	// res collects what is printed, for -o json: one report per object.
	res *Result
}

// stateKinds are listed only as cluster state: the Prometheus and
// Alertmanager objects, cluster-wide (one in another namespace may load
// this namespace's monitors, rules and AlertmanagerConfigs).
var stateKinds = []schema.GroupVersionKind{
	monv1.SchemeGroupVersion.WithKind(monv1.PrometheusesKind),
	monv1alpha1.SchemeGroupVersion.WithKind(monv1alpha1.PrometheusAgentsKind),
	monv1.SchemeGroupVersion.WithKind(monv1.AlertmanagersKind),
}

// auditedKinds are the kinds of the mutation and gate tables (the policy's
// declared kinds included) in the version they are listed in, in the order
// audit reports them: pod owners and Services first.
func auditedKinds(p *policy.Policy) []schema.GroupVersionKind {
	gks := p.MutatedKinds()
	for _, gk := range policy.GatedKinds() {
		if !slices.Contains(gks, gk) {
			gks = append(gks, gk)
		}
	}
	slices.SortStableFunc(gks, func(a, b schema.GroupKind) int {
		return cmpBool(a.Group == groupMonitoring, b.Group == groupMonitoring)
	})
	kinds := make([]schema.GroupVersionKind, 0, len(gks))
	for _, gk := range gks {
		kinds = append(kinds, gvkOf(p, gk))
	}
	return kinds
}

const groupMonitoring = "monitoring.coreos.com"

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// run lists every kind the two tables decide on, as stored (JSON, every
// field), and judges each object as serve would judge it as a CREATE
// today, against the cluster's state as serve's caches hold it.
func (a *auditor) run() error {
	st := &clusterState{p: a.p, namespaces: map[string]policy.Namespace{}}
	nsGVK := corev1.SchemeGroupVersion.WithKind("Namespace")
	if err := a.list(nsGVK, "", func(js []byte) { st.add(nsGVK, js) }); err != nil {
		return fmt.Errorf("list namespaces: %w", err)
	}
	var objs []*object
	operatorCRDs := true
	for _, gvk := range auditedKinds(a.p) {
		gk := gvk.GroupKind()
		err := a.list(gvk, a.ns, func(js []byte) {
			o := &object{js: js, gvk: gvk}
			var head struct {
				Metadata metav1.ObjectMeta `json:"metadata"`
			}
			_ = json.Unmarshal(js, &head)
			o.report = ObjectReport{Source: "cluster", APIVersion: gvk.GroupVersion().String(), Kind: gk.Kind, Namespace: head.Metadata.Namespace, Name: head.Metadata.Name}
			objs = append(objs, o)
			st.add(gvk, js)
		})
		switch {
		case meta.IsNoMatchError(err) && gk.Group == groupMonitoring:
			// Probes and ScrapeConfigs have CRDs of their own, absent
			// from some installs; without the operator's, there is no
			// monitor or rule at all.
			if operatorCRDs && (gk.Kind == "ServiceMonitor" || gk.Kind == "PodMonitor" || gk.Kind == "PrometheusRule") {
				operatorCRDs = false
				fmt.Fprintln(a.out, "audit: the Prometheus Operator's CRDs are not installed: no monitors or rules to scan")
			}
		case meta.IsNoMatchError(err) && gk.Group != groupMonitoring:
			// A declared kind whose CRD is not installed: nothing of it
			// to enroll, but the policy names it.
			fmt.Fprintf(a.out, "audit: the policy declares %s, which the API server does not serve: install its CRD or correct kinds[].apiVersion\n", gvk)
		case err != nil:
			return fmt.Errorf("list %s: %w", gk.Kind, err)
		}
	}
	for _, gvk := range stateKinds {
		if err := a.list(gvk, "", func(js []byte) { st.add(gvk, js) }); err != nil && !meta.IsNoMatchError(err) {
			return fmt.Errorf("list %s: %w", gvk.Kind, err)
		}
	}
	var scope []string
	if a.ns != "" {
		scope = []string{a.ns}
	}
	e := &engine{p: a.p, namespaces: st.namespaces, cs: st.state(scope)}
	if operatorCRDs && len(e.cs.Prometheuses) == 0 {
		fmt.Fprintln(a.out, "audit: no Prometheus objects found: which Prometheus loads each monitor and rule is not checked")
	}
	slices.SortStableFunc(objs, func(x, y *object) int {
		if c := cmpBool(x.gvk.Group == groupMonitoring, y.gvk.Group == groupMonitoring); c != 0 {
			return c
		}
		if x.gvk.Group == groupMonitoring {
			return 0 // monitors and rules in the tables' order, each as listed
		}
		return strings.Compare(x.report.Namespace+"/"+x.report.Name+x.report.Kind, y.report.Namespace+"/"+y.report.Name+y.report.Kind)
	})
	enrollable := 0
	for _, o := range objs {
		e.mutate(o)
		rep := e.gate(o)
		if o.gvk.Group != groupMonitoring {
			enrollable++
		}
		a.print(o, rep, e)
	}
	if err := a.native(); err != nil {
		return err
	}
	fmt.Fprintf(a.out, "audit: %d workloads and Services scanned: %d not fully enrolled, %d with conflicting labels; monitors and rules: %d loaded by no Prometheus, %d without the policy's monitors.labels; %d PrometheusRules and monitors checked, %d would be refused (%d list requests of at most %d objects)\n",
		enrollable, a.notEnrolled, a.conflicts, a.unselected, a.unlabelled, a.checked, a.denied, a.requests, a.chunk)
	if a.denied > 0 {
		return errCheckFailed
	}
	return nil
}

// native reports the native enrollment policies installed: with engine
// native, none means nothing enrolls while promenroll is down, and one
// compiled from another policy enrolls by its rules, not the policy's;
// with engine webhook, installed ones enroll beside the webhook. A user
// who may not list admission policies is told the check was skipped.
func (a *auditor) native() error {
	gvk := admissionregistrationv1.SchemeGroupVersion.WithKind("MutatingAdmissionPolicy")
	rep := &NativeReport{Policies: []NativePolicy{}}
	err := a.list(gvk, "", func(js []byte) {
		var m metav1.PartialObjectMetadata
		if json.Unmarshal(js, &m) != nil || m.Labels["app.kubernetes.io/component"] != "native-enrollment" || m.Labels["app.kubernetes.io/managed-by"] != policy.NativeFieldManager {
			return
		}
		g := m.Annotations[policy.EnrollmentGenerationAnnotation]
		rep.Policies = append(rep.Policies, NativePolicy{Name: m.Name, EnrollmentGeneration: g, Current: g == a.p.EnrollmentGeneration})
	})
	switch {
	case apierrors.IsForbidden(err) || meta.IsNoMatchError(err):
		fmt.Fprintf(a.out, "audit: native enrollment not checked: cannot list MutatingAdmissionPolicies (%v)\n", err)
		return nil
	case err != nil:
		return fmt.Errorf("list MutatingAdmissionPolicies: %w", err)
	}
	var stale []string
	for _, np := range rep.Policies {
		if !np.Current {
			stale = append(stale, fmt.Sprintf("%s (enrollment generation %q)", np.Name, np.EnrollmentGeneration))
		}
	}
	switch {
	case a.p.Engine() == policy.EngineNative && len(rep.Policies) == 0:
		rep.Problem = "enrollment.engine is native and no native enrollment policy is installed: nothing enrolls new workloads; apply `promenroll compile --policy POLICY` (the chart and kustomize render it)"
	case len(stale) > 0:
		rep.Problem = fmt.Sprintf("native enrollment policies compiled from another policy enroll by its rules: %s, this policy's enrollment generation is %s; compile and apply them again", strings.Join(stale, ", "), a.p.EnrollmentGeneration)
	case a.p.Engine() == policy.EngineWebhook && len(rep.Policies) > 0:
		rep.Problem = fmt.Sprintf("enrollment.engine is webhook, and %d native enrollment policies are installed: both enroll; remove the policies or set the engine to native", len(rep.Policies))
	}
	a.res.Native = rep
	switch {
	case rep.Problem != "":
		fmt.Fprintf(a.out, "audit: native enrollment: %s\n", rep.Problem)
	case len(rep.Policies) > 0:
		fmt.Fprintf(a.out, "audit: native enrollment: %d policies, compiled from this policy (enrollment generation %s)\n", len(rep.Policies), a.p.EnrollmentGeneration)
	}
	return nil
}

// status adds the monitoring status' results (--with-prometheus): the
// lines of those not passing, and every result in -o json.
func (a *auditor) status(kubeconfig string, promURLs []string) error {
	endpoints, err := reporter.ParseEndpoints(promURLs, nil, nil)
	if err != nil {
		return usageError{err}
	}
	cfg, err := clusterstate.RESTConfig(kubeconfig, "promenroll-audit")
	if err != nil {
		return fmt.Errorf("kubernetes client config: %w", err)
	}
	results, err := clusterStatus(a.ctx, a.c, cfg, a.p, endpoints, a.ns)
	if err != nil {
		return fmt.Errorf("the monitoring status: %w", err)
	}
	a.res.Status = results
	counts := map[policy.Outcome]int{}
	for _, r := range results {
		counts[r.Outcome]++
		if r.Outcome != policy.OutcomePass && r.Outcome != policy.OutcomeSkip {
			fmt.Fprintf(a.out, "%s: status %s: %s\n", r.Subject, r.Outcome, r.Message)
		}
	}
	fmt.Fprintf(a.out, "audit --with-prometheus: %d results: %d pass, %d warn, %d fail, %d error, %d skip\n",
		len(results), counts[policy.OutcomePass], counts[policy.OutcomeWarn], counts[policy.OutcomeFail], counts[policy.OutcomeError], counts[policy.OutcomeSkip])
	return nil
}

// list lists one kind in pages of a.chunk (limit/continue), so no request
// asks the API server for the whole cluster at once, and hands each item
// on as JSON, every field as stored.
func (a *auditor) list(gvk schema.GroupVersionKind, namespace string, each func(js []byte)) error {
	opts := []client.ListOption{client.Limit(a.chunk)}
	if namespace != "" {
		opts = append(opts, client.InNamespace(namespace))
	}
	listed, cont := 0, ""
	for {
		page := &unstructured.UnstructuredList{}
		page.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err := a.c.List(a.ctx, page, append(slices.Clone(opts), client.Continue(cont))...); err != nil {
			return err
		}
		a.requests++
		for i := range page.Items {
			js, err := page.Items[i].MarshalJSON()
			if err != nil {
				return fmt.Errorf("encode %s %s: %w", gvk.Kind, page.Items[i].GetName(), err)
			}
			each(js)
		}
		listed += len(page.Items)
		if a.progress != nil {
			fmt.Fprintf(a.progress, "\raudit: %s: %d listed ", gvk.Kind, listed)
		}
		if cont = page.GetContinue(); cont == "" {
			break
		}
	}
	if a.progress != nil {
		fmt.Fprintln(a.progress)
	}
	return nil
}

// print says what the engine decided on o, in audit's words, and keeps
// o's report for -o json when there is something in it.
func (a *auditor) print(o *object, rep *policy.Report, e *engine) {
	r := &o.report
	id := fmt.Sprintf("%s %s/%s", r.Kind, r.Namespace, r.Name)
	mu := o.mutation
	if mu != nil && o.gvk.Group != groupMonitoring {
		if len(mu.Changes) > 0 {
			a.notEnrolled++
			fmt.Fprintf(a.out, "%s: not enrolled: would add %s\n", id, changes(mu.Object, mu.Changes))
		}
		if ws := mu.Warnings(); len(ws) > 0 {
			a.conflicts++
			for _, w := range ws {
				fmt.Fprintf(a.out, "%s: %s\n", id, w)
			}
		}
	}
	if mu != nil && o.gvk.Group == groupMonitoring {
		a.selection(id, r, mu, e)
	}
	if rep != nil && rep.Reason == "" {
		a.checked++
		if denials := rep.Denials(); len(denials) > 0 {
			verdict := "would be refused today"
			if rep.Mode == policy.ModeDryRun {
				verdict = "breaks the policy (dry-run: admitted with warnings)"
			} else {
				a.denied++
			}
			fmt.Fprintf(a.out, "%s: %s (%d problem(s)):\n", id, verdict, len(denials))
			for _, e := range denials {
				fmt.Fprintf(a.out, "  %s\n", e)
			}
		}
		for _, e := range rep.Warnings() {
			fmt.Fprintf(a.out, "%s: warning: %s\n", id, e)
		}
		for _, s := range rep.Skipped {
			fmt.Fprintf(a.out, "%s: %s\n", id, s)
		}
	}
	if len(r.Labels)+len(r.Findings)+len(r.Skipped) > 0 || r.CheckedWhat != "" {
		a.res.Objects = append(a.res.Objects, *r)
	}
}

// selection says whether a stored monitor or rule is loaded by a
// Prometheus today, and whether the policy's labels (the mutation's
// changes, enforced or dry-run) would change that.
func (a *auditor) selection(id string, r *ObjectReport, mu *policy.Mutation, e *engine) {
	obj, proms := mu.Object, e.cs.Prometheuses
	ns := e.namespace(obj.Namespace)
	if policy.HasLoaders(proms, obj.Kind) && len(policy.SelectingPrometheuses(proms, obj, ns)) == 0 {
		a.unselected++
		fixed := obj
		fixed.Labels = maps.Clone(obj.Labels)
		if fixed.Labels == nil {
			fixed.Labels = map[string]string{}
		}
		for _, c := range mu.Changes {
			fixed.Labels[c.Key] = c.Value
		}
		if len(mu.Changes) > 0 && len(policy.SelectingPrometheuses(proms, fixed, ns)) > 0 {
			fmt.Fprintf(a.out, "%s: loaded by no %s; the policy's monitors.labels fix that: would add %s\n", id, policy.LoaderNoun(obj.Kind), changes(mu.Object, mu.Changes))
		} else {
			why := policy.WhyNotSelected(proms, fixed, ns)
			fmt.Fprintf(a.out, "%s: loaded by no %s, and the policy's monitors.labels do not change that: %s\n", id, policy.LoaderNoun(obj.Kind), why)
			// In -o json once: as the mutation's warning, or (an opted-out
			// object, monitors.unselected: off) as audit's own finding.
			if !slices.ContainsFunc(mu.Warnings(), func(w string) bool { return policy.IsNotLoadedWarning(w) }) {
				r.add(Finding{Level: "warn", Code: policy.CheckUnselected, Field: "metadata.labels", Message: "loaded by no " + policy.LoaderNoun(obj.Kind) + ": " + why}, nil)
			}
		}
	} else if len(mu.Changes) > 0 {
		a.unlabelled++
		fmt.Fprintf(a.out, "%s: lacks the policy's monitors.labels: would add %s\n", id, changes(mu.Object, mu.Changes))
	}
	for _, w := range mu.Warnings() {
		if !policy.IsNotLoadedWarning(w) {
			fmt.Fprintf(a.out, "%s: %s\n", id, w)
		}
	}
}

func changes(o policy.Object, cs []policy.LabelChange) string {
	s := ""
	for i, c := range cs {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s %s=%s (rule %s", o.Field(c.Target), c.Key, c.Value, c.Rule)
		if c.Mode == policy.ModeDryRun {
			s += ", dry-run"
		}
		s += ")"
	}
	return s
}
