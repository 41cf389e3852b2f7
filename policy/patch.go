package policy

import (
	"slices"
	"strings"
)

// PatchOp is one RFC 6902 operation of a mutation's patch. Adapters encode
// the list with encoding/json as it is (webhook/ into the response, check
// and audit apply it to the manifest), so every engine writes the same
// bytes.
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// pointerEscaper escapes a JSON Pointer reference token (RFC 6901 section 4:
// "~" first, then "/"), so keys like app.kubernetes.io/name or
// prometheus.io/port address one member.
var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

// JSONPointer joins unescaped reference tokens into a JSON Pointer.
func JSONPointer(tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(pointerEscaper.Replace(t))
	}
	return b.String()
}

// metadataPatch is one metadata object (the object's or the pod
// template's) and the labels and annotations to add to it.
type metadataPatch struct {
	parent       string
	exists       bool
	meta         *metadata
	labels, anns []LabelChange
}

// labelPatch turns label and annotation changes into RFC 6902 "add"
// operations against the object as received. Changes come sorted, so the
// same input gives the same patch byte for byte. Only the labels and
// annotations maps are touched; a missing or null map, or a missing
// metadata object, is added whole.
func labelPatch(s *objectShape, changes []LabelChange) []PatchOp {
	obj := metadataPatch{parent: "/metadata", exists: s.hasMetadata, meta: s.Metadata}
	var tmpl metadataPatch
	if s.template != nil {
		tmpl.parent = JSONPointer(append(slices.Clone(s.templateAt.path), "metadata"))
		tmpl.exists, tmpl.meta = s.template.Metadata != nil, s.template.Metadata
	}
	for _, c := range changes {
		switch c.Target {
		case MetadataLabels:
			obj.labels = append(obj.labels, c)
		case MetadataAnnotations:
			obj.anns = append(obj.anns, c)
		case PodTemplateLabels:
			tmpl.labels = append(tmpl.labels, c)
		case PodTemplateAnnotations:
			tmpl.anns = append(tmpl.anns, c)
		}
	}
	ops := obj.ops(nil)
	if s.template != nil {
		ops = tmpl.ops(ops)
	}
	return ops
}

func (m metadataPatch) ops(ops []PatchOp) []PatchOp {
	if len(m.labels)+len(m.anns) == 0 {
		return ops
	}
	if !m.exists {
		whole := map[string]any{}
		if len(m.labels) > 0 {
			whole["labels"] = asMap(m.labels)
		}
		if len(m.anns) > 0 {
			whole["annotations"] = asMap(m.anns)
		}
		return append(ops, PatchOp{Op: "add", Path: m.parent, Value: whole})
	}
	ops = appendMapOps(ops, m.parent+"/labels", m.meta.Labels != nil, m.labels)
	return appendMapOps(ops, m.parent+"/annotations", m.meta.Annotations != nil, m.anns)
}

func appendMapOps(ops []PatchOp, path string, exists bool, changes []LabelChange) []PatchOp {
	if len(changes) == 0 {
		return ops
	}
	if !exists {
		return append(ops, PatchOp{Op: "add", Path: path, Value: asMap(changes)})
	}
	for _, c := range changes {
		ops = append(ops, PatchOp{Op: "add", Path: path + "/" + pointerEscaper.Replace(c.Key), Value: c.Value})
	}
	return ops
}

func asMap(changes []LabelChange) map[string]string {
	m := make(map[string]string, len(changes))
	for _, c := range changes {
		m[c.Key] = c.Value
	}
	return m
}
