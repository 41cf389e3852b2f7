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

// whatOf names a target in skipped-value warnings, as Enroll does.
func whatOf(t Target) string {
	switch t {
	case MetadataAnnotations:
		return "annotation"
	case PodTemplateLabels:
		return "pod template label"
	case PodTemplateAnnotations:
		return "pod template annotation"
	}
	return "label"
}

// fieldOf names a target in warnings, as Object.Field does.
func (c *nativeCompiler) fieldOf(t Target) string {
	switch t {
	case PodTemplateLabels:
		return strings.Join(c.template, ".") + ".metadata.labels"
	case PodTemplateAnnotations:
		return strings.Join(c.template, ".") + ".metadata.annotations"
	}
	return string(t)
}

// skipReasonCEL is the CEL string of why t does not expand, as expand
// says it: the first missing source, or the invalid value.
func skipReasonCEL(t valueTemplate, object, labels string) string {
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
	value, _ := valueCEL(t, object, labels)
	pattern := fmt.Sprintf(`(%s).matches(%s)`, value, celString(`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`))
	invalid := fmt.Sprintf(`"value " + %s + " is not a valid label value: " + (size(%s) > %d ? (%s ? %s : %s) : %s)`,
		quoteCEL(value), value, validation.LabelValueMaxLength, pattern, celString(labelValueMessages.tooLong),
		celString(labelValueMessages.tooLong+"; "+labelValueMessages.pattern), celString(labelValueMessages.pattern))
	return strings.Join(append(arms, invalid), " : ")
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
	return admissionregistrationv1.Validation{Expression: "!(" + cond + ")", MessageExpression: message, Message: "an enrollment warning whose text holds a line break (promenroll check --policy shows it)"}
}

// warnings are the validations of one policy: per target and key, per
// rule that sets it, in policy order.
func (c *nativeCompiler) warnings() []admissionregistrationv1.Validation {
	var out []admissionregistrationv1.Validation
	for _, tg := range c.targets() {
		keys := map[string]bool{}
		for i := range c.p.enroll {
			if c.ruleKinds(&c.p.enroll[i]) == "" {
				continue
			}
			for _, lt := range tg.templates(&c.p.enroll[i]) {
				keys[lt.key] = true
			}
		}
		for _, key := range slices.Sorted(maps.Keys(keys)) {
			out = append(out, c.keyWarnings(tg, key)...)
		}
	}
	if c.template == nil {
		return out
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
		out = append(out, warning(cond, fmt.Sprintf(`%s + %s`, c.prefixCEL(r), celString(fmt.Sprintf("pod template labels and annotations skipped (rule %s): the object has no %s", r.name, path)))))
	}
	return out
}

// prefixCEL is the CEL of a warning's prefix for rule r: [dry-run] when
// the rule or the namespace is.
func (c *nativeCompiler) prefixCEL(r *enrollRule) string {
	if r.mode == ModeDryRun {
		return celString(DryRunPrefix)
	}
	return fmt.Sprintf(`(variables.dryRunNamespace ? %s : "")`, celString(DryRunPrefix))
}

// dryRunCEL is the CEL that rule r only reports in this request.
func dryRunCEL(r *enrollRule) string {
	if r.mode == ModeDryRun {
		return "true"
	}
	return "variables.dryRunNamespace"
}

