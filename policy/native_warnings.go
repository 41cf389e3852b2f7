package policy

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// The warnings of native enrollment: a ValidatingAdmissionPolicy per
// MutatingAdmissionPolicy, bound with validationActions [Warn], says at
// kubectl apply what the webhook's enrollment says (the API server puts
// "Validation failed for ValidatingAdmissionPolicy '<name>' with binding
// '<name>': " before each): a substitution skipped and why, a key kept
// at the object's value or at an earlier rule's, and in dry-run what would
// be added or put back, and a pod owner without a pod template. It runs
// after the mutations, on the object as they left it, so one case reads
// differently: a key the object already had at the first rule's value,
// which a later rule wants otherwise, is reported as set by the earlier
// rule (the webhook says kept). The scrape annotation checks (a port no
// container declares) stay with the webhook and `promenroll check`.

// labelValueMessages are the messages of validation.IsValidLabelValue, as
// expand reports an invalid substituted value: too long, and not the
// pattern.
var labelValueMessages = struct{ tooLong, pattern string }{
	tooLong: validation.IsValidLabelValue(strings.Repeat("a", validation.LabelValueMaxLength+1))[0],
	pattern: validation.IsValidLabelValue("-")[0],
}

// fieldOf names a target in warnings, as Object.Field does.
func (c *nativeCompiler) fieldOf(t Target) string {
	return Object{PodTemplatePath: strings.Join(c.template, ".")}.Field(t)
}

// skipReasonCEL is the CEL string of why t does not expand, as expand
// says it: the first missing source, or the invalid value (value: the
// CEL of its expansion; the messages are the policy's variables).
func skipReasonCEL(t valueTemplate, object, labels, value string) string {
	var arms []string
	for _, p := range t.parts {
		switch p.kind {
		case partName:
			arms = append(arms, fmt.Sprintf(`%s.metadata.?name.orValue("") == "" ? "{name}: the object has no name yet (generateName)"`, object))
		case partLabel:
			arms = append(arms, fmt.Sprintf(`!(%s in %s) ? %s`, celString(p.text), labels, celString(fmt.Sprintf("{label:%s}: the object has no label %s", p.text, p.text))))
		case partNamespaceLabel:
			arms = append(arms, fmt.Sprintf(`!(%s in variables.nsLabels) ? %s + namespaceObject.metadata.name + %s`, celString(p.text), celString(fmt.Sprintf("{namespaceLabel:%s}: namespace ", p.text)), celString(" has no label "+p.text)))
		}
	}
	invalid := fmt.Sprintf(`"value " + %s + " is not a valid label value: " + (size(%s) > %d ? (%s.matches(variables.labelValuePattern) ? variables.tooLong : variables.tooLongAndPattern) : variables.notPattern)`,
		quoteCEL(value), value, validation.LabelValueMaxLength, value)
	if len(arms) == 0 {
		return invalid
	}
	return strings.Join(append(arms, invalid), " : ")
}

// messageVariables are what every skipped-value warning reads.
func messageVariables() []admissionregistrationv1.Variable {
	return []admissionregistrationv1.Variable{
		{Name: "labelValuePattern", Expression: celString(`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`)},
		{Name: "tooLong", Expression: celString(labelValueMessages.tooLong)},
		{Name: "notPattern", Expression: celString(labelValueMessages.pattern)},
		{Name: "tooLongAndPattern", Expression: celString(labelValueMessages.tooLong + "; " + labelValueMessages.pattern)},
		{Name: "prefix", Expression: `variables.dryRunNamespace ? ` + celString(DryRunPrefix) + ` : ""`},
	}
}

// quoteCEL is the CEL of v quoted as %q quotes a label value: quotes and
// backslashes escaped (a control character, which no valid label value
// has, is left as it is).
func quoteCEL(v string) string {
	return fmt.Sprintf(`"\"" + (%s).replace("\\", "\\\\").replace("\"", "\\\"") + "\""`, v)
}

