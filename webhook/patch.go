package webhook

import (
	"strings"

	"gomodules.xyz/jsonpatch/v2"

	"github.com/promenroll/promenroll/policy"
)

// pointerEscaper escapes a JSON Pointer reference token (RFC 6901 section 4:
// "~" first, then "/"), so keys like app.kubernetes.io/name or
// prometheus.io/port address one member.
var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

// metadataPatch is one metadata object (the object's or the pod
// template's) and the labels and annotations to add to it.
type metadataPatch struct {
	parent       string
	exists       bool
	meta         *metadata
	labels, anns []policy.LabelChange
}

// labelPatch turns label and annotation changes into RFC 6902 "add"
// operations against the object as received. Changes come sorted from
// policy, so the same input gives the same patch byte for byte. Only the
// labels and annotations maps are touched; a missing or null map, or a
// missing metadata object, is added whole.
func labelPatch(s *objectShape, changes []policy.LabelChange) []jsonpatch.JsonPatchOperation {
	obj := metadataPatch{parent: "/metadata", exists: s.hasMetadata, meta: s.Metadata}
	tmpl := metadataPatch{parent: "/spec/template/metadata"}
	if s.hasPodTemplate() && s.Spec.Template.Metadata != nil {
		tmpl.exists, tmpl.meta = true, s.Spec.Template.Metadata
	}
	for _, c := range changes {
		switch c.Target {
		case policy.MetadataLabels:
			obj.labels = append(obj.labels, c)
		case policy.MetadataAnnotations:
			obj.anns = append(obj.anns, c)
		case policy.PodTemplateLabels:
			tmpl.labels = append(tmpl.labels, c)
		case policy.PodTemplateAnnotations:
			tmpl.anns = append(tmpl.anns, c)
		}
	}
	ops := obj.ops(nil)
	if s.hasPodTemplate() {
		ops = tmpl.ops(ops)
	}
	return ops
}

func (m metadataPatch) ops(ops []jsonpatch.JsonPatchOperation) []jsonpatch.JsonPatchOperation {
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
		return append(ops, jsonpatch.NewOperation("add", m.parent, whole))
	}
	ops = appendMapOps(ops, m.parent+"/labels", m.meta.Labels != nil, m.labels)
	return appendMapOps(ops, m.parent+"/annotations", m.meta.Annotations != nil, m.anns)
}

func appendMapOps(ops []jsonpatch.JsonPatchOperation, path string, exists bool, changes []policy.LabelChange) []jsonpatch.JsonPatchOperation {
	if len(changes) == 0 {
		return ops
	}
	if !exists {
		return append(ops, jsonpatch.NewOperation("add", path, asMap(changes)))
	}
	for _, c := range changes {
		ops = append(ops, jsonpatch.NewOperation("add", path+"/"+pointerEscaper.Replace(c.Key), c.Value))
	}
	return ops
}

func asMap(changes []policy.LabelChange) map[string]string {
	m := make(map[string]string, len(changes))
	for _, c := range changes {
		m[c.Key] = c.Value
	}
	return m
}
