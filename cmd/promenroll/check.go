package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	jsonpatch "github.com/evanphx/json-patch/v5"
	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	"github.com/spf13/cobra"
	yamlv3 "go.yaml.in/yaml/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/promenroll/promenroll/policy"
)

// errCheckFailed is returned when something would be denied; the details
// are already printed. Exit code 1.
var errCheckFailed = errors.New("check failed")

// errInput is returned after the whole run when some input could not be
// read or parsed; the details are already printed. Exit code 2.
var errInput = errors.New("some input could not be checked")

type checkOptions struct {
	policy          string
	filenames       []string
	output          string
	namespace       string
	namespaceLabels []string
	mode            string
}

func newCheckCommand() *cobra.Command {
	var o checkOptions
	c := &cobra.Command{
		Use:   "check --policy POLICY [PATH | -]...",
		Short: "Check a policy and manifests offline, as the webhook would judge them",
		Long: `check runs the webhook's engine over manifests: files, folders (recursive:
.yaml, .yml, .json) or stdin (-); multi-document YAML and List objects.

Every object goes through what the API server and the webhooks would do with
it, on the same engine serve runs: the schema the API server applies (strict
decoding and object metadata rules for built-in kinds, before admission; the
Prometheus Operator's CRDs for monitoring.coreos.com kinds, after the
mutation, as the API server validates custom resources), the mutation table
(enrollment labels and scrape annotations for Deployments, StatefulSets,
DaemonSets and Services; monitors.labels for monitors and rules; every
warning), and the gate table on the object as it would be stored.

Order: the input is judged as the cluster holds it once all of it is
applied through the webhooks (as after 'kubectl apply -f dir/'): Namespace
objects give namespaces their labels, and the Services, workloads and
Prometheus objects, as stored after enrollment, are the cluster state every
gate reads, whatever the order of the documents. Other kinds pass untouched.

Exit codes: 0 nothing would be denied, 1 something would be denied, 2 usage,
I/O, parse or policy error (an unparseable document is reported with its file
and document number, the rest is still checked).`,
		Example: `  promenroll check --policy policy.yaml manifests/
  kustomize build overlays/prod | promenroll check --policy policy.yaml -
  promenroll check --policy policy.yaml -o yaml deploy.yaml | diff deploy.yaml -
  promenroll check --policy policy.yaml --mode enforce -o github rules/`,
		Args: cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			o.filenames = append(o.filenames, args...)
			return o.run(c.Context(), c.InOrStdin(), c.OutOrStdout(), c.ErrOrStderr())
		},
	}
	fs := c.Flags()
	fs.StringVar(&o.policy, "policy", "", "policy file (required)")
	fs.StringSliceVarP(&o.filenames, "filename", "f", nil, "file, folder or - (stdin) to check; also taken as arguments")
	fs.StringVarP(&o.output, "output", "o", "text", "text, json, yaml (the manifests as the webhook would change them) or github (workflow annotations)")
	fs.StringVar(&o.namespace, "namespace", "default", "namespace of the objects that name none")
	fs.StringSliceVar(&o.namespaceLabels, "namespace-labels", nil, "labels of namespaces not in the input: ns=key=value,...")
	fs.StringVar(&o.mode, "mode", "", "enforce: judge as if the policy (and every namespace) were in enforce mode")
	_ = c.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"text", "json", "yaml", "github"}, cobra.ShellCompDirectiveNoFileComp))
	_ = c.RegisterFlagCompletionFunc("mode", cobra.FixedCompletions([]string{"enforce"}, cobra.ShellCompDirectiveNoFileComp))
	return c
}

func (o *checkOptions) validate() error {
	var errs []error
	if o.policy == "" {
		errs = append(errs, errors.New("--policy is required"))
	}
	if len(o.filenames) == 0 {
		errs = append(errs, errors.New("no manifests given: pass files, folders or - (stdin)"))
	}
	if !slices.Contains([]string{"text", "json", "yaml", "github"}, o.output) {
		errs = append(errs, fmt.Errorf("--output %q: use text, json, yaml or github", o.output))
	}
	if o.mode != "" && o.mode != "enforce" {
		errs = append(errs, fmt.Errorf("--mode %q: the only mode to judge as is enforce", o.mode))
	}
	if err := errors.Join(errs...); err != nil {
		return usageError{fmt.Errorf("%w (run 'promenroll check --help')", err)}
	}
	return nil
}

