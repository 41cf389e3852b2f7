package policy

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// partKind says what one piece of a label value template stands for.
type partKind int

const (
	partLiteral partKind = iota
	partName
	partNamespace
	partLabel
	partNamespaceLabel
)

// part is one compiled piece of a label value template.
type part struct {
	kind partKind
	text string // the literal, or the label key for {label:K}/{namespaceLabel:K}
}

// valueTemplate is a label value with substitutions, compiled at policy load
// so nothing is parsed on the request path.
type valueTemplate struct {
	raw   string
	parts []part
}

// labelTemplate is one key and its value template.
type labelTemplate struct {
	key   string
	value valueTemplate
}

// substitutionSource is what substitutions read from.
type substitutionSource struct {
	name            string
	namespace       string
	labels          map[string]string
	namespaceLabels map[string]string
}

// compileValue parses a label value such as "{namespaceLabel:team}-web".
// A "{" always starts a substitution: braces are not valid in label values.
func compileValue(raw string, fld *field.Path) (valueTemplate, field.ErrorList) {
	t := valueTemplate{raw: raw}
	var errs field.ErrorList
	rest := raw
	for rest != "" {
		open := strings.IndexByte(rest, '{')
		if open < 0 {
			t.parts = append(t.parts, part{kind: partLiteral, text: rest})
			break
		}
		if open > 0 {
			t.parts = append(t.parts, part{kind: partLiteral, text: rest[:open]})
		}
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			errs = append(errs, field.Invalid(fld, raw, "unclosed '{': substitutions are {name}, {namespace}, {label:KEY}, {namespaceLabel:KEY}"))
			return t, errs
		}
		expr := rest[open+1 : open+end]
		p, err := compileSubstitution(expr)
		if err != "" {
			errs = append(errs, field.Invalid(fld, raw, err))
		} else {
			t.parts = append(t.parts, p)
		}
		rest = rest[open+end+1:]
	}
	for _, p := range t.parts {
		if p.kind == partLiteral && strings.ContainsAny(p.text, "{}") {
			errs = append(errs, field.Invalid(fld, raw, "stray '}': substitutions are {name}, {namespace}, {label:KEY}, {namespaceLabel:KEY}"))
		}
	}
	if len(errs) == 0 && t.static() {
		for _, msg := range validation.IsValidLabelValue(raw) {
			errs = append(errs, field.Invalid(fld, raw, msg))
		}
	}
	return t, errs
}

func compileSubstitution(expr string) (part, string) {
	switch {
	case expr == "name":
		return part{kind: partName}, ""
	case expr == "namespace":
		return part{kind: partNamespace}, ""
	case strings.HasPrefix(expr, "label:"), strings.HasPrefix(expr, "namespaceLabel:"):
		kind, key := partLabel, strings.TrimPrefix(expr, "label:")
		if strings.HasPrefix(expr, "namespaceLabel:") {
			kind, key = partNamespaceLabel, strings.TrimPrefix(expr, "namespaceLabel:")
		}
		if msgs := validation.IsQualifiedName(key); len(msgs) > 0 {
			return part{}, fmt.Sprintf("{%s}: %q is not a label key: %s", expr, key, strings.Join(msgs, "; "))
		}
		return part{kind: kind, text: key}, ""
	default:
		return part{}, fmt.Sprintf("unknown substitution {%s}: use {name}, {namespace}, {label:KEY} or {namespaceLabel:KEY}", expr)
	}
}

func (t valueTemplate) static() bool {
	for _, p := range t.parts {
		if p.kind != partLiteral {
			return false
		}
	}
	return true
}

// expand substitutes src into the template. It fails, with a reason, when a
// source is missing or the result is not a valid label value; the caller
// skips that label and warns.
func (t valueTemplate) expand(src substitutionSource) (string, string) {
	if t.static() {
		return t.raw, ""
	}
	var b strings.Builder
	for _, p := range t.parts {
		switch p.kind {
		case partLiteral:
			b.WriteString(p.text)
		case partName:
			if src.name == "" {
				return "", "{name}: the object has no name yet (generateName)"
			}
			b.WriteString(src.name)
		case partNamespace:
			if src.namespace == "" {
				return "", "{namespace}: the object has no namespace"
			}
			b.WriteString(src.namespace)
		case partLabel:
			v, ok := src.labels[p.text]
			if !ok {
				return "", fmt.Sprintf("{label:%s}: the object has no label %s", p.text, p.text)
			}
			b.WriteString(v)
		case partNamespaceLabel:
			v, ok := src.namespaceLabels[p.text]
			if !ok {
				return "", fmt.Sprintf("{namespaceLabel:%s}: namespace %s has no label %s", p.text, src.namespace, p.text)
			}
			b.WriteString(v)
		}
	}
	v := b.String()
	if msgs := validation.IsValidLabelValue(v); len(msgs) > 0 {
		return "", fmt.Sprintf("value %q is not a valid label value: %s", v, strings.Join(msgs, "; "))
	}
	return v, ""
}

// compileLabels validates keys and compiles values of a labels map, sorted
// by key so that every decision is deterministic.
func compileLabels(labels map[string]string, fld *field.Path) ([]labelTemplate, field.ErrorList) {
	var errs field.ErrorList
	out := make([]labelTemplate, 0, len(labels))
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		kf := fld.Key(k)
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			for _, m := range msgs {
				errs = append(errs, field.Invalid(kf, k, "label key: "+m))
			}
			continue
		}
		v, verrs := compileValue(labels[k], kf)
		errs = append(errs, verrs...)
		out = append(out, labelTemplate{key: k, value: v})
	}
	return out, errs
}
