package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"

	"github.com/promenroll/promenroll/policy"
)

// ResultAPIVersion names the schema of `-o json`. Fields are only ever
// added within a version; codes are stable (see docs/cli.md, "check -o json").
const ResultAPIVersion = "promenroll.io/check/v1"

// Result is what check and audit found: `-o json` prints it as is.
type Result struct {
	APIVersion string         `json:"apiVersion"`
	Policy     PolicyInfo     `json:"policy"`
	Objects    []ObjectReport `json:"objects"`
	// Errors are inputs that could not be checked (exit code 2).
	Errors  []InputError `json:"errors,omitempty"`
	Summary Summary      `json:"summary"`
	// Status: audit --with-prometheus, the monitoring status' results.
	Status []policy.StatusResult `json:"status,omitempty"`
	// Native: audit, the native enrollment policies installed and
	// whether they were compiled from this policy.
	Native *NativeReport `json:"native,omitempty"`
}

// PolicyInfo identifies the policy the objects were judged with.
type PolicyInfo struct {
	Path       string `json:"path"`
	Generation string `json:"generation"`
	Mode       string `json:"mode"`
	// Engine is enrollment.engine; EnrollmentGeneration what native
	// policies compiled from this policy carry.
	Engine               string `json:"engine,omitempty"`
	EnrollmentGeneration string `json:"enrollmentGeneration,omitempty"`
}

// NativeReport is what audit found of native enrollment in the cluster.
type NativeReport struct {
	// Policies are the MutatingAdmissionPolicies labelled as promenroll's
	// native enrollment, with the enrollment generation each carries.
	Policies []NativePolicy `json:"policies"`
	// Problem says what is wrong, if anything: none installed with engine
	// native, some stale, or both engines enrolling.
	Problem string `json:"problem,omitempty"`
}

// NativePolicy is one installed native enrollment policy.
type NativePolicy struct {
	Name                 string `json:"name"`
	EnrollmentGeneration string `json:"enrollmentGeneration"`
	Current              bool   `json:"current"`
}

// ObjectReport is one object: where it is, the labels and annotations the
// webhook would add, and what it would say.
type ObjectReport struct {
	// Source is the file (or "stdin"; in audit, "cluster"), Document the
	// 1-based YAML document in it, Item the 1-based item of a List (0:
	// the document itself), Line the object's first line.
	Source     string `json:"source"`
	Document   int    `json:"document,omitempty"`
	Item       int    `json:"item,omitempty"`
	Line       int    `json:"line,omitempty"`
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
	// Labels the webhook would add (labels and annotations).
	Labels []Change `json:"labels,omitempty"`
	// Findings of the schema, the webhook's warnings and the gates.
	Findings []Finding `json:"findings,omitempty"`
	// Denied: the API server or the webhook would refuse the object.
	Denied bool `json:"denied"`
	// Mode is the gate's effective mode, when a gate judged the object.
	Mode string `json:"mode,omitempty"`
	// NotChecked says why a gate did not look (e.g. a namespace the
	// policy excludes).
	NotChecked string `json:"notChecked,omitempty"`
	// Skipped says which checks did not run and why (audit -n: a monitor
	// that selects in namespaces that were not read).
	Skipped []string `json:"skipped,omitempty"`
	// Checked counts what a gate checked: rules, or a monitor's
	// endpoints (CheckedWhat names which).
	Checked     int    `json:"checked,omitempty"`
	CheckedWhat string `json:"checkedWhat,omitempty"`
}

