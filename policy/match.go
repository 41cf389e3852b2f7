package policy

// Matching: which objects and namespaces a policy applies to, and in which
// mode. Reads the namespace's name, labels and annotations, and the object's
// kind and labels.

import (
	"fmt"

	"k8s.io/apimachinery/pkg/labels"
)

// Excluded reports whether the namespace or object is out of promenroll's
// reach, and why: a default-excluded or configured namespace, or an opt-out
// label on the namespace or the object.
func (p *Policy) Excluded(ns Namespace, objectLabels map[string]string) (string, bool) {
	if reason, ok := p.ExcludedNamespace(ns); ok {
		return reason, true
	}
	if ns.Labels[OptOutLabel] == "false" {
		return fmt.Sprintf("namespace %s opted out (%s=false)", ns.Name, OptOutLabel), true
	}
	if objectLabels[OptOutLabel] == "false" {
		return fmt.Sprintf("object opted out (%s=false)", OptOutLabel), true
	}
	return "", false
}

// ExcludedNamespace reports whether promenroll leaves the namespace alone
// entirely (the defaults, excludeNamespaces, its own namespace).
func (p *Policy) ExcludedNamespace(ns Namespace) (string, bool) {
	if _, ok := p.excluded[ns.Name]; ok {
		return fmt.Sprintf("namespace %s is excluded", ns.Name), true
	}
	return "", false
}

// effectiveMode applies the namespace annotation, which can only relax.
func effectiveMode(m Mode, ns Namespace) Mode {
	if ns.Annotations[ModeAnnotation] == string(ModeDryRun) {
		return ModeDryRun
	}
	return m
}

// matching returns the enrollment rules that select obj, in policy order.
func (p *Policy) matching(obj Object, ns Namespace) []*enrollRule {
	var out []*enrollRule
	for i := range p.enroll {
		r := &p.enroll[i]
		if _, ok := r.kinds[obj.Kind]; !ok {
			continue
		}
		if !r.namespaceSelector.Matches(labels.Set(ns.Labels)) || !r.selector.Matches(labels.Set(obj.Labels)) {
			continue
		}
		out = append(out, r)
	}
	return out
}
