package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"
)

// Native enrollment: the policy's enroll rules compiled into
// MutatingAdmissionPolicies (admissionregistration.k8s.io/v1, GA in
// Kubernetes 1.36) that the API server applies in-process, so enrollment
// needs no call to promenroll. One policy per pod template path (the
// Services, the kinds with spec.template, CronJobs, each declared path),
// whatever the number of rules: every rule is a CEL condition inside it,
// and each label key one patch whose value is the first matching rule's,
// as the webhook's planner decides.

// NativeFieldManager names what the generated objects belong to.
const NativeFieldManager = "promenroll"

// nativeKind is one enrolled kind as the native policies match it.
type nativeKind struct {
	// name is how enroll rules name it.
	name       string
	gvk        schema.GroupVersionKind
	resource   string
	template   []string
	updateAdds bool
}

// builtinResources are the built-in enrolled kinds' versions and resources.
var builtinResources = map[schema.GroupKind]struct{ version, resource string }{
	{Group: groupApps, Kind: "Deployment"}:  {"v1", "deployments"},
	{Group: groupApps, Kind: "StatefulSet"}: {"v1", "statefulsets"},
	{Group: groupApps, Kind: "DaemonSet"}:   {"v1", "daemonsets"},
	{Group: groupBatch, Kind: "Job"}:        {"v1", "jobs"},
	{Group: groupBatch, Kind: "CronJob"}:    {"v1", "cronjobs"},
	{Group: groupCore, Kind: "Service"}:     {"v1", "services"},
}

// nativeKinds lists the kinds enroll rules can name, built in then
// declared.
func (p *Policy) nativeKinds() []nativeKind {
	var out []nativeKind
	for _, gk := range sortedKinds(mutations) {
		m := mutations[gk]
		if !m.enrolled {
			continue
		}
		r := builtinResources[gk]
		k := nativeKind{name: gk.Kind, gvk: gk.WithVersion(r.version), resource: r.resource}
		if m.template != nil {
			k.template, k.updateAdds = m.template.path, m.template.updateAdds
		}
		out = append(out, k)
	}
	for _, d := range p.declared {
		m := p.declaredTable[d.GroupKind()]
		out = append(out, nativeKind{name: d.Name, gvk: d.GroupVersionKind, resource: d.Resource, template: m.template.path, updateAdds: m.template.updateAdds})
	}
	return out
}

// NativeOptions are what the generated objects need beyond the policy.
type NativeOptions struct {
	// Name prefixes every object's name (promenroll).
	Name string
	// NoWarnings leaves the warnings' ValidatingAdmissionPolicies out:
	// they cost the API server more than the mutations do
	// (BENCHMARKS.md).
	NoWarnings bool
}

// The chart's native-enrollment template replaces these, in `promenroll
// compile --chart` output, with the release's fullname and namespace.
const (
	ChartNameToken      = "promenroll-chart-fullname"
	ChartNamespaceToken = "promenroll-chart-namespace"
)

// MaxNativeRules is the most enroll rules native enrollment compiles. The
// API server's compile of a policy grows faster than its rules (measured
// on kube-apiserver 1.37.2, 2 cores: 25 rules 6.3 s, 50 rules 20 s, 100
// rules 48 s, and a timeout under load): past this, creating the policies
// risks the API server's request timeout.
const MaxNativeRules = 32

// tooManyNativeRules says why a policy of n enroll rules is not compiled.
func tooManyNativeRules(n int) string {
	return fmt.Sprintf("native enrollment compiles at most %d enroll rules, the policy has %d: the API server's compile of its admission policies grows faster than their rules (50 rules took 20 s, 100 rules 48 s, past its request timeout under load); merge rules that add the same labels, or keep enrollment on the webhook engine", MaxNativeRules, n)
}

// Engine is what applies the enroll rules.
func (p *Policy) Engine() Engine { return p.Source.Enrollment.Engine }

