package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/promenroll/promenroll/internal/clusterstate"
	"github.com/promenroll/promenroll/internal/promapi"
	"github.com/promenroll/promenroll/internal/reporter"
	"github.com/promenroll/promenroll/policy"
)

// statusKinds maps what `promenroll status` accepts (kubectl's names,
// short names and plurals) to the kinds the status reports on.
var statusKinds = map[string]string{
	"deployment": "Deployment", "deployments": "Deployment", "deploy": "Deployment",
	"statefulset": "StatefulSet", "statefulsets": "StatefulSet", "sts": "StatefulSet",
	"daemonset": "DaemonSet", "daemonsets": "DaemonSet", "ds": "DaemonSet",
	"service": "Service", "services": "Service", "svc": "Service",
	"servicemonitor": "ServiceMonitor", "servicemonitors": "ServiceMonitor", "smon": "ServiceMonitor",
	"podmonitor": "PodMonitor", "podmonitors": "PodMonitor", "pmon": "PodMonitor",
	"probe": "Probe", "probes": "Probe", "prb": "Probe",
	"scrapeconfig": "ScrapeConfig", "scrapeconfigs": "ScrapeConfig", "scfg": "ScrapeConfig",
	"prometheusrule": "PrometheusRule", "prometheusrules": "PrometheusRule", "promrule": "PrometheusRule",
}

// StatusAPIVersion versions `promenroll status -o json`.
const StatusAPIVersion = "promenroll.io/status/v1"

// StatusOutput is `promenroll status -o json`.
type StatusOutput struct {
	APIVersion string              `json:"apiVersion"`
	Kind       string              `json:"kind"`
	Status     policy.StatusResult `json:"status"`
}

func newStatusCommand() *cobra.Command {
	var kubeconfig, namespace, output, policyPath, policyConfigMap string
	var promURLs []string
	c := &cobra.Command{
		Use:   "status KIND/NAME [-n NAMESPACE]",
		Short: "Say whether one object is really scraped or evaluated, link by link",
		Long: `status follows one object through the chain the monitoring status checks:
the policy (enrolled, or why not), the monitors that select it, the
Prometheus that loads them, and that Prometheus' targets for it (up, or down
with Prometheus' last error), or for a PrometheusRule its rules' health. It
stops at the first broken link and says what to do.

KIND is deployment, statefulset, daemonset, service, servicemonitor,
podmonitor, probe, scrapeconfig or prometheusrule (or kubectl's short names).
It reads the cluster through the kubeconfig and asks each Prometheus through
the API server's service proxy (the operator's governing Service,
prometheus-operated, port web), so it needs no network path beyond kubectl's
(and RBAC get on services/proxy there); --prometheus-url overrides.

The policy is the one in force (the ConfigMap --policy-configmap), or a file.

Exit codes: 0 pass (or nothing asked for it), 1 warn, fail or error, 2 usage
or API error.`,
		Example: `  promenroll status deployment/checkout -n shop
  promenroll status prometheusrule/shop-alerts -n shop -o json
  promenroll status svc/api -n shop --prometheus-url monitoring/k8s=http://localhost:9090`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			kindArg, name, ok := strings.Cut(args[0], "/")
			kind := statusKinds[strings.ToLower(kindArg)]
			if !ok || kind == "" || name == "" {
				return usageError{fmt.Errorf("%q: want KIND/NAME, KIND one of %s", args[0], strings.Join(slices.Sorted(maps.Keys(statusKinds)), ", "))}
			}
			if output != "text" && output != "json" {
				return usageError{fmt.Errorf("--output %q: use text or json", output)}
			}
			endpoints, err := reporter.ParseEndpoints(promURLs, nil, nil)
			if err != nil {
				return usageError{err}
			}
			cfg, err := clusterstate.RESTConfig(kubeconfig, "promenroll-status")
			if err != nil {
				return fmt.Errorf("kubernetes client config: %w", err)
			}
			if namespace == "" {
				namespace = namespaceOf(kubeconfig)
			}
			cl, err := auditClient(kubeconfig)
			if err != nil {
				return err
			}
			p, err := statusPolicy(c.Context(), cl, policyPath, policyConfigMap)
			if err != nil {
				return err
			}
			res, err := objectStatus(c.Context(), cl, cfg, p, endpoints, policy.Subject{Kind: kind, Namespace: namespace, Name: name})
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(c.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(StatusOutput{APIVersion: StatusAPIVersion, Kind: "Status", Status: res}); err != nil {
					return err
				}
			} else {
				printStatus(c.OutOrStdout(), res)
			}
			if res.Outcome != policy.OutcomePass && res.Outcome != policy.OutcomeSkip {
				return errCheckFailed
			}
			return nil
		},
	}
	fs := c.Flags()
	fs.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig (default: $KUBECONFIG, then in-cluster)")
	fs.StringVarP(&namespace, "namespace", "n", "", "the object's namespace (default: the kubeconfig context's)")
	fs.StringVarP(&output, "output", "o", "text", "text, or json")
	fs.StringVar(&policyPath, "policy", "", "a policy file (default: the one in force, from --policy-configmap)")
	fs.StringVar(&policyConfigMap, "policy-configmap", "promenroll-system/promenroll-policy", "NAMESPACE/NAME of the ConfigMap holding the policy in force (key policy.yaml)")
	fs.StringArrayVar(&promURLs, "prometheus-url", nil, "NAMESPACE/NAME=URL of a Prometheus' API, instead of the API server's service proxy; repeatable")
	_ = c.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"text", "json"}, cobra.ShellCompDirectiveNoFileComp))
	return c
}