// warning is one validation: the warning is given when cond holds. The
// API server drops a message of several lines (an object's label may hold
// a line break before validation refuses it): the static message says
// which warning it was.
func warning(cond, message string) admissionregistrationv1.Validation {
	return admissionregistrationv1.Validation{Expression: "!(" + cond + ")", MessageExpression: message, Message: "an enrollment warning with a line break"}
}

// warningSet is the variables and validations of one
// ValidatingAdmissionPolicy.
type warningSet struct {
	vars []admissionregistrationv1.Variable
	vals []admissionregistrationv1.Validation
	size int
}

func (w *warningSet) add(vars []admissionregistrationv1.Variable, vals ...admissionregistrationv1.Validation) {
	w.vars, w.vals = append(w.vars, vars...), append(w.vals, vals...)
	for _, v := range vars {
		w.size += len(v.Name) + len(v.Expression)
	}
	for _, v := range vals {
		w.size += len(v.Expression) + len(v.MessageExpression) + len(v.Message)
	}
}

// maxWarningsSize bounds one warnings policy's expressions, so that the
// object (with kubectl apply's copy of it in an annotation, at most 256
// KiB) is accepted: past it, keys go to another policy.
const maxWarningsSize = 100000

// warnings are the warnings policies of one mutating policy: per target
// and key, one validation per rule that sets it (its warnings exclude one
// another) and one for putting it back on UPDATE, in policy order. What
// several validations read (a rule's value, the first rule's) is a
// variable, evaluated once per request. Keys are split across policies
// to keep each under maxWarningsSize.
func (c *nativeCompiler) warnings() []*warningSet {
	sets := []*warningSet{{}}
	id := 0
	for _, tg := range c.targets() {
		for _, key := range slices.Sorted(maps.Keys(c.keyRules(tg))) {
			v, w := c.keyWarnings(tg, key, id)
			last := sets[len(sets)-1]
			if last.size > maxWarningsSize {
				last = &warningSet{}
				sets = append(sets, last)
			}
			last.add(v, w...)
			id++
		}
	}
	if c.template == nil {
		return sets
	}
	path := strings.Join(c.template, ".")
	for i := range c.p.enroll {
		r := &c.p.enroll[i]
		if c.ruleKinds(r) == "" || len(r.podTemplateLabels)+len(r.annotations) == 0 {
			continue
		}
		cond := fmt.Sprintf("variables.rule%d && !variables.hasTemplate", i)
		if !c.updateAdds {
			cond += ` && request.operation == "CREATE"`
		}
		sets[0].add(nil, warning(cond, fmt.Sprintf(`%s + %s`, c.prefixCEL(r), celString(fmt.Sprintf("pod template labels and annotations skipped (rule %s): the object has no %s", r.name, path)))))
	}
	return sets
}

// prefixCEL is the CEL of a warning's prefix for rule r: [dry-run] when
// the rule or the namespace is.
func (c *nativeCompiler) prefixCEL(r *enrollRule) string {
	if r.mode == ModeDryRun {
		return celString(DryRunPrefix)
	}
	return "variables.prefix"
}

// dryRunCEL is the CEL that rule r only reports in this request.
func dryRunCEL(r *enrollRule) string {
	if r.mode == ModeDryRun {
		return "true"
	}
	return "variables.dryRunNamespace"
}