// NativePolicies compiles the enroll rules into MutatingAdmissionPolicies
// and their bindings, in a stable order and with stable contents: the same
// policy gives the same objects, so GitOps sees no diff. It refuses a
// policy of more than MaxNativeRules rules, saying why.
func (p *Policy) NativePolicies(opts NativeOptions) ([]any, error) {
	if opts.Name == "" {
		opts.Name = "promenroll"
	}
	if n := len(p.enroll); n > MaxNativeRules {
		return nil, errors.New(tooManyNativeRules(n))
	}
	groups := map[string][]nativeKind{}
	for _, k := range p.nativeKinds() {
		path := strings.Join(k.template, ".")
		groups[path] = append(groups[path], k)
	}
	var out []any
	for _, path := range slices.Sorted(maps.Keys(groups)) {
		kinds := groups[path]
		var used []nativeKind
		for _, k := range kinds {
			if slices.ContainsFunc(p.enroll, func(r enrollRule) bool { _, ok := r.kinds[k.name]; return ok }) {
				used = append(used, k)
			}
		}
		if len(used) == 0 {
			continue
		}
		name := opts.Name + "-enroll-" + nativeSlug(path)
		mp, c := p.nativePolicy(name, used)
		out = append(out, mp, &admissionregistrationv1.MutatingAdmissionPolicyBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: admissionregistrationv1.SchemeGroupVersion.String(), Kind: "MutatingAdmissionPolicyBinding"},
			ObjectMeta: p.nativeMeta(name),
			Spec:       admissionregistrationv1.MutatingAdmissionPolicyBindingSpec{PolicyName: name},
		})
		if !opts.NoWarnings {
			out = append(out, p.nativeValidatingPolicies(name, c, mp.Spec.MatchConstraints)...)
		}
	}
	if err := p.checkNativeLimits(out); err != nil {
		return nil, err
	}
	return out, nil
}

// The API server's limits on what native enrollment generates: CEL's
// parser refuses an expression over 100,000 code points, and etcd an
// object over 1.5 MiB (1 MiB leaves room for managed fields).
const (
	maxExpressionCodePoints = 100000
	maxNativeObjectBytes    = 1 << 20
)

var ruleVariableRE = regexp.MustCompile(`^(?:old)?[rR]ule(\d+)$`)

// checkNativeLimits refuses generated objects the API server would refuse,
// naming the rule when one rule's selectors are the cause (a selector of
// thousands of values), so the refusal comes from compile, not from
// kubectl apply.
func (p *Policy) checkNativeLimits(objs []any) error {
	for _, o := range objs {
		var name string
		var exprs []admissionregistrationv1.Variable // name: where, Expression: what
		switch o := o.(type) {
		case *admissionregistrationv1.MutatingAdmissionPolicy:
			name = o.Name
			exprs = append(exprs, o.Spec.Variables...)
			for i, m := range o.Spec.Mutations {
				exprs = append(exprs, admissionregistrationv1.Variable{Name: fmt.Sprintf("mutation %d", i), Expression: m.JSONPatch.Expression})
			}
		case *admissionregistrationv1.ValidatingAdmissionPolicy:
			name = o.Name
			exprs = append(exprs, o.Spec.Variables...)
			for i, v := range o.Spec.Validations {
				exprs = append(exprs, admissionregistrationv1.Variable{Name: fmt.Sprintf("validation %d", i), Expression: v.Expression},
					admissionregistrationv1.Variable{Name: fmt.Sprintf("validation %d's message", i), Expression: v.MessageExpression})
			}
		default:
			continue
		}
		for _, e := range exprs {
			n := utf8.RuneCountInString(e.Expression)
			if n <= maxExpressionCodePoints {
				continue
			}
			if m := ruleVariableRE.FindStringSubmatch(e.Name); m != nil {
				i, _ := strconv.Atoi(m[1])
				return fmt.Errorf("enroll[%d] (%s): its kinds and selectors compile to a CEL expression of %d code points, over the API server's limit of %d: shorten its selectors (fewer values; a label both sides share instead of a list), or keep enrollment on the webhook engine", i, p.enroll[i].name, n, maxExpressionCodePoints)
			}
			return fmt.Errorf("%s: %s compiles to a CEL expression of %d code points, over the API server's limit of %d: the policy's rules set too many keys for native enrollment; keep it on the webhook engine", name, e.Name, n, maxExpressionCodePoints)
		}
		if b, err := json.Marshal(o); err != nil {
			return err
		} else if len(b) > maxNativeObjectBytes {
			return fmt.Errorf("%s: %d bytes, over the %d an API server stores well: the policy's selectors and keys are too many for native enrollment; keep it on the webhook engine", name, len(b), maxNativeObjectBytes)
		}
	}
	return nil
}

