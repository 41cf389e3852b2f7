package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/promenroll/promenroll/policy"
	"github.com/promenroll/promenroll/webhook"
)

// errCheckFailed is returned when check found a problem the webhook would
// deny; the details are already printed.
var errCheckFailed = errors.New("check failed")

// check runs the webhook's engine offline over a policy and manifests (files,
// folders, or - for stdin), for CI and GitOps pipelines: the policy must
// load, and every PrometheusRule, ServiceMonitor, PodMonitor, Probe and
// // ScrapeConfig must pass its gate as the webhook would judge it, against
// the Services and Prometheus objects found in the same input. Lint
// findings and warnings are printed and do not fail.
func check(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	policyPath := fs.String("policy", "", "policy file (required)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: promenroll check --policy policy.yaml [manifest.yaml | folder | -]...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err}
	}
	if *policyPath == "" {
		fs.Usage()
		return usageError{errors.New("check needs --policy")}
	}
	p, err := policy.Load(*policyPath, policy.Options{})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: policy valid (generation %s, mode %s, %d enrollment rules)\n", *policyPath, p.Generation, p.Source.Mode, len(p.Source.Enroll))

	// Read everything first: the Services and Prometheus objects in the
	// input are the cluster state the gates judge monitors against, as the
	// webhook does with its caches.
	type document struct {
		name string
		doc  []byte
	}
	var docs []document
	for _, arg := range fs.Args() {
		err := eachManifest(arg, func(name string, doc []byte) error {
			docs = append(docs, document{name, doc})
			return nil
		})
		if err != nil {
			return err
		}
	}
	var state inputState
	for _, d := range docs {
		state.add(d.doc)
	}
	cs := policy.ClusterState{Prometheuses: append(webhook.PrometheusSelectorsOf(state.prometheuses), webhook.AgentSelectorsOf(state.agents)...)}
	if len(state.services) > 0 {
		cs.Services = state.services
	}
	if len(state.workloads) > 0 {
		cs.Workloads = state.workloads
	}
	failed := false
	for _, d := range docs {
		bad, err := checkDocument(p, d.name, d.doc, cs, stdout)
		if err != nil {
			return err
		}
		failed = failed || bad
	}
	if failed {
		return errCheckFailed
	}
	return nil
}

// eachManifest calls fn for every YAML document of a file, of every
// .yaml/.yml/.json file under a folder, or of stdin ("-").
func eachManifest(arg string, fn func(name string, doc []byte) error) error {
	split := func(name string, data []byte) error {
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for i := 1; ; i++ {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("%s: read YAML document %d: %w", name, i, err)
			}
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			if err := fn(fmt.Sprintf("%s#%d", name, i), doc); err != nil {
				return err
			}
		}
	}
	if arg == "-" {
		data, err := io.ReadAll(os.Stdin)
		if err != nil {
			return err
		}
		return split("stdin", data)
	}
	return filepath.WalkDir(arg, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		ext := strings.ToLower(filepath.Ext(path))
		if d.IsDir() || (path != arg && ext != ".yaml" && ext != ".yml" && ext != ".json") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return split(path, data)
	})
}