// keyWarnings are the variables and validations of one key of a target
// (id numbers its variables), as the webhook's planner warns (planner.plan,
// WarningsFor).
func (c *nativeCompiler) keyWarnings(tg nativeTarget, key string, id int) ([]admissionregistrationv1.Variable, []admissionregistrationv1.Validation) {
	setters := c.setters(tg, key)
	k := celString(key)
	var vars []admissionregistrationv1.Variable
	variable := func(name, expr string) string {
		name = fmt.Sprintf("k%d%s", id, name)
		vars = append(vars, admissionregistrationv1.Variable{Name: name, Expression: expr})
		return "variables." + name
	}
	has := variable("has", fmt.Sprintf("%s in %s", k, tg.current))
	cur := fmt.Sprintf("%s[%s]", tg.current, k)
	// valid[j]: rule j applies and its value expands; value[j] the value.
	valid := make([]string, len(setters))
	value := make([]string, len(setters))
	var firstArms, writeArms []string
	ok := make([]string, len(setters))
	for j, s := range setters {
		v, okExpr := valueCEL(s.lt.value, "object", "variables.labels")
		value[j], ok[j] = v, okExpr
		if !s.lt.value.static() {
			value[j] = variable(fmt.Sprintf("v%d", j), v)
			ok[j] = variable(fmt.Sprintf("ok%d", j), okExpr)
		}
		valid[j] = variable(fmt.Sprintf("r%d", j), c.guard(tg, s.i, false)+" && "+ok[j])
		firstArms = append(firstArms, fmt.Sprintf("%s ? %s", valid[j], value[j]))
		writeArms = append(writeArms, fmt.Sprintf("%s ? !%s", valid[j], dryRunCEL(s.r)))
	}
	// first: the value of the first valid rule, which planned the key;
	// firstWrites: that rule is not dry-run here, so the mutation wrote
	// it. The object had the key itself when it holds another value, or
	// the first rule only reports; otherwise the key was planned
	// (written, or, in dry-run, absent and reported).
	anyValid := variable("any", strings.Join(valid, " || "))
	first := variable("first", strings.Join(append(firstArms, `""`), " : "))
	firstWrites := variable("writes", strings.Join(append(writeArms, "false"), " : "))
	planned := variable("planned", fmt.Sprintf("!%s || %s == %s && %s", has, cur, first, firstWrites))
	q := func(name, expr string) string { return variable(name, quoteCEL(expr)) }
	qCur, qFirst := q("qc", cur), q("qf", first)
	var out []admissionregistrationv1.Validation
	for j, s := range setters {
		prefix := c.prefixCEL(s.r)
		earlier := "false"
		if j > 0 {
			earlier = "(" + strings.Join(valid[:j], " || ") + ")"
		}
		qValue := q(fmt.Sprintf("q%d", j), value[j])
		// One validation: the warnings of a rule exclude one another.
		var conds, msgs []string
		if !s.lt.value.static() {
			conds = append(conds, variable(fmt.Sprintf("w%dskip", j), fmt.Sprintf("%s && !%s", c.guard(tg, s.i, false), ok[j])))
			msgs = append(msgs, fmt.Sprintf(`%s + %s + (%s)`, prefix, celString(fmt.Sprintf("%s %s skipped (rule %s): ", whatOf(tg.t), key, s.r.name)), skipReasonCEL(s.lt.value, "object", "variables.labels", value[j])))
		}
		conds = append(conds,
			variable(fmt.Sprintf("w%dkept", j), fmt.Sprintf("%s && %s && !%s && %s != %s", valid[j], has, planned, cur, value[j])),
			variable(fmt.Sprintf("w%dset", j), fmt.Sprintf("%s && %s && %s && %s != %s", valid[j], earlier, planned, value[j], first)),
			variable(fmt.Sprintf("w%dadd", j), fmt.Sprintf("%s && !%s && !%s && %s", valid[j], earlier, has, dryRunCEL(s.r))))
		msgs = append(msgs,
			fmt.Sprintf(`%s + %s + %s + %s + %s`, prefix, celString(c.fieldOf(tg.t)+" "+key+"="), qCur, celString(" kept; rule "+s.r.name+" wants "), qValue),
			fmt.Sprintf(`%s + %s + %s + %s + %s`, prefix, celString(c.fieldOf(tg.t)+" "+key+": rule "+s.r.name+" wants "), qValue, celString(", an earlier rule set "), qFirst),
			fmt.Sprintf(`%s + %s + %s`, celString(DryRunPrefix+"would add "+c.fieldOf(tg.t)+" "+key+"="), value[j], celString(" (rule "+s.r.name+")")))
		out = append(out, oneOf(conds, msgs))
	}
	// Sticky on UPDATE: the first rule that matched the stored object,
	// whose value it carried, puts it back; in dry-run that is reported,
	// and a value other than the one a rule planned is a conflict.
	var stickies []string
	for j, s := range setters {
		v, okOld := valueCEL(s.lt.value, "oldObject", "variables.oldLabels")
		sticky := variable(fmt.Sprintf("s%d", j), fmt.Sprintf("%s && %s && %s in %s && %s[%s] == %s", c.guard(tg, s.i, true), okOld, k, tg.old, tg.old, k, v))
		earlier := "false"
		if j > 0 {
			earlier = "(" + strings.Join(stickies, " || ") + ")"
		}
		stickies = append(stickies, sticky)
		out = append(out, oneOf(
			[]string{
				variable(fmt.Sprintf("w%dback", j), fmt.Sprintf("%s && !%s && !%s && !%s && %s", sticky, earlier, anyValid, has, dryRunCEL(s.r))),
				variable(fmt.Sprintf("w%dsticky", j), fmt.Sprintf("%s && !%s && %s && %s && %s != %s", sticky, earlier, anyValid, planned, v, first)),
			},
			[]string{
				fmt.Sprintf(`%s + %s + %s`, celString(DryRunPrefix+"would put back "+c.fieldOf(tg.t)+" "+key+"="), v, celString(" (rule "+s.r.name+")")),
				fmt.Sprintf(`%s + %s + %s + %s + %s`, c.prefixCEL(s.r), celString(c.fieldOf(tg.t)+" "+key+": rule "+s.r.name+" wants "), quoteCEL(v), celString(", an earlier rule set "), qFirst),
			}))
	}
	return vars, out
}