func (o *checkOptions) run(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) error {
	if err := o.validate(); err != nil {
		return err
	}
	nsLabels, err := parseNamespaceLabels(o.namespaceLabels)
	if err != nil {
		return usageError{err}
	}
	p, err := loadCheckPolicy(o.policy, o.mode == "enforce")
	if err != nil {
		return err
	}
	res := &Result{APIVersion: ResultAPIVersion, Policy: PolicyInfo{Path: o.policy, Generation: p.Generation, Mode: string(p.Source.Mode)}}

	docs := readInputs(o.filenames, stdin, res)
	objs := objectsOf(docs, res)
	judgeInput(p, objs, o.namespace, nsLabels, o.mode == "enforce")
	for _, obj := range objs {
		res.Objects = append(res.Objects, obj.report)
	}
	res.summarize()

	switch o.output {
	case "json":
		err = writeJSON(stdout, res)
	case "yaml":
		err = writeYAML(stdout, docs)
		writeText(stderr, res, true)
	case "github":
		writeGitHub(stdout, res)
	default:
		writeText(stdout, res, false)
	}
	if err != nil {
		return err
	}
	switch {
	case len(res.Errors) > 0:
		return errInput
	case res.Summary.Denied > 0:
		return errCheckFailed
	}
	return nil
}

// loadCheckPolicy loads the policy; asEnforced rewrites every mode in it
// to enforce first (`--mode enforce`: the question before switching a
// dry-run policy on).
func loadCheckPolicy(path string, asEnforced bool) (*policy.Policy, error) {
	if !asEnforced {
		return policy.Load(path, policy.Options{})
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var src map[string]any
	if err := yaml.Unmarshal(data, &src); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	enforce := func(m any) {
		if mm, ok := m.(map[string]any); ok {
			if _, set := mm["mode"]; set {
				mm["mode"] = string(policy.ModeEnforce)
			}
		}
	}
	src["mode"] = string(policy.ModeEnforce)
	enforce(src["monitors"])
	enforce(src["rules"])
	if rules, ok := src["enroll"].([]any); ok {
		for _, r := range rules {
			enforce(r)
		}
	}
	out, err := yaml.Marshal(src)
	if err != nil {
		return nil, err
	}
	return policy.Parse(path+" (every mode set to enforce)", out, policy.Options{})
}

// parseNamespaceLabels reads ns=key=value,... into labels per namespace.
func parseNamespaceLabels(specs []string) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	for _, s := range specs {
		ns, kv, ok := strings.Cut(s, "=")
		k, v, ok2 := strings.Cut(kv, "=")
		if !ok || !ok2 || ns == "" || k == "" {
			return nil, fmt.Errorf("--namespace-labels %q: want namespace=key=value", s)
		}
		if out[ns] == nil {
			out[ns] = map[string]string{}
		}
		out[ns][k] = v
	}
	return out, nil
}

// document is one YAML document of the input, kept as a node tree so that
// `-o yaml` can write it back with only the webhook's changes.
type document struct {
	source string // file path, or "stdin"
	index  int    // 1-based, in its file
	line   int    // its first line in the file
	text   []byte
	root   *yamlv3.Node // the document's content; nil if empty or unparseable
	dirty  bool
}

