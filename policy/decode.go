package policy

import (
	"fmt"

	"k8s.io/apimachinery/pkg/util/intstr"
	sigsjson "sigs.k8s.io/json"
)

// objectShape is what the mutation table reads of an object: its metadata,
// a Service's ports and, for workloads, the pod template's metadata and
// container ports. Decoding only these keeps the request path cheap and
// independent of API versions' other fields, and every engine (serve,
// check, audit) reads an object through it, so none can read less.
type objectShape struct {
	Metadata *metadata `json:"metadata"`
	Spec     *struct {
		Template *struct {
			Metadata *metadata `json:"metadata"`
			Spec     *struct {
				Containers []struct {
					Ports []struct {
						Name          string `json:"name"`
						ContainerPort int32  `json:"containerPort"`
					} `json:"ports"`
				} `json:"containers"`
			} `json:"spec"`
		} `json:"template"`
		// Ports are a Service's.
		Ports []struct {
			Name       string             `json:"name"`
			Port       int32              `json:"port"`
			TargetPort intstr.IntOrString `json:"targetPort"`
		} `json:"ports"`
	} `json:"spec"`

	// hasMetadata is false when the object has no metadata member (or it is
	// null): a patch must then add it whole.
	hasMetadata bool
}

type metadata struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// decodeShape reads raw (JSON, as the API server sends it); what names the
// member in errors ("object", "oldObject").
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

func (s *objectShape) podTemplateMetadata() *metadata {
	if s.hasPodTemplate() && s.Spec.Template.Metadata != nil {
		return s.Spec.Template.Metadata
	}
	return &metadata{}
}

// ports are the pod template's container ports, or a Service's ports.
func (s *objectShape) ports() []Port {
	if s.Spec == nil {
		return nil
	}
	var out []Port
	for _, p := range s.Spec.Ports {
		out = append(out, Port{Name: p.Name, Number: p.Port, TargetPort: p.TargetPort})
	}
	if s.hasPodTemplate() && s.Spec.Template.Spec != nil {
		for _, c := range s.Spec.Template.Spec.Containers {
			for _, p := range c.Ports {
				out = append(out, Port{Name: p.Name, Number: p.ContainerPort})
			}
		}
	}
	return out
}

// object converts the shape to the policy's view of it. The request's
// namespace wins over the object's (it may be empty in the body).
func (s *objectShape) object(kind, namespace string) Object {
	ns := s.Metadata.Namespace
	if namespace != "" {
		ns = namespace
	}
	tm := s.podTemplateMetadata()
	return Object{
		Kind:                   kind,
		Name:                   s.Metadata.Name,
		Namespace:              ns,
		Labels:                 s.Metadata.Labels,
		Annotations:            s.Metadata.Annotations,
		HasPodTemplate:         s.hasPodTemplate(),
		PodTemplateLabels:      tm.Labels,
		PodTemplateAnnotations: tm.Annotations,
		Ports:                  s.ports(),
	}
}