// oneOf is one validation for warnings that exclude one another: it warns
// when one of conds holds, with the message of the first that does.
func oneOf(conds, msgs []string) admissionregistrationv1.Validation {
	msg := msgs[len(msgs)-1]
	for i := len(conds) - 2; i >= 0; i-- {
		msg = fmt.Sprintf("(%s) ? %s : %s", conds[i], msgs[i], msg)
	}
	return warning("("+strings.Join(conds, ") || (")+")", msg)
}

// nativeValidatingPolicies are the warnings' policies beside the
// mutating one named name, matching what it matches: name, then name-2...
// when its keys need more than one.
func (p *Policy) nativeValidatingPolicies(name string, c *nativeCompiler, match *admissionregistrationv1.MatchResources) []any {
	fail := admissionregistrationv1.Ignore
	var out []any
	for i, set := range c.warnings() {
		if len(set.vals) == 0 {
			continue
		}
		n := name
		if i > 0 {
			n = fmt.Sprintf("%s-%d", name, i+1)
		}
		out = append(out,
			&admissionregistrationv1.ValidatingAdmissionPolicy{
				TypeMeta:   metav1.TypeMeta{APIVersion: admissionregistrationv1.SchemeGroupVersion.String(), Kind: "ValidatingAdmissionPolicy"},
				ObjectMeta: p.nativeMeta(n),
				Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
					MatchConstraints: match,
					Variables:        append(append(c.variables(), messageVariables()...), set.vars...),
					Validations:      set.vals,
					FailurePolicy:    &fail,
				},
			},
			&admissionregistrationv1.ValidatingAdmissionPolicyBinding{
				TypeMeta:   metav1.TypeMeta{APIVersion: admissionregistrationv1.SchemeGroupVersion.String(), Kind: "ValidatingAdmissionPolicyBinding"},
				ObjectMeta: p.nativeMeta(n),
				Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
					PolicyName:        n,
					ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Warn},
				},
			})
	}
	return out
}