// readInputs reads every file, folder and stdin argument into documents;
// what cannot be read is recorded and the rest goes on.
func readInputs(args []string, stdin io.Reader, res *Result) []*document {
	var docs []*document
	for _, arg := range args {
		if arg == "-" {
			data, err := io.ReadAll(stdin)
			if err != nil {
				res.inputError("stdin", 0, 0, err)
				continue
			}
			docs = append(docs, splitDocuments("stdin", data, res)...)
			continue
		}
		err := filepath.WalkDir(arg, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			ext := strings.ToLower(filepath.Ext(path))
			if d.IsDir() || (path != arg && ext != ".yaml" && ext != ".yml" && ext != ".json") {
				return nil
			}
			data, err := os.ReadFile(path)
			if err != nil {
				res.inputError(path, 0, 0, err)
				return nil
			}
			docs = append(docs, splitDocuments(path, data, res)...)
			return nil
		})
		if err != nil {
			res.inputError(arg, 0, 0, err)
		}
	}
	return docs
}

// splitDocuments splits a file at "---" lines and parses each document.
func splitDocuments(source string, data []byte, res *Result) []*document {
	var docs []*document
	start, index := 1, 1
	var cur [][]byte
	flush := func() {
		text := bytes.Join(cur, []byte("\n"))
		d := &document{source: source, index: index, line: start, text: text}
		if len(bytes.TrimSpace(text)) > 0 {
			var n yamlv3.Node
			if err := yamlv3.Unmarshal(text, &n); err != nil {
				res.inputError(source, index, start, fmt.Errorf("not YAML: %w", err))
			} else if len(n.Content) > 0 {
				d.root = n.Content[0]
			}
		}
		docs = append(docs, d)
	}
	lines := bytes.Split(data, []byte("\n"))
	for i, l := range lines {
		if t := bytes.TrimRight(l, " \t\r"); bytes.Equal(t, []byte("---")) || bytes.HasPrefix(l, []byte("--- ")) {
			if i > 0 {
				flush()
				index++
			}
			cur, start = nil, i+2
			continue
		}
		cur = append(cur, l)
	}
	flush()
	return docs
}

// objectsOf returns the input's objects in order, List items expanded.
func objectsOf(docs []*document, res *Result) []*object {
	var out []*object
	for _, d := range docs {
		if d.root == nil {
			continue
		}
		if d.root.Kind != yamlv3.MappingNode {
			res.inputError(d.source, d.index, d.line, errors.New("not a Kubernetes object (not a mapping)"))
			continue
		}
		if items := childNode(d.root, "items"); items != nil && strings.HasSuffix(scalar(d.root, "kind"), "List") {
			for i, it := range items.Content {
				if o := newObject(d, it, i+1, res); o != nil {
					out = append(out, o)
				}
			}
			continue
		}
		if o := newObject(d, d.root, 0, res); o != nil {
			out = append(out, o)
		}
	}
	return out
}

func newObject(d *document, n *yamlv3.Node, item int, res *Result) *object {
	text, err := yamlv3.Marshal(n)
	if err == nil {
		var js []byte
		if js, err = yaml.YAMLToJSON(text); err == nil {
			var head struct {
				APIVersion string            `json:"apiVersion"`
				Kind       string            `json:"kind"`
				Metadata   metav1.ObjectMeta `json:"metadata"`
			}
			if err = sigsjson.UnmarshalCaseSensitivePreserveInts(js, &head); err == nil {
				gv, gerr := schema.ParseGroupVersion(head.APIVersion)
				switch {
				case head.APIVersion == "" || head.Kind == "":
					err = errors.New("apiVersion and kind are required")
				case gerr != nil:
					err = gerr
				default:
					o := &object{doc: d, node: n, js: js, gvk: gv.WithKind(head.Kind)}
					o.report = ObjectReport{Source: d.source, Document: d.index, Item: item, Line: d.line + n.Line - 1,
						APIVersion: head.APIVersion, Kind: head.Kind, Namespace: head.Metadata.Namespace, Name: head.Metadata.Name}
					return o
				}
			}
		}
	}
	res.inputError(d.source, d.index, d.line+n.Line-1, fmt.Errorf("not a Kubernetes object: %w", err))
	return nil
}

func childNode(n *yamlv3.Node, key string) *yamlv3.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func scalar(n *yamlv3.Node, key string) string {
	if c := childNode(n, key); c != nil && c.Kind == yamlv3.ScalarNode {
		return c.Value
	}
	return ""
}