// checkDocument judges one document with the webhook's gates (one dispatch
// table, in policy). It reports whether the webhook would deny it; an error
// is a document that is not YAML. Kinds without a gate pass untouched.
func checkDocument(p *policy.Policy, name string, doc []byte, cs policy.ClusterState, out io.Writer) (bool, error) {
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return false, fmt.Errorf("%s: not YAML: %w", name, err)
	}
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(js, &head); err != nil {
		return false, nil
	}
	gv, err := schema.ParseGroupVersion(head.APIVersion)
	if err != nil {
		return false, nil
	}
	gk := schema.GroupKind{Group: gv.Group, Kind: head.Kind}
	if !policy.Gated(gk) {
		return false, nil
	}
	res, err := p.Gate(gk, js, policy.Namespace{Name: head.Metadata.Namespace}, cs)
	if err != nil {
		fmt.Fprintf(out, "%s: %s cannot be decoded: %v\n", name, gk.Kind, err)
		return true, nil
	}
	rep := res.Report
	id := fmt.Sprintf("%s: %s %s", name, gk.Kind, res.Name)
	if res.Namespace != "" {
		id = fmt.Sprintf("%s: %s %s/%s", name, gk.Kind, res.Namespace, res.Name)
	}
	for _, e := range rep.Warnings() {
		fmt.Fprintf(out, "%s: warning: %s\n", id, e)
	}
	denials := rep.Denials()
	for _, e := range denials {
		fmt.Fprintf(out, "%s: %s\n", id, e)
	}
	if len(denials) > 0 && rep.Mode == policy.ModeEnforce {
		return true, nil
	}
	switch {
	case rep.Reason != "":
		fmt.Fprintf(out, "%s: not checked: %s\n", id, rep.Reason)
	case len(denials) > 0:
		fmt.Fprintf(out, "%s: would be denied, but the gate is in dry-run\n", id)
	default:
		fmt.Fprintf(out, "%s: %d %s valid\n", id, rep.Checked, res.Noun(gk))
	}
	return false, nil
}

// inputState is the cluster state found in check's input: Services and
// Prometheus objects.
type inputState struct {
	services     staticServices
	workloads    staticWorkloads
	prometheuses []monv1.Prometheus
	agents       []monv1alpha1.PrometheusAgent
}

func (st *inputState) add(doc []byte) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if yaml.Unmarshal(doc, &head) != nil {
		return
	}
	switch {
	case head.APIVersion == "apps/v1" && (head.Kind == "Deployment" || head.Kind == "StatefulSet" || head.Kind == "DaemonSet"):
		var w struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
			Spec     struct {
				Template corev1.PodTemplateSpec `json:"template"`
			} `json:"spec"`
		}
		if yaml.Unmarshal(doc, &w) == nil {
			st.workloads = append(st.workloads, webhook.WorkloadOf(head.Kind, &w.Metadata, &w.Spec.Template))
		}
	case head.APIVersion == "v1" && head.Kind == "Service":
		var s corev1.Service
		if yaml.Unmarshal(doc, &s) == nil {
			st.services = append(st.services, webhook.ServiceOf(&s))
		}
	case strings.HasPrefix(head.APIVersion, "monitoring.coreos.com/") && head.Kind == "Prometheus":
		var pr monv1.Prometheus
		if yaml.Unmarshal(doc, &pr) == nil {
			if pr.Spec.ScrapeInterval == "" {
				pr.Spec.ScrapeInterval = "30s" // the CRD's default
			}
			st.prometheuses = append(st.prometheuses, pr)
		}
	case strings.HasPrefix(head.APIVersion, "monitoring.coreos.com/") && head.Kind == "PrometheusAgent":
		var ag monv1alpha1.PrometheusAgent
		if yaml.Unmarshal(doc, &ag) == nil {
			if ag.Spec.ScrapeInterval == "" {
				ag.Spec.ScrapeInterval = "30s" // the CRD's default
			}
			st.agents = append(st.agents, ag)
		}
	}
}

// staticWorkloads serves the input's Deployments, StatefulSets and
// DaemonSets. None at all skips the PodMonitor checks.
type staticWorkloads []policy.Workload

func (s staticWorkloads) Workloads(namespaces []string, all bool) []policy.Workload {
	return inNamespaces(s, func(w policy.Workload) string { return w.Namespace }, namespaces, all)
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

// staticServices serves the input's Services. None at all means the input
// says nothing about Services: the port checks are skipped.
type staticServices []policy.Service

func (s staticServices) Services(namespaces []string, all bool) []policy.Service {
	return inNamespaces(s, func(svc policy.Service) string { return svc.Namespace }, namespaces, all)
}