// namespaceOf is the kubeconfig context's namespace, or default.
func namespaceOf(kubeconfig string) string {
	if ns, _, err := clusterstate.ClientConfig(kubeconfig).Namespace(); err == nil && ns != "" {
		return ns
	}
	return "default"
}

// statusPolicy reads the policy from a file, or from the ConfigMap in force.
func statusPolicy(ctx context.Context, cl client.Reader, path, configMap string) (*policy.Policy, error) {
	if path != "" {
		return policy.Load(path, policy.Options{})
	}
	ns, name, ok := strings.Cut(configMap, "/")
	if !ok || ns == "" || name == "" {
		return nil, usageError{fmt.Errorf("--policy-configmap %q: want NAMESPACE/NAME", configMap)}
	}
	var cm corev1.ConfigMap
	if err := cl.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &cm); err != nil {
		return nil, fmt.Errorf("read the policy in force (ConfigMap %s): %w; give a file with --policy", configMap, err)
	}
	doc, ok := cm.Data["policy.yaml"]
	if !ok {
		return nil, fmt.Errorf("ConfigMap %s has no key policy.yaml; give a file with --policy", configMap)
	}
	return policy.Parse("configmap/"+configMap+"[policy.yaml]", []byte(doc), policy.Options{OwnNamespace: ns})
}

// objectStatus is the status of one object.
func objectStatus(ctx context.Context, cl client.Client, cfg *rest.Config, p *policy.Policy, endpoints map[string]promapi.Endpoint, subject policy.Subject) (policy.StatusResult, error) {
	results, err := clusterStatus(ctx, cl, cfg, p, endpoints, subject.Namespace)
	if err != nil {
		return policy.StatusResult{}, err
	}
	for _, res := range results {
		if res.Subject.Kind == subject.Kind && res.Subject.Namespace == subject.Namespace && res.Subject.Name == subject.Name {
			return res, nil
		}
	}
	if _, excluded := p.ExcludedNamespace(policy.Namespace{Name: subject.Namespace}); excluded {
		return policy.StatusResult{}, fmt.Errorf("%s: namespace %s is outside the policy's scope (excluded): nothing is reported on it", subject, subject.Namespace)
	}
	return policy.StatusResult{}, fmt.Errorf("%s not found", subject)
}

