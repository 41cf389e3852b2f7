package webhook

import (
	"encoding/json"
	"fmt"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/promenroll/promenroll/policy"
)

// patchOp is one RFC 6902 operation of a response. Responses carry the
// encoded patch (admission.Response.Patch) rather than Patches: encoding
// jsonpatch.JsonPatchOperation goes through its MarshalJSON and then
// encoding/json's compaction of its output, a tenth of a CREATE's cost.
type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// encodePatch puts out's operations in its response as a JSON Patch.
func (out *outcome) encodePatch() error {
	if len(out.patch) == 0 {
		return nil
	}
	b, err := json.Marshal(out.patch)
	if err != nil {
		return fmt.Errorf("encode the patch: %w", err)
	}
	pt := admissionv1.PatchTypeJSONPatch
	out.resp.Patch, out.resp.PatchType = b, &pt
	return nil
}

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
func labelPatch(s *objectShape, changes []policy.LabelChange) []patchOp {
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

func (m metadataPatch) ops(ops []patchOp) []patchOp {
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
		return append(ops, patchOp{Op: "add", Path: m.parent, Value: whole})
	}
	ops = appendMapOps(ops, m.parent+"/labels", m.meta.Labels != nil, m.labels)
	return appendMapOps(ops, m.parent+"/annotations", m.meta.Annotations != nil, m.anns)
}

func appendMapOps(ops []patchOp, path string, exists bool, changes []policy.LabelChange) []patchOp {
	if len(changes) == 0 {
		return ops
	}
	if !exists {
		return append(ops, patchOp{Op: "add", Path: path, Value: asMap(changes)})
	}
	for _, c := range changes {
		ops = append(ops, patchOp{Op: "add", Path: path + "/" + pointerEscaper.Replace(c.Key), Value: c.Value})
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