// NativeYAML is NativePolicies as multi-document YAML, headed by the
// policy generation it was compiled from: what `promenroll compile`
// prints, and what deploy/components/native-enrollment ships.
func (p *Policy) NativeYAML(opts NativeOptions) ([]byte, error) {
	objs, err := p.NativePolicies(opts)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Generated by `promenroll compile` from policy generation %s, enrollment generation %s: do not edit.\n", p.Generation, p.EnrollmentGeneration)
	for _, o := range objs {
		doc, err := yaml.Marshal(o)
		if err != nil {
			return nil, err
		}
		b.WriteString("---\n")
		b.Write(bytes.ReplaceAll(doc, []byte("  creationTimestamp: null\n"), nil))
	}
	return b.Bytes(), nil
}

// EnrollmentGenerationAnnotation, on every generated object, names the
// enrollment generation it was compiled from, so audit tells a stale
// native policy from a current one.
const EnrollmentGenerationAnnotation = "promenroll.io/enrollment-generation"

func (p *Policy) nativeMeta(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Labels: nativeLabels, Annotations: map[string]string{EnrollmentGenerationAnnotation: p.EnrollmentGeneration}}
}

// nativeLabels mark the generated objects.
var nativeLabels = map[string]string{"app.kubernetes.io/managed-by": NativeFieldManager, "app.kubernetes.io/component": "native-enrollment"}

// nativeSlug names a template path's policy: services for none.
func nativeSlug(path string) string {
	if path == "" {
		return "services"
	}
	return strings.ToLower(strings.ReplaceAll(path, ".", "-"))
}

// nativePolicy is the policy of kinds that share a pod template path, and
// the compiler that wrote it.
func (p *Policy) nativePolicy(name string, kinds []nativeKind) (*admissionregistrationv1.MutatingAdmissionPolicy, *nativeCompiler) {
	fail := admissionregistrationv1.Ignore
	var rules []admissionregistrationv1.NamedRuleWithOperations
	byGV := map[schema.GroupVersion][]string{}
	for _, k := range kinds {
		gv := k.gvk.GroupVersion()
		byGV[gv] = append(byGV[gv], k.resource)
	}
	for _, gv := range slices.SortedFunc(maps.Keys(byGV), func(a, b schema.GroupVersion) int { return strings.Compare(a.String(), b.String()) }) {
		rules = append(rules, admissionregistrationv1.NamedRuleWithOperations{RuleWithOperations: admissionregistrationv1.RuleWithOperations{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
			Rule:       admissionregistrationv1.Rule{APIGroups: []string{gv.Group}, APIVersions: []string{gv.Version}, Resources: slices.Sorted(slices.Values(byGV[gv]))},
		}})
	}
	excluded := slices.Sorted(maps.Keys(p.excluded))
	c := &nativeCompiler{p: p, kinds: kinds, template: kinds[0].template, updateAdds: kinds[0].updateAdds}
	mutations, added := c.mutations()
	return &admissionregistrationv1.MutatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: admissionregistrationv1.SchemeGroupVersion.String(), Kind: "MutatingAdmissionPolicy"},
		ObjectMeta: p.nativeMeta(name),
		Spec: admissionregistrationv1.MutatingAdmissionPolicySpec{
			MatchConstraints: &admissionregistrationv1.MatchResources{
				ResourceRules: rules,
				NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: excluded},
					{Key: OptOutLabel, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"false"}},
				}},
				ObjectSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: OptOutLabel, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"false"}},
				}},
			},
			Variables:          append(c.variables(), added...),
			Mutations:          mutations,
			FailurePolicy:      &fail,
			ReinvocationPolicy: admissionregistrationv1.IfNeededReinvocationPolicy,
		},
	}, c
}

