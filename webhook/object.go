package webhook

import (
	"fmt"

	sigsjson "sigs.k8s.io/json"

	"github.com/promenroll/promenroll/policy"
)

// objectShape is what promenroll reads of an incoming object: its metadata
// and, for workloads, the pod template's labels. Decoding only these keeps
// the request path cheap and independent of API versions' other fields.
type objectShape struct {
	Kind     string    `json:"kind"`
	Metadata *metadata `json:"metadata"`
	Spec     *struct {
		Template *struct {
			Metadata *metadata `json:"metadata"`
		} `json:"template"`
	} `json:"spec"`

	// hasMetadata is false when the object has no metadata member (or it is
	// null): a patch must then add it whole.
	hasMetadata bool
}

type metadata struct {
	Name         string            `json:"name"`
	GenerateName string            `json:"generateName"`
	Namespace    string            `json:"namespace"`
	Labels       map[string]string `json:"labels"`
}

func decodeShape(raw []byte, what string) (*objectShape, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("the admission request has no %s", what)
	}
	var s objectShape
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(raw, &s); err != nil {
		return nil, fmt.Errorf("decode %s: %w", what, err)
	}
	s.hasMetadata = s.Metadata != nil
	if s.Metadata == nil {
		s.Metadata = &metadata{}
	}
	return &s, nil
}

func (s *objectShape) hasPodTemplate() bool { return s.Spec != nil && s.Spec.Template != nil }

func (s *objectShape) podTemplateLabels() map[string]string {
	if s.hasPodTemplate() && s.Spec.Template.Metadata != nil {
		return s.Spec.Template.Metadata.Labels
	}
	return nil
}

// object converts the shape to the policy's view of it. The request's
// namespace wins over the object's (it may be empty in the body).
func (s *objectShape) object(kind, namespace string) policy.Object {
	ns := s.Metadata.Namespace
	if namespace != "" {
		ns = namespace
	}
	return policy.Object{
		Kind:              kind,
		Name:              s.Metadata.Name,
		Namespace:         ns,
		Labels:            s.Metadata.Labels,
		HasPodTemplate:    s.hasPodTemplate(),
		PodTemplateLabels: s.podTemplateLabels(),
	}
}
