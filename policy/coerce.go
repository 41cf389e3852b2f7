package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// RawRuleSpec is a PrometheusRule's spec decoded loosely: label and
// annotation values are kept as raw JSON so that non-strings survive
// decoding (the typed API would refuse the whole object).
type RawRuleSpec struct {
	Groups []struct {
		Labels map[string]json.RawMessage `json:"labels"`
		Rules  []struct {
			Labels      map[string]json.RawMessage `json:"labels"`
			Annotations map[string]json.RawMessage `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

// Coercion is one label or annotation value that arrived as a number or a
// boolean (YAML's `severity: 1`, `page: true`) and becomes a string.
type Coercion struct {
	// Path is the JSON Pointer tokens of the value, unescaped.
	Path []string
	// Field is the same place as a field path, for messages.
	Field string
	From  string
	To    string
}

// CoerceRuleValues finds label and annotation values of a PrometheusRule
// that are JSON numbers or booleans and returns their string forms. Objects
// and arrays are left alone: there is no faithful string for them, and the
// API server's schema validation names them. Results are sorted by path.
func CoerceRuleValues(spec RawRuleSpec) []Coercion {
	var out []Coercion
	groups := field.NewPath("spec", "groups")
	for i, g := range spec.Groups {
		gi := fmt.Sprint(i)
		out = appendCoercions(out, g.Labels, []string{"spec", "groups", gi, "labels"}, groups.Index(i).Child("labels"))
		for j, r := range g.Rules {
			rj := fmt.Sprint(j)
			rp := groups.Index(i).Child("rules").Index(j)
			out = appendCoercions(out, r.Labels, []string{"spec", "groups", gi, "rules", rj, "labels"}, rp.Child("labels"))
			out = appendCoercions(out, r.Annotations, []string{"spec", "groups", gi, "rules", rj, "annotations"}, rp.Child("annotations"))
		}
	}
	return out
}

func appendCoercions(out []Coercion, m map[string]json.RawMessage, base []string, fld *field.Path) []Coercion {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v := bytes.TrimSpace(m[k])
		if len(v) == 0 {
			continue
		}
		switch c := v[0]; {
		case c == '-' || (c >= '0' && c <= '9'), bytes.Equal(v, []byte("true")), bytes.Equal(v, []byte("false")):
			path := append(append([]string{}, base...), k)
			out = append(out, Coercion{Path: path, Field: fld.Key(k).String(), From: string(v), To: string(v)})
		}
	}
	return out
}
