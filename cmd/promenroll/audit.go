package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	"github.com/spf13/cobra"
	"golang.org/x/term"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/promenroll/promenroll/policy"
	"github.com/promenroll/promenroll/webhook"
)

// newAuditCommand: audit scans a live cluster, read-only, with the
// webhook's engine: which workloads and Services are not enrolled and what
// enrollment would add, which monitors miss the selector labels or are
// loaded by no Prometheus, and which stored PrometheusRules and monitors
// the gates would refuse today. It exits 1 when one would be refused.
func newAuditCommand() *cobra.Command {
	var policyPath, kubeconfig, namespace, output string
	var allNamespaces bool
	var chunk int64
	c := &cobra.Command{
		Use:   "audit --policy POLICY [-n NAMESPACE | -A]",
		Short: "Scan a live cluster, read-only, with the same engine",
		Long: `audit lists the cluster's workloads, Services, monitors, rules and Prometheus
objects (in pages of --chunk-size, as kubectl does) and reports what the
webhook would do with them today. It changes nothing.

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
			a := &auditor{ctx: c.Context(), c: cl, p: p, out: c.OutOrStdout(), ns: namespace, chunk: chunk, namespaces: map[string]policy.Namespace{},
				res: &Result{APIVersion: ResultAPIVersion, Policy: PolicyInfo{Path: policyPath, Generation: p.Generation, Mode: string(p.Source.Mode)}}, reports: map[string]int{}}
			if output == "json" {
				a.out = io.Discard
			}
			// Progress on stderr, only for a person watching a terminal.
			if f, ok := c.ErrOrStderr().(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				a.progress = f
			}
			err = a.run()
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
	fs.StringVarP(&output, "output", "o", "text", "text, or json (check's schema, source \"cluster\")")
	_ = c.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"text", "json"}, cobra.ShellCompDirectiveNoFileComp))
	return c
}

func auditClient(kubeconfig string) (client.Client, error) {
	cfg, err := webhook.RESTConfig(kubeconfig, "promenroll-audit")
	if err != nil {
		return nil, fmt.Errorf("kubernetes client config: %w", err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := monv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := monv1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	return client.New(cfg, client.Options{Scheme: scheme})
}

type auditor struct {
	ctx        context.Context
	c          client.Client
	p          *policy.Policy
	out        io.Writer
	ns         string
	chunk      int64
	namespaces map[string]policy.Namespace

	notEnrolled, conflicts, unselected, unlabelled, denied, checked int
	requests                                                        int

	workloads staticWorkloads
	progress  io.Writer // nil: no progress lines

	// res collects what is printed, for -o json: one report per object.
	res     *Result
	reports map[string]int
}

// report returns the object's report in a.res, created on first use.
func (a *auditor) report(apiVersion, kind, ns, name string) *ObjectReport {
	key := kind + "/" + ns + "/" + name
	i, ok := a.reports[key]
	if !ok {
		i = len(a.res.Objects)
		a.reports[key] = i
		a.res.Objects = append(a.res.Objects, ObjectReport{Source: "cluster", APIVersion: apiVersion, Kind: kind, Namespace: ns, Name: name})
	}
	return &a.res.Objects[i]
}

func apiVersionOf(kind string) string {
	switch kind {
	case "Service":
		return "v1"
	case "Deployment", "StatefulSet", "DaemonSet":
		return "apps/v1"
	case "ScrapeConfig":
		return "monitoring.coreos.com/v1alpha1"
	}
	return "monitoring.coreos.com/v1"
}

// changeList turns label changes into the report's form.
func changeList(cs []policy.LabelChange) []Change {
	out := make([]Change, 0, len(cs))
	for _, c := range cs {
		out = append(out, Change{Field: string(c.Target), Key: c.Key, Value: c.Value})
	}
	return out
}

func (a *auditor) run() error {
	var nsList corev1.NamespaceList
	if err := a.list(&nsList); err != nil {
		return fmt.Errorf("list namespaces: %w", err)
	}
	for _, n := range nsList.Items {
		a.namespaces[n.Name] = policy.Namespace{Name: n.Name, Labels: n.Labels, Annotations: n.Annotations}
	}
	opts := []client.ListOption{}
	if a.ns != "" {
		opts = append(opts, client.InNamespace(a.ns))
	}
	var objs []policy.Object
	var deps appsv1.DeploymentList
	var sts appsv1.StatefulSetList
	var dss appsv1.DaemonSetList
	var svcs corev1.ServiceList
	for _, l := range []client.ObjectList{&deps, &sts, &dss, &svcs} {
		if err := a.list(l, opts...); err != nil {
			return fmt.Errorf("list %T: %w", l, err)
		}
	}
	for _, d := range deps.Items {
		objs = append(objs, workload("Deployment", d.ObjectMeta.Name, d.Namespace, d.Labels, d.Spec.Template.Labels))
		a.workloads = append(a.workloads, webhook.WorkloadOf("Deployment", &d.ObjectMeta, &d.Spec.Template))
	}
	for _, s := range sts.Items {
		objs = append(objs, workload("StatefulSet", s.Name, s.Namespace, s.Labels, s.Spec.Template.Labels))
		a.workloads = append(a.workloads, webhook.WorkloadOf("StatefulSet", &s.ObjectMeta, &s.Spec.Template))
	}
	for _, d := range dss.Items {
		objs = append(objs, workload("DaemonSet", d.Name, d.Namespace, d.Labels, d.Spec.Template.Labels))
		a.workloads = append(a.workloads, webhook.WorkloadOf("DaemonSet", &d.ObjectMeta, &d.Spec.Template))
	}
	for _, s := range svcs.Items {
		objs = append(objs, policy.Object{Kind: "Service", Name: s.Name, Namespace: s.Namespace, Labels: s.Labels})
	}
	sort.SliceStable(objs, func(i, j int) bool {
		return objs[i].Namespace+"/"+objs[i].Name+objs[i].Kind < objs[j].Namespace+"/"+objs[j].Name+objs[j].Kind
	})
	for _, o := range objs {
		a.enrollment(o)
	}
	if err := a.monitors(opts); err != nil {
		return err
	}
	fmt.Fprintf(a.out, "audit: %d workloads and Services scanned: %d not fully enrolled, %d with conflicting labels; monitors and rules: %d loaded by no Prometheus, %d without the policy's monitors.labels; %d PrometheusRules and monitors checked, %d would be refused (%d list requests of at most %d objects)\n",
		len(objs), a.notEnrolled, a.conflicts, a.unselected, a.unlabelled, a.checked, a.denied, a.requests, a.chunk)
	if a.denied > 0 {
		return errCheckFailed
	}
	return nil
}

// list lists in pages of a.chunk (limit/continue), so no request asks the
// API server for the whole cluster at once.
func (a *auditor) list(list client.ObjectList, opts ...client.ListOption) error {
	var all []runtime.Object
	cont := ""
	for {
		page := list.DeepCopyObject().(client.ObjectList)
		if err := a.c.List(a.ctx, page, append(slices.Clone(opts), client.Limit(a.chunk), client.Continue(cont))...); err != nil {
			return err
		}
		items, err := meta.ExtractList(page)
		if err != nil {
			return err
		}
		all = append(all, items...)
		a.requests++
		if a.progress != nil {
			fmt.Fprintf(a.progress, "\raudit: %s: %d listed ", strings.TrimSuffix(reflect.TypeOf(list).Elem().Name(), "List"), len(all))
		}
		if cont = page.GetContinue(); cont == "" {
			break
		}
	}
	if a.progress != nil {
		fmt.Fprintln(a.progress)
	}
	return meta.SetList(list, all)
}

func workload(kind, name, ns string, labels, tmpl map[string]string) policy.Object {
	return policy.Object{Kind: kind, Name: name, Namespace: ns, Labels: labels, HasPodTemplate: true, PodTemplateLabels: tmpl}
}

// enrollment reports what CREATE of the object would add today.
func (a *auditor) enrollment(o policy.Object) {
	d := a.p.Enroll(policy.EnrollRequest{Operation: policy.Create, Object: o, Namespace: a.namespaces[o.Namespace]})
	id := fmt.Sprintf("%s %s/%s", o.Kind, o.Namespace, o.Name)
	if len(d.Changes) > 0 {
		a.notEnrolled++
		fmt.Fprintf(a.out, "%s: not enrolled: would add %s\n", id, changes(d.Changes))
		r := a.report(apiVersionOf(o.Kind), o.Kind, o.Namespace, o.Name)
		r.Labels = append(r.Labels, changeList(d.Changes)...)
	}
	if len(d.Warnings) > 0 {
		a.conflicts++
		r := a.report(apiVersionOf(o.Kind), o.Kind, o.Namespace, o.Name)
		for _, w := range d.Warnings {
			fmt.Fprintf(a.out, "%s: %s\n", id, w)
			r.add(Finding{Level: "warn", Code: "admission-warning", Message: w}, nil)
		}
	}
}

func changes(cs []policy.LabelChange) string {
	s := ""
	for i, c := range cs {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s %s=%s (rule %s", c.Target, c.Key, c.Value, c.Rule)
		if c.Mode == policy.ModeDryRun {
			s += ", dry-run"
		}
		s += ")"
	}
	return s
}

// monitors scans the Prometheus Operator's objects, if its CRDs exist.
func (a *auditor) monitors(opts []client.ListOption) error {
	var sms monv1.ServiceMonitorList
	var pms monv1.PodMonitorList
	var prs monv1.PrometheusRuleList
	for _, l := range []client.ObjectList{&sms, &pms, &prs} {
		if err := a.list(l, opts...); err != nil {
			if meta.IsNoMatchError(err) {
				fmt.Fprintln(a.out, "audit: the Prometheus Operator's CRDs are not installed: no monitors or rules to scan")
				return nil
			}
			return fmt.Errorf("list %T: %w", l, err)
		}
	}
	// Probes and ScrapeConfigs (v1alpha1) have CRDs of their own, absent
	// from some installs: skipped when not served.
	var probes monv1.ProbeList
	var scs monv1alpha1.ScrapeConfigList
	for _, l := range []client.ObjectList{&probes, &scs} {
		if err := a.list(l, opts...); err != nil && !meta.IsNoMatchError(err) {
			return fmt.Errorf("list %T: %w", l, err)
		}
	}
	type named struct {
		kind, ns, name string
		labels         map[string]string
	}
	var mons []named
	for _, m := range sms.Items {
		mons = append(mons, named{"ServiceMonitor", m.Namespace, m.Name, m.Labels})
	}
	for _, m := range pms.Items {
		mons = append(mons, named{"PodMonitor", m.Namespace, m.Name, m.Labels})
	}
	for _, r := range prs.Items {
		mons = append(mons, named{"PrometheusRule", r.Namespace, r.Name, r.Labels})
	}
	for _, m := range probes.Items {
		mons = append(mons, named{"Probe", m.Namespace, m.Name, m.Labels})
	}
	for _, m := range scs.Items {
		mons = append(mons, named{"ScrapeConfig", m.Namespace, m.Name, m.Labels})
	}
	// Prometheuses are listed cluster-wide: one in another namespace may
	// load this namespace's monitors.
	var proms monv1.PrometheusList
	if err := a.list(&proms); err != nil && !meta.IsNoMatchError(err) {
		return fmt.Errorf("list Prometheuses: %w", err)
	}
	sel := webhook.PrometheusSelectorsOf(proms.Items)
	var agents monv1alpha1.PrometheusAgentList
	if err := a.list(&agents); err == nil {
		sel = append(sel, webhook.AgentSelectorsOf(agents.Items)...)
	} else if !meta.IsNoMatchError(err) {
		return fmt.Errorf("list PrometheusAgents: %w", err)
	}
	if len(sel) == 0 {
		fmt.Fprintln(a.out, "audit: no Prometheus objects found: which Prometheus loads each monitor and rule is not checked")
	}
	for _, m := range mons {
		obj := policy.Object{Kind: m.kind, Name: m.name, Namespace: m.ns, Labels: m.labels}
		ns := a.namespaces[m.ns]
		d := a.p.MonitorLabels(obj, ns, sel)
		id := fmt.Sprintf("%s %s/%s", m.kind, m.ns, m.name)
		if len(sel) > 0 && len(policy.SelectingPrometheuses(sel, obj, ns)) == 0 {
			a.unselected++
			fixed := obj
			fixed.Labels = map[string]string{}
			for k, v := range obj.Labels {
				fixed.Labels[k] = v
			}
			for _, c := range d.Changes {
				fixed.Labels[c.Key] = c.Value
			}
			r := a.report(apiVersionOf(m.kind), m.kind, m.ns, m.name)
			r.Labels = append(r.Labels, changeList(d.Changes)...)
			if len(d.Changes) > 0 && len(policy.SelectingPrometheuses(sel, fixed, ns)) > 0 {
				fmt.Fprintf(a.out, "%s: loaded by no Prometheus; the policy's monitors.labels fix that: would add %s\n", id, changes(d.Changes))
			} else {
				why := policy.WhyNotSelected(sel, fixed, ns)
				fmt.Fprintf(a.out, "%s: loaded by no Prometheus, and the policy's monitors.labels do not change that: %s\n", id, why)
				r.add(Finding{Level: "warn", Code: policy.CheckUnselected, Field: "metadata.labels", Message: "loaded by no Prometheus: " + why}, nil)
			}
			continue
		}
		if len(d.Changes) > 0 {
			a.unlabelled++
			fmt.Fprintf(a.out, "%s: lacks the policy's monitors.labels: would add %s\n", id, changes(d.Changes))
			r := a.report(apiVersionOf(m.kind), m.kind, m.ns, m.name)
			r.Labels = append(r.Labels, changeList(d.Changes)...)
		}
	}
	// Every stored rule and monitor through the webhook's gates, against
	// the cluster's Prometheuses and Services as the webhook sees them.
	var svcs corev1.ServiceList
	if err := a.list(&svcs); err != nil {
		return fmt.Errorf("list Services: %w", err)
	}
	var services staticServices
	for i := range svcs.Items {
		services = append(services, webhook.ServiceOf(&svcs.Items[i]))
	}
	// The PodMonitor checks read the workloads listed above; with -n only
	// one namespace's are known, and a PodMonitor may select others, so
	// the checks are skipped rather than wrong.
	cs := policy.ClusterState{Prometheuses: sel, Services: services}
	if a.ns == "" {
		cs.Workloads = a.workloads
	}
	var gated []client.Object
	for i := range prs.Items {
		gated = append(gated, &prs.Items[i])
	}
	for i := range sms.Items {
		gated = append(gated, &sms.Items[i])
	}
	for i := range pms.Items {
		gated = append(gated, &pms.Items[i])
	}
	for i := range probes.Items {
		gated = append(gated, &probes.Items[i])
	}
	for i := range scs.Items {
		gated = append(gated, &scs.Items[i])
	}
	for _, obj := range gated {
		gk := schema.GroupKind{Group: monv1.SchemeGroupVersion.Group, Kind: kindOf(obj)}
		raw, err := json.Marshal(obj)
		if err != nil {
			return err
		}
		res, err := a.p.Gate(gk, raw, a.namespaces[obj.GetNamespace()], cs)
		if err != nil {
			return err
		}
		rep := res.Report
		if rep.Reason != "" {
			continue
		}
		a.checked++
		id := fmt.Sprintf("%s %s/%s", gk.Kind, obj.GetNamespace(), obj.GetName())
		r := a.report(apiVersionOf(gk.Kind), gk.Kind, obj.GetNamespace(), obj.GetName())
		r.Mode, r.Checked, r.CheckedWhat = string(rep.Mode), rep.Checked, res.Noun(gk)
		for _, f := range rep.Findings {
			r.add(Finding{Level: string(f.Level), Code: f.Check, Field: f.Err.Field, Message: f.Err.ErrorBody()}, nil)
		}
		if len(rep.Denials()) > 0 && rep.Mode == policy.ModeEnforce {
			r.Denied = true
		}
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
	}
	return nil
}

// kindOf names a gated object's kind (typed objects from a List carry no
// TypeMeta).
func kindOf(obj client.Object) string {
	switch obj.(type) {
	case *monv1.PrometheusRule:
		return "PrometheusRule"
	case *monv1.ServiceMonitor:
		return "ServiceMonitor"
	case *monv1.PodMonitor:
		return "PodMonitor"
	case *monv1.Probe:
		return "Probe"
	case *monv1alpha1.ScrapeConfig:
		return "ScrapeConfig"
	}
	return ""
}