// clusterStatus reads what the status joins from the API server (the
// workloads, Services and rules of namespace; every namespace when ""),
// asks each Prometheus, through the API server's service proxy unless
// endpoints names it, and returns the results, as the reporter would.
func clusterStatus(ctx context.Context, cl client.Client, cfg *rest.Config, p *policy.Policy, endpoints map[string]promapi.Endpoint, namespace string) ([]policy.StatusResult, error) {
	served := func(kind string) bool {
		_, err := cl.RESTMapper().RESTMapping(schema.GroupKind{Group: groupMonitoring, Kind: kind})
		return err == nil
	}
	var proms []policy.PrometheusSelectors
	if served(monv1.PrometheusesKind) {
		var err error
		if proms, err = clusterstate.ListPrometheuses(ctx, cl, served(monv1alpha1.PrometheusAgentsKind)); err != nil {
			return nil, err
		}
	}
	var scope []client.ListOption
	if namespace != "" {
		scope = append(scope, client.InNamespace(namespace))
	}
	in, subjects, err := clusterstate.ReadStatusInput(ctx, cl, p, served, proms, scope...)
	if err != nil {
		return nil, err
	}
	in.States = map[string]policy.PrometheusState{}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	for _, pr := range proms {
		key := pr.Namespace + "/" + pr.Name
		var c *promapi.Client
		if e, ok := endpoints[key]; ok {
			c, err = promapi.New(e)
		} else {
			c, err = promapi.NewThrough(serviceProxy(cfg.Host, pr), hc)
		}
		if err != nil {
			in.States[key] = policy.PrometheusState{Err: err.Error()}
			continue
		}
		in.States[key] = c.State(ctx, pr.Kind == policy.KindPrometheusAgent)
	}
	results := p.Status(in)
	out := results[:0]
	for _, res := range results {
		// Monitors are listed cluster-wide (they select across
		// namespaces); their results count only in the namespace asked.
		if namespace != "" && res.Subject.Namespace != namespace {
			continue
		}
		if res.Subject.UID == "" {
			res.Subject.UID = string(subjects[res.Subject.Kind+"/"+res.Subject.Namespace+"/"+res.Subject.Name])
		}
		out = append(out, res)
	}
	return out, nil
}

// serviceProxy is the API server's proxy path to a Prometheus' governing
// Service, port web, under its route prefix.
func serviceProxy(host string, pr policy.PrometheusSelectors) string {
	// APIURL is scheme://service.namespace.svc:9090/prefix.
	scheme, rest, _ := strings.Cut(pr.APIURL, "://")
	hostPort, prefix, _ := strings.Cut(rest, "/")
	service, _, _ := strings.Cut(hostPort, ".")
	return fmt.Sprintf("%s/api/v1/namespaces/%s/services/%s:%s:web/proxy/%s", strings.TrimSuffix(host, "/"), pr.Namespace, scheme, service, prefix)
}

// printStatus prints the chain, one link per line, then the result.
func printStatus(w io.Writer, r policy.StatusResult) {
	fmt.Fprintf(w, "%s %s/%s\n", r.Subject.Kind, r.Subject.Namespace, r.Subject.Name)
	line := func(label, v string) {
		if v != "" {
			fmt.Fprintf(w, "  %-11s %s\n", label+":", v)
		}
	}
	line("policy", r.Properties["enrollment"])
	line("monitors", r.Properties["monitors"])
	line("prometheus", r.Properties["prometheus"])
	line("pool", r.Properties["pool"])
	for i, t := range r.Targets {
		label := ""
		if i == 0 {
			label = "targets"
		}
		fmt.Fprintf(w, "  %-11s %-5s %s", label+strings.Repeat(":", min(len(label), 1)), t.Health, t.URL)
		if t.LastError != "" {
			fmt.Fprintf(w, ": %s", t.LastError)
		}
		fmt.Fprintln(w)
	}
	if len(r.Targets) == 0 && r.Properties["lastError"] != "" {
		line("last error", r.Properties["lastError"])
	}
	fmt.Fprintf(w, "  %-11s %s: %s\n", "result:", r.Outcome, r.Message)
}