// nativeCompiler writes the CEL of one policy.
type nativeCompiler struct {
	p          *Policy
	kinds      []nativeKind
	template   []string
	updateAdds bool
}

// celString is s as a CEL string literal.
func celString(s string) string { return strconv.Quote(s) }

// celStrings is ss as a CEL list of strings.
func celStrings(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = celString(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// optionalPath is the CEL of root's field path with optional selection,
// defaulting to an empty map.
func optionalPath(root string, path ...string) string {
	var b strings.Builder
	b.WriteString(root)
	for _, p := range path {
		b.WriteString(".?" + p)
	}
	b.WriteString(".orValue({})")
	return b.String()
}

func (c *nativeCompiler) templateVar(of, field string) string {
	return optionalPath(of, append(slices.Clone(c.template), "metadata", field)...)
}

// The policy's variables.
func (c *nativeCompiler) variables() []admissionregistrationv1.Variable {
	vars := []admissionregistrationv1.Variable{
		{Name: "labels", Expression: optionalPath("object", "metadata", "labels")},
		{Name: "nsLabels", Expression: optionalPath("namespaceObject", "metadata", "labels")},
		{Name: "dryRunNamespace", Expression: `namespaceObject.metadata.?annotations[?` + celString(ModeAnnotation) + `].orValue("") == "dry-run"`},
		{Name: "update", Expression: `request.operation == "UPDATE" && oldObject != null`},
		{Name: "oldLabels", Expression: `variables.update ? ` + optionalPath("oldObject", "metadata", "labels") + ` : {}`},
	}
	if c.template == nil {
		vars = append(vars,
			admissionregistrationv1.Variable{Name: "annotations", Expression: optionalPath("object", "metadata", "annotations")},
			admissionregistrationv1.Variable{Name: "oldAnnotations", Expression: `variables.update ? ` + optionalPath("oldObject", "metadata", "annotations") + ` : {}`})
	} else {
		has := "object"
		for _, p := range c.template {
			has += ".?" + p
		}
		vars = append(vars,
			admissionregistrationv1.Variable{Name: "hasTemplate", Expression: has + ".hasValue()"},
			admissionregistrationv1.Variable{Name: "templateLabels", Expression: c.templateVar("object", "labels")},
			admissionregistrationv1.Variable{Name: "templateAnnotations", Expression: c.templateVar("object", "annotations")},
			admissionregistrationv1.Variable{Name: "oldTemplateLabels", Expression: `variables.update ? ` + c.templateVar("oldObject", "labels") + ` : {}`},
			admissionregistrationv1.Variable{Name: "oldTemplateAnnotations", Expression: `variables.update ? ` + c.templateVar("oldObject", "annotations") + ` : {}`})
	}
	for i := range c.p.enroll {
		r := &c.p.enroll[i]
		kinds := c.ruleKinds(r)
		if kinds == "" {
			continue
		}
		src := c.p.Source.Enroll[i]
		match := kinds + " && " + selectorCEL(src.NamespaceSelector, "variables.nsLabels")
		vars = append(vars,
			admissionregistrationv1.Variable{Name: fmt.Sprintf("rule%d", i), Expression: match + " && " + selectorCEL(src.Selector, "variables.labels")},
			admissionregistrationv1.Variable{Name: fmt.Sprintf("oldRule%d", i), Expression: "variables.update && " + match + " && " + selectorCEL(src.Selector, "variables.oldLabels")})
	}
	return vars
}

// ruleKinds is the CEL that the request is of one of r's kinds among this
// policy's, or "" when r names none of them.
func (c *nativeCompiler) ruleKinds(r *enrollRule) string {
	var conds []string
	for _, k := range c.kinds {
		if _, ok := r.kinds[k.name]; ok {
			conds = append(conds, fmt.Sprintf("(request.kind.group == %s && request.kind.kind == %s)", celString(k.gvk.Group), celString(k.gvk.Kind)))
		}
	}
	if len(conds) == 0 {
		return ""
	}
	return "(" + strings.Join(conds, " || ") + ")"
}

// selectorCEL is a label selector over the labels map m, with the
// API server's semantics: nil or empty selects everything.
func selectorCEL(sel *metav1.LabelSelector, m string) string {
	if sel == nil {
		return "true"
	}
	var conds []string
	for _, k := range slices.Sorted(maps.Keys(sel.MatchLabels)) {
		conds = append(conds, fmt.Sprintf("(%s in %s && %s[%s] == %s)", celString(k), m, m, celString(k), celString(sel.MatchLabels[k])))
	}
	for _, e := range sel.MatchExpressions {
		k := celString(e.Key)
		switch e.Operator {
		case metav1.LabelSelectorOpIn:
			conds = append(conds, fmt.Sprintf("(%s in %s && %s[%s] in %s)", k, m, m, k, celStrings(e.Values)))
		case metav1.LabelSelectorOpNotIn:
			conds = append(conds, fmt.Sprintf("(!(%s in %s) || !(%s[%s] in %s))", k, m, m, k, celStrings(e.Values)))
		case metav1.LabelSelectorOpExists:
			conds = append(conds, fmt.Sprintf("(%s in %s)", k, m))
		case metav1.LabelSelectorOpDoesNotExist:
			conds = append(conds, fmt.Sprintf("!(%s in %s)", k, m))
		}
	}
	if len(conds) == 0 {
		return "true"
	}
	return strings.Join(conds, " && ")
}

// valueCEL is a label value template as CEL over the object old or new
// (labels: the labels variable to read {label:K} from), with the condition
// under which it expands to a valid label value, as expand decides.
func valueCEL(t valueTemplate, object, labels string) (value, ok string) {
	if t.static() {
		return celString(t.raw), "true"
	}
	var parts, conds []string
	for _, p := range t.parts {
		switch p.kind {
		case partLiteral:
			parts = append(parts, celString(p.text))
		case partName:
			parts = append(parts, object+`.metadata.?name.orValue("")`)
			conds = append(conds, object+`.metadata.?name.orValue("") != ""`)
		case partNamespace:
			parts = append(parts, "namespaceObject.metadata.name")
		case partLabel:
			parts = append(parts, fmt.Sprintf("%s[%s]", labels, celString(p.text)))
			conds = append(conds, fmt.Sprintf("%s in %s", celString(p.text), labels))
		case partNamespaceLabel:
			parts = append(parts, fmt.Sprintf("variables.nsLabels[%s]", celString(p.text)))
			conds = append(conds, fmt.Sprintf("%s in variables.nsLabels", celString(p.text)))
		}
	}
	value = strings.Join(parts, " + ")
	// The value is valid only once its sources exist: && short-circuits.
	conds = append(conds, fmt.Sprintf(`size(%s) <= 63 && (%s).matches(%s)`, value, value, celString(`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`)))
	return value, strings.Join(conds, " && ")
}

// target is one place the policy writes to.
type nativeTarget struct {
	t Target
	// path is its JSON pointer; current and old the variables holding
	// the map now and in the stored object.
	path          []string
	current, old  string
	templates     func(r *enrollRule) []labelTemplate
	createOnly    bool
	needsTemplate bool
}

func (c *nativeCompiler) targets() []nativeTarget {
	meta := nativeTarget{t: MetadataLabels, path: []string{"metadata", "labels"}, current: "variables.labels", old: "variables.oldLabels",
		templates: func(r *enrollRule) []labelTemplate { return r.labels }}
	if c.template == nil {
		return []nativeTarget{meta, {t: MetadataAnnotations, path: []string{"metadata", "annotations"}, current: "variables.annotations", old: "variables.oldAnnotations",
			templates: func(r *enrollRule) []labelTemplate { return r.annotations }}}
	}
	tmpl := func(field string) []string { return append(append(slices.Clone(c.template), "metadata"), field) }
	return []nativeTarget{meta,
		{t: PodTemplateLabels, path: tmpl("labels"), current: "variables.templateLabels", old: "variables.oldTemplateLabels",
			templates: func(r *enrollRule) []labelTemplate { return r.podTemplateLabels }, createOnly: !c.updateAdds, needsTemplate: true},
		{t: PodTemplateAnnotations, path: tmpl("annotations"), current: "variables.templateAnnotations", old: "variables.oldTemplateAnnotations",
			templates: func(r *enrollRule) []labelTemplate { return r.annotations }, createOnly: !c.updateAdds, needsTemplate: true},
	}
}

// jsonPointer is path as an RFC 6901 pointer.
func jsonPointer(path ...string) string {
	var b strings.Builder
	for _, p := range path {
		b.WriteString("/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(p))
	}
	return b.String()
}

// mutations are one JSON patch per target: for each key some rule sets
// there, the first matching rule's valid value (a dry-run rule, or a
// dry-run namespace, takes the key and writes nothing, as the webhook's
// dry-run plans it), then the stored object's value put back on UPDATE
// (sticky), unless the object has the key already.
func (c *nativeCompiler) mutations() (muts []admissionregistrationv1.Mutation, added []admissionregistrationv1.Variable) {
	patch := func(path []string) string {
		return fmt.Sprintf(`JSONPatch{op: "add", path: %s, value: {}}`, celString(jsonPointer(path...)))
	}
	// Keys are grouped by the rules that set them, and a group is
	// evaluated only when one of its rules matches the object (or the
	// stored one): a request pays for the rules that select it, not for
	// every key of the policy (with 20 rules, the per-key checks were a
	// quarter of the API server's CPU).
	type group struct {
		rules []int
		ops   []string
	}
	var groups []*group
	byRules := map[string]*group{}
	var parents []string
	for _, tg := range c.targets() {
		keys := c.keyRules(tg)
		if len(keys) == 0 {
			continue
		}
		for _, key := range slices.Sorted(maps.Keys(keys)) {
			id := fmt.Sprint(keys[key])
			g, ok := byRules[id]
			if !ok {
				g = &group{rules: keys[key]}
				byRules[id] = g
				groups = append(groups, g)
			}
			g.ops = append(g.ops, c.keyOp(tg, key))
		}
		// Create the map (and a template's metadata) when missing, before
		// the keys.
		if tg.needsTemplate {
			meta := tg.path[:len(tg.path)-1]
			if p := fmt.Sprintf(`(%s ? [] : [%s])`, hasPath("object", meta...), patch(meta)); !slices.Contains(parents, p) {
				parents = append(parents, p)
			}
		}
		parents = append(parents, fmt.Sprintf(`(%s ? [] : [%s])`, hasPath("object", tg.path...), patch(tg.path)))
	}
	var ops []string
	for _, g := range groups {
		var matched []string
		for _, i := range g.rules {
			matched = append(matched, fmt.Sprintf("variables.rule%d || variables.oldRule%d", i, i))
		}
		for _, chunk := range chunkOps(g.ops, maxExpression/2) {
			ops = append(ops, fmt.Sprintf("(%s ? %s : [])", strings.Join(matched, " || "), strings.Join(chunk, " + ")))
		}
	}
	if len(ops) == 0 {
		return nil, nil
	}
	// One variable lists every key to add (path and value), and one
	// mutation patches when it is not empty, creating the maps first where
	// missing (an empty map is dropped when the object is stored): one
	// patch per request, as a hand-written policy makes. The API server
	// refuses an expression over 100,000 code points: keys are split
	// across variables and mutations, each mutation seeing the object as
	// the ones before left it.
	for _, chunk := range chunkOps(ops, maxExpression) {
		name := fmt.Sprintf("add%d", len(added))
		added = append(added, admissionregistrationv1.Variable{Name: name, Expression: strings.Join(chunk, " + ")})
		expr := fmt.Sprintf(`size(variables.%s) == 0 ? [] : %s + variables.%s.map(k, JSONPatch{op: "add", path: string(k.path), value: k.value})`, name, strings.Join(parents, " + "), name)
		muts = append(muts, admissionregistrationv1.Mutation{PatchType: admissionregistrationv1.PatchTypeJSONPatch, JSONPatch: &admissionregistrationv1.JSONPatch{Expression: expr}})
	}
	return muts, added
}

// maxExpression keeps a mutation's expression under the API server's limit
// of 100,000 code points (CEL's default), with room to spare.
const maxExpression = 90000

// chunkOps splits ops into runs whose joined length stays under max.
func chunkOps(ops []string, max int) [][]string {
	var out [][]string
	var cur []string
	size := 0
	for _, op := range ops {
		if len(cur) > 0 && size+len(op)+3 > max {
			out = append(out, cur)
			cur, size = nil, 0
		}
		cur = append(cur, op)
		size += len(op) + 3
	}
	return append(out, cur)
}

// hasPath is the CEL that root has the field path.
func hasPath(root string, path ...string) string {
	expr := root
	for _, p := range path {
		expr += ".?" + p
	}
	return expr + ".hasValue()"
}

// keyRules are the keys some rule of this policy's kinds sets in tg, each
// with those rules' indexes, in policy order.
func (c *nativeCompiler) keyRules(tg nativeTarget) map[string][]int {
	keys := map[string][]int{}
	for i := range c.p.enroll {
		if c.ruleKinds(&c.p.enroll[i]) == "" {
			continue
		}
		for _, lt := range tg.templates(&c.p.enroll[i]) {
			if !slices.Contains(keys[lt.key], i) {
				keys[lt.key] = append(keys[lt.key], i)
			}
		}
	}
	return keys
}

// setter is one rule that sets a key of a target.
type setter struct {
	i  int
	r  *enrollRule
	lt labelTemplate
}

// setters are the rules that set key in tg, in policy order.
func (c *nativeCompiler) setters(tg nativeTarget, key string) []setter {
	var out []setter
	for i := range c.p.enroll {
		r := &c.p.enroll[i]
		if c.ruleKinds(r) == "" {
			continue
		}
		for _, lt := range tg.templates(r) {
			if lt.key == key {
				out = append(out, setter{i, r, lt})
			}
		}
	}
	return out
}

// guard is the CEL that rule i applies to tg in this request (old: to the
// stored object, for sticky keys): it selects the object, and a pod
// template target exists and is written on this operation.
func (c *nativeCompiler) guard(tg nativeTarget, i int, old bool) string {
	var g []string
	if old {
		g = append(g, fmt.Sprintf("variables.oldRule%d", i))
	} else {
		g = append(g, fmt.Sprintf("variables.rule%d", i))
	}
	if tg.needsTemplate {
		g = append(g, "variables.hasTemplate")
		if tg.createOnly && !old {
			g = append(g, `request.operation == "CREATE"`)
		}
	}
	return strings.Join(g, " && ")
}

// keyOp is the CEL list (empty or one patch) for one key of a target.
func (c *nativeCompiler) keyOp(tg nativeTarget, key string) string {
	ptr := celString(jsonPointer(append(slices.Clone(tg.path), key)...))
	op := func(value string) string {
		return fmt.Sprintf(`[{"path": %s, "value": string(%s)}]`, ptr, value)
	}
	write := func(r *enrollRule, value string) string {
		if r.mode == ModeDryRun {
			return "[]"
		}
		return fmt.Sprintf("(variables.dryRunNamespace ? [] : %s)", op(value))
	}
	setters := c.setters(tg, key)
	var arms []string
	for _, s := range setters {
		v, ok := valueCEL(s.lt.value, "object", "variables.labels")
		arms = append(arms, fmt.Sprintf("%s && %s ? %s", c.guard(tg, s.i, false), ok, write(s.r, v)))
	}
	// Sticky: what the stored object carried from a rule that matched it.
	for _, s := range setters {
		// {label:K} reads the stored object's labels.
		v, ok := valueCEL(s.lt.value, "oldObject", "variables.oldLabels")
		arms = append(arms, fmt.Sprintf("%s && %s && %s in %s && %s[%s] == %s ? %s", c.guard(tg, s.i, true), ok, celString(key), tg.old, tg.old, celString(key), v, write(s.r, v)))
	}
	return fmt.Sprintf("(%s in %s ? [] : %s : [])", celString(key), tg.current, strings.Join(arms, " : "))
}