// judgeInput judges check's input as the cluster would hold it after
// `kubectl apply` of all of it through the webhooks: the Namespaces in the
// input (and --namespace-labels) are the namespaces; every object is
// mutated as a CREATE; the Services, workloads and Prometheus objects as
// stored after enrollment are the cluster state every gate reads. So the
// order of the documents does not matter, and a ServiceMonitor is judged
// against the Services it will select once they are enrolled.
func judgeInput(p *policy.Policy, objs []*object, defaultNS string, nsLabels map[string]map[string]string, asEnforced bool) {
	st := &clusterState{p: p, namespaces: map[string]policy.Namespace{}}
	for _, o := range objs {
		if o.gvk.Group == "" && o.gvk.Kind == "Namespace" {
			st.add(o.gvk, o.js)
			continue
		}
		// Objects without a namespace land in --namespace, as kubectl
		// would put them.
		if o.report.Namespace == "" {
			o.report.Namespace = defaultNS
			o.js = withNamespace(o.js, defaultNS)
		}
	}
	for name, labels := range nsLabels {
		ns := st.namespaces[name]
		ns.Name = name
		if ns.Labels == nil {
			ns.Labels = map[string]string{}
		}
		maps.Copy(ns.Labels, labels)
		st.namespaces[name] = ns
	}
	if asEnforced {
		for name, ns := range st.namespaces {
			delete(ns.Annotations, policy.ModeAnnotation)
			st.namespaces[name] = ns
		}
	}
	// Prometheus and Alertmanager objects are not mutated: they are the
	// state the mutation of monitors, rules and AlertmanagerConfigs reads.
	for _, o := range objs {
		if isLoader(o.gvk) {
			st.add(o.gvk, o.js)
		}
	}
	e := &engine{p: p, namespaces: st.namespaces, cs: st.state(nil)}
	var admitted []*object
	schemaDenied := func(o *object, js []byte) bool {
		errs := validateSchema(o.gvk, js)
		for _, fe := range errs {
			o.report.add(Finding{Level: "deny", Code: "schema", Field: fe.Field, Message: fe.ErrorBody()}, o)
		}
		o.report.Denied = o.report.Denied || len(errs) > 0
		return len(errs) > 0
	}
	for _, o := range objs {
		// The API server decodes a built-in kind into its type before
		// admission, and validates a custom resource against its CRD's
		// schema after the mutating webhooks (which is how a rule's
		// `severity: 1` is coerced instead of refused).
		crd := isCustomResource(o.gvk)
		if !crd && schemaDenied(o, o.js) {
			continue
		}
		if o.gvk.Group == "" && o.gvk.Kind == "Namespace" {
			continue
		}
		ops := e.mutate(o)
		if crd && schemaDenied(o, o.stored) {
			continue
		}
		for _, op := range ops {
			if applyToNode(o.node, op.Path, op.Value) {
				o.doc.dirty = true
			}
		}
		admitted = append(admitted, o)
	}
	for _, o := range admitted {
		if !isLoader(o.gvk) {
			st.add(o.gvk, o.stored)
		}
	}
	e.cs = st.state(nil)
	for _, o := range admitted {
		e.gate(o)
	}
}

func withNamespace(js []byte, ns string) []byte {
	patched, err := jsonpatch.MergePatch(js, fmt.Appendf(nil, `{"metadata":{"namespace":%q}}`, ns))
	if err != nil {
		return js
	}
	return patched
}

// isLoader reports whether gvk is a kind that loads monitors, rules or
// AlertmanagerConfigs: Prometheus, PrometheusAgent, Alertmanager.
func isLoader(gvk schema.GroupVersionKind) bool {
	return gvk.Group == monv1.SchemeGroupVersion.Group && slices.Contains([]string{monv1.PrometheusesKind, monv1alpha1.PrometheusAgentsKind, monv1.AlertmanagersKind}, gvk.Kind)
}