// Change is one label or annotation the webhook would add.
type Change struct {
	// Field is where: metadata.labels, spec.template.metadata.labels,
	// metadata.annotations, ...
	Field string `json:"field"`
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Finding is one problem. Level is deny or warn. Code is stable: schema
// (the API server's validation), admission-warning (a warning the
// mutating webhook returns), mutate, decode, or the gate's check name (the
// `check` label of promenroll_gate_findings_total, e.g. promql, relabel,
// scrapeTimeout, unselected).
type Finding struct {
	Level   string `json:"level"`
	Code    string `json:"code"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
	// Line of the field in the source file, when it can be found.
	Line int `json:"line,omitempty"`
}

// InputError is a file or document that could not be checked.
type InputError struct {
	Source   string `json:"source"`
	Document int    `json:"document,omitempty"`
	Line     int    `json:"line,omitempty"`
	Message  string `json:"message"`
}

// Summary counts the objects.
type Summary struct {
	Objects  int `json:"objects"`
	Denied   int `json:"denied"`
	Warned   int `json:"warned"`
	Labelled int `json:"labelled"`
	Errors   int `json:"errors"`
}

func (res *Result) inputError(source string, doc, line int, err error) {
	res.Errors = append(res.Errors, InputError{Source: source, Document: doc, Line: line, Message: err.Error()})
}

func (res *Result) summarize() {
	res.Summary = Summary{Objects: len(res.Objects), Errors: len(res.Errors)}
	for _, o := range res.Objects {
		if o.Denied {
			res.Summary.Denied++
		}
		if slices.ContainsFunc(o.Findings, func(f Finding) bool { return f.Level == "warn" }) {
			res.Summary.Warned++
		}
		if len(o.Labels) > 0 {
			res.Summary.Labelled++
		}
	}
}

// add records a finding with the line of its field.
func (r *ObjectReport) add(f Finding, o *object) {
	if o != nil && f.Field != "" {
		if l := policy.FieldLine(o.node, f.Field); l > 0 {
			f.Line = o.doc.line + l - 1
		}
	}
	if f.Line == 0 {
		f.Line = r.Line
	}
	r.Findings = append(r.Findings, f)
}

func (r ObjectReport) id() string {
	name := r.Name
	if r.Namespace != "" {
		name = r.Namespace + "/" + r.Name
	}
	return fmt.Sprintf("%s %s", r.Kind, name)
}

func (r ObjectReport) where() string {
	switch {
	case r.Document == 0:
		return r.Source
	case r.Item > 0:
		return fmt.Sprintf("%s#%d[%d]", r.Source, r.Document, r.Item)
	}
	return fmt.Sprintf("%s#%d", r.Source, r.Document)
}

func (f Finding) text() string {
	if f.Field != "" {
		return f.Field + ": " + f.Message
	}
	return f.Message
}

// writeText prints one line per finding and change, `path#doc kind
// ns/name: message`, then a summary. quiet leaves out the objects with
// nothing to say.
func writeText(w io.Writer, res *Result, quiet bool) {
	for _, e := range res.Errors {
		where := e.Source
		if e.Document > 0 {
			where = fmt.Sprintf("%s#%d", e.Source, e.Document)
		}
		fmt.Fprintf(w, "%s: error: %s\n", where, e.Message)
	}
	for _, o := range res.Objects {
		head := fmt.Sprintf("%s %s", o.where(), o.id())
		for _, f := range o.Findings {
			prefix := ""
			if f.Level == "warn" {
				prefix = "warning: "
			} else if !o.Denied {
				prefix = "would be denied in enforce mode: "
			}
			fmt.Fprintf(w, "%s: %s%s\n", head, prefix, f.text())
		}
		if len(o.Labels) > 0 {
			var parts []string
			for _, c := range o.Labels {
				parts = append(parts, fmt.Sprintf("%s %s=%s", c.Field, c.Key, c.Value))
			}
			fmt.Fprintf(w, "%s: would add %s\n", head, strings.Join(parts, ", "))
		}
		denies := slices.ContainsFunc(o.Findings, func(f Finding) bool { return f.Level == "deny" })
		switch {
		case quiet:
		case o.NotChecked != "":
			fmt.Fprintf(w, "%s: not checked: %s\n", head, o.NotChecked)
		case o.CheckedWhat != "" && !denies:
			fmt.Fprintf(w, "%s: %d %s valid\n", head, o.Checked, o.CheckedWhat)
		case len(o.Findings) == 0 && len(o.Labels) == 0:
			fmt.Fprintf(w, "%s: ok\n", head)
		}
	}
	s := res.Summary
	fmt.Fprintf(w, "check: %d objects: %d would be denied, %d with warnings, %d would be labelled; %d input errors (policy %s, generation %s, mode %s)\n",
		s.Objects, s.Denied, s.Warned, s.Labelled, s.Errors, res.Policy.Path, res.Policy.Generation, res.Policy.Mode)
}

func writeJSON(w io.Writer, res *Result) error {
	if res.Objects == nil {
		res.Objects = []ObjectReport{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

// writeGitHub prints GitHub Actions workflow commands: an error or
// warning annotation per finding, on the field's line.
func writeGitHub(w io.Writer, res *Result) {
	for _, e := range res.Errors {
		fmt.Fprintf(w, "::error file=%s,line=%d,title=promenroll::%s\n", ghProperty(e.Source), max(e.Line, 1), ghData(e.Message))
	}
	for _, o := range res.Objects {
		for _, f := range o.Findings {
			level := "warning"
			if f.Level == "deny" && o.Denied {
				level = "error"
			}
			fmt.Fprintf(w, "::%s file=%s,line=%d,title=%s::%s\n", level, ghProperty(o.Source), max(f.Line, 1),
				ghProperty("promenroll "+f.Code), ghData(o.id()+": "+f.text()))
		}
		if len(o.Labels) > 0 {
			var parts []string
			for _, c := range o.Labels {
				parts = append(parts, fmt.Sprintf("%s %s=%s", c.Field, c.Key, c.Value))
			}
			fmt.Fprintf(w, "::notice file=%s,line=%d,title=promenroll enrollment::%s\n", ghProperty(o.Source), max(o.Line, 1), ghData(o.id()+": the webhook would add "+strings.Join(parts, ", ")))
		}
	}
	s := res.Summary
	fmt.Fprintf(w, "check: %d objects: %d would be denied, %d with warnings, %d would be labelled; %d input errors\n", s.Objects, s.Denied, s.Warned, s.Labelled, s.Errors)
}

// ghData and ghProperty escape workflow command data and properties.
func ghData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

func ghProperty(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C").Replace(s)
}

// writeYAML prints the input documents in order, those the webhook would
// change re-encoded with its changes, the others byte for byte.
func writeYAML(w io.Writer, docs []*document) error {
	for i, d := range docs {
		if i > 0 {
			if _, err := io.WriteString(w, "---\n"); err != nil {
				return err
			}
		}
		text := d.text
		if d.dirty {
			var b strings.Builder
			enc := yamlv3.NewEncoder(&b)
			enc.SetIndent(2)
			if err := enc.Encode(d.root); err != nil {
				return fmt.Errorf("%s#%d: %w", d.source, d.index, err)
			}
			text = []byte(b.String())
		}
		if _, err := w.Write(text); err != nil {
			return err
		}
		if len(text) > 0 && text[len(text)-1] != '\n' {
			if _, err := io.WriteString(w, "\n"); err != nil {
				return err
			}
		}
	}
	return nil
}

// labelChanges turns a JSON Patch operation of the webhook (an add under
// labels or annotations, or of a whole labels map) into changes.
func labelChanges(path string, value any) []Change {
	segs := pointerSegments(path)
	if len(segs) == 0 {
		return nil
	}
	last := segs[len(segs)-1]
	if m, ok := value.(map[string]any); ok {
		var out []Change
		for _, k := range slices.Sorted(maps.Keys(m)) {
			out = append(out, Change{Field: strings.Join(segs, "."), Key: k, Value: fmt.Sprint(m[k])})
		}
		return out
	}
	return []Change{{Field: strings.Join(segs[:len(segs)-1], "."), Key: last, Value: fmt.Sprint(value)}}
}

// pointerSegments splits an RFC 6901 JSON pointer.
func pointerSegments(p string) []string {
	if p == "" || p == "/" {
		return nil
	}
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, s := range parts {
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~")
	}
	return parts
}

// applyToNode applies an add (or replace) of the webhook's patch to the
// YAML node tree, creating mappings on the way; it reports whether n
// changed. Only what the webhook writes occurs: strings and maps of them.
func applyToNode(n *yamlv3.Node, path string, value any) bool {
	segs := pointerSegments(path)
	if len(segs) == 0 || n.Kind != yamlv3.MappingNode {
		return false
	}
	for _, seg := range segs[:len(segs)-1] {
		next := childNode(n, seg)
		if next == nil || next.Kind != yamlv3.MappingNode {
			m := &yamlv3.Node{Kind: yamlv3.MappingNode, Tag: "!!map"}
			setKey(n, seg, m)
			next = m
		}
		n = next
	}
	setKey(n, segs[len(segs)-1], valueNode(value))
	return true
}

func setKey(n *yamlv3.Node, key string, v *yamlv3.Node) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			n.Content[i+1] = v
			return
		}
	}
	n.Content = append(n.Content, &yamlv3.Node{Kind: yamlv3.ScalarNode, Tag: "!!str", Value: key}, v)
}

func valueNode(v any) *yamlv3.Node {
	if m, ok := v.(map[string]any); ok {
		n := &yamlv3.Node{Kind: yamlv3.MappingNode, Tag: "!!map"}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			setKey(n, k, valueNode(m[k]))
		}
		return n
	}
	return &yamlv3.Node{Kind: yamlv3.ScalarNode, Tag: "!!str", Value: fmt.Sprint(v)}
}
