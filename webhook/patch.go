package webhook

import (
	"strings"

	"gomodules.xyz/jsonpatch/v2"

	"github.com/promenroll/promenroll/policy"
)

// pointerEscaper escapes a JSON Pointer reference token (RFC 6901 section 4:
// "~" first, then "/"), so label keys like app.kubernetes.io/name address
// one member.
var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

// labelPatch turns label changes into RFC 6902 "add" operations against the
// object as received. Changes come sorted from policy, so the same input
// gives the same patch byte for byte. Only the labels maps are touched; a
// missing or null map is added whole.
func labelPatch(s *objectShape, changes []policy.LabelChange) []jsonpatch.JsonPatchOperation {
	var meta, tmpl []policy.LabelChange
	for _, c := range changes {
		if c.Target == policy.MetadataLabels {
			meta = append(meta, c)
		} else {
			tmpl = append(tmpl, c)
		}
	}
	var ops []jsonpatch.JsonPatchOperation
	ops = appendLabelOps(ops, "/metadata", s.hasMetadata, s.Metadata.Labels != nil, meta)
	if len(tmpl) > 0 && s.hasPodTemplate() {
		tm := s.Spec.Template.Metadata
		ops = appendLabelOps(ops, "/spec/template/metadata", tm != nil, tm != nil && tm.Labels != nil, tmpl)
	}
	return ops
}

func appendLabelOps(ops []jsonpatch.JsonPatchOperation, parent string, parentExists, labelsExist bool, changes []policy.LabelChange) []jsonpatch.JsonPatchOperation {
	if len(changes) == 0 {
		return ops
	}
	if !labelsExist {
		m := make(map[string]string, len(changes))
		for _, c := range changes {
			m[c.Key] = c.Value
		}
		if !parentExists {
			return append(ops, jsonpatch.NewOperation("add", parent, map[string]any{"labels": m}))
		}
		return append(ops, jsonpatch.NewOperation("add", parent+"/labels", m))
	}
	for _, c := range changes {
		ops = append(ops, jsonpatch.NewOperation("add", parent+"/labels/"+pointerEscaper.Replace(c.Key), c.Value))
	}
	return ops
}