// keyWarnings are the warnings about one key of a target, as the webhook's
// planner gives them (planner.plan, WarningsFor).
func (c *nativeCompiler) keyWarnings(tg nativeTarget, key string) []admissionregistrationv1.Validation {
	setters := c.setters(tg, key)
	k := celString(key)
	has := fmt.Sprintf("%s in %s", k, tg.current)
	cur := fmt.Sprintf("%s[%s]", tg.current, k)
	field := celString(c.fieldOf(tg.t) + " " + key)
	// valid[j]: rule j applies and its value expands; first: the value
	// of the first such rule, which planned the key.
	valid := make([]string, len(setters))
	values := make([]string, len(setters))
	var firstArms []string
	for j, s := range setters {
		v, ok := valueCEL(s.lt.value, "object", "variables.labels")
		valid[j], values[j] = "("+c.guard(tg, s.i, false)+" && "+ok+")", v
		firstArms = append(firstArms, fmt.Sprintf("%s ? %s", valid[j], v))
	}
	hasFirst := "(" + strings.Join(valid, " || ") + ")"
	first := "(" + strings.Join(append(firstArms, `""`), " : ") + ")"
	// firstWrites: the first rule is not dry-run here, so the mutation
	// wrote its value. The object had the key itself when it holds
	// another value, or the first rule only reports; otherwise the key
	// was planned (written, or, in dry-run, absent and reported).
	var writeArms []string
	for j, s := range setters {
		writeArms = append(writeArms, fmt.Sprintf("%s ? !%s", valid[j], dryRunCEL(s.r)))
	}
	firstWrites := "(" + strings.Join(append(writeArms, "false"), " : ") + ")"
	userHad := fmt.Sprintf("(%s && (%s != %s || !%s))", has, cur, first, firstWrites)
	planned := fmt.Sprintf("(!(%s) || %s == %s && %s)", has, cur, first, firstWrites)
	var out []admissionregistrationv1.Validation
	for j, s := range setters {
		prefix := c.prefixCEL(s.r)
		rule := celString(s.r.name)
		guard := c.guard(tg, s.i, false)
		if !s.lt.value.static() {
			out = append(out, warning(fmt.Sprintf("%s && !(%s)", guard, okOf(s.lt.value)),
				fmt.Sprintf(`%s + %s + " skipped (rule " + %s + "): " + (%s)`, prefix, celString(whatOf(tg.t)+" "+key), rule, skipReasonCEL(s.lt.value, "object", "variables.labels"))))
		}
		earlier := "false"
		if j > 0 {
			earlier = "(" + strings.Join(valid[:j], " || ") + ")"
		}
		out = append(out,
			warning(fmt.Sprintf("%s && %s && %s != %s", valid[j], userHad, cur, values[j]),
				fmt.Sprintf(`%s + %s + "=" + %s + " kept; rule " + %s + " wants " + %s`, prefix, field, quoteCEL(cur), rule, quoteCEL(values[j]))),
			warning(fmt.Sprintf("%s && %s && %s && %s != %s", valid[j], earlier, planned, values[j], first),
				fmt.Sprintf(`%s + %s + ": rule " + %s + " wants " + %s + ", an earlier rule set " + %s`, prefix, field, rule, quoteCEL(values[j]), quoteCEL(first))),
			warning(fmt.Sprintf("%s && !%s && !(%s) && %s", valid[j], earlier, has, dryRunCEL(s.r)),
				fmt.Sprintf(`%s + %s + "=" + %s + " (rule " + %s + ")"`, celString(DryRunPrefix+"would add "), field, values[j], rule)))
	}
	// Sticky on UPDATE: the first rule that matched the stored object,
	// whose value it carried, puts it back; in dry-run that is reported,
	// and a value other than the one a rule planned is a conflict.
	var stickyArms []string
	for j, s := range setters {
		v, ok := valueCEL(s.lt.value, "oldObject", "variables.oldLabels")
		sticky := fmt.Sprintf("(%s && %s && %s in %s && %s[%s] == %s)", c.guard(tg, s.i, true), ok, k, tg.old, tg.old, k, v)
		earlier := "false"
		if j > 0 {
			earlier = "(" + strings.Join(stickyArms, " || ") + ")"
		}
		stickyArms = append(stickyArms, sticky)
		rule := celString(s.r.name)
		out = append(out,
			warning(fmt.Sprintf("%s && !%s && !%s && !(%s) && %s", sticky, earlier, hasFirst, has, dryRunCEL(s.r)),
				fmt.Sprintf(`%s + %s + "=" + %s + " (rule " + %s + ")"`, celString(DryRunPrefix+"would put back "), field, v, rule)),
			warning(fmt.Sprintf("%s && !%s && %s && %s && %s != %s", sticky, earlier, hasFirst, planned, v, first),
				fmt.Sprintf(`%s + %s + ": rule " + %s + " wants " + %s + ", an earlier rule set " + %s`, c.prefixCEL(s.r), field, rule, quoteCEL(v), quoteCEL(first))))
	}
	return out
}

// okOf is the CEL that t expands to a valid value for the new object.
func okOf(t valueTemplate) string {
	_, ok := valueCEL(t, "object", "variables.labels")
	return ok
}

// nativeValidatingPolicy is the warnings' policy beside the mutating one
// named name, matching what it matches.
func (p *Policy) nativeValidatingPolicy(name string, c *nativeCompiler, match *admissionregistrationv1.MatchResources) []any {
	validations := c.warnings()
	if len(validations) == 0 {
		return nil
	}
	fail := admissionregistrationv1.Ignore
	return []any{
		&admissionregistrationv1.ValidatingAdmissionPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: admissionregistrationv1.SchemeGroupVersion.String(), Kind: "ValidatingAdmissionPolicy"},
			ObjectMeta: p.nativeMeta(name),
			Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
				MatchConstraints: match,
				Variables:        c.variables(),
				Validations:      validations,
				FailurePolicy:    &fail,
			},
		},
		&admissionregistrationv1.ValidatingAdmissionPolicyBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: admissionregistrationv1.SchemeGroupVersion.String(), Kind: "ValidatingAdmissionPolicyBinding"},
			ObjectMeta: p.nativeMeta(name),
			Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
				PolicyName:        name,
				ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Warn},
			},
		},
	}
}
