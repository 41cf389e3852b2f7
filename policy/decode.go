package policy

import (
	"fmt"

	"k8s.io/apimachinery/pkg/util/intstr"
	sigsjson "sigs.k8s.io/json"
)

// objectShape is what the mutation table reads of an object: its metadata,
// a Service's ports and, for pod owners, the pod template's metadata and
// container ports, wherever the kind keeps its template. Decoding only these
// keeps the request path cheap and independent of API versions' other
// fields, and every engine (serve, check, audit) reads an object through
// it, so none can read less.
type objectShape struct {
	Metadata *metadata `json:"metadata"`
	// Spec is a Service's.
	Spec *struct {
		Ports []struct {
			Name       string             `json:"name"`
			Port       int32              `json:"port"`
			TargetPort intstr.IntOrString `json:"targetPort"`
		} `json:"ports"`
	} `json:"spec"`

	// template is the pod template at the kind's path, nil when the
	// object has none there; templateProblem says why a template that is
	// there could not be read.
	template        *podTemplateShape
	templateAt      *podTemplate
	templateProblem string
	// hasMetadata is false when the object has no metadata member (or it is
	// null): a patch must then add it whole.
	hasMetadata bool
}

// podTemplateShape is what is read of a pod template.
type podTemplateShape struct {
	Metadata *metadata `json:"metadata"`
	Spec     *struct {
		Containers []struct {
			Ports []struct {
				Name          string `json:"name"`
				ContainerPort int32  `json:"containerPort"`
			} `json:"ports"`
		} `json:"containers"`
	} `json:"spec"`
}

type metadata struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// decodeShape reads raw (JSON, as the API server sends it) for a kind
// whose pod template is at tmpl (nil: the kind has none); what names the
// member in errors ("object", "oldObject").
func decodeShape(raw []byte, what string, tmpl *podTemplate) (*objectShape, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("the admission request has no %s", what)
	}
	s := objectShape{templateAt: tmpl}
	var err error
	if tmpl != nil {
		s.templateProblem, err = tmpl.decode(raw, &s)
	} else {
		err = sigsjson.UnmarshalCaseSensitivePreserveInts(raw, &s)
	}
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", what, err)
	}
	s.hasMetadata = s.Metadata != nil
	if s.Metadata == nil {
		s.Metadata = &metadata{}
	}
	return &s, nil
}

func (s *objectShape) podTemplateMetadata() *metadata {
	if s.template != nil && s.template.Metadata != nil {
		return s.template.Metadata
	}
	return &metadata{}
}

// ports are the pod template's container ports, or a Service's ports.
func (s *objectShape) ports() []Port {
	var out []Port
	if s.Spec != nil {
		for _, p := range s.Spec.Ports {
			out = append(out, Port{Name: p.Name, Number: p.Port, TargetPort: p.TargetPort})
		}
	}
	if s.template != nil && s.template.Spec != nil {
		for _, c := range s.template.Spec.Containers {
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
	o := Object{
		Kind:                   kind,
		Name:                   s.Metadata.Name,
		Namespace:              ns,
		Labels:                 s.Metadata.Labels,
		Annotations:            s.Metadata.Annotations,
		HasPodTemplate:         s.template != nil,
		PodTemplateLabels:      tm.Labels,
		PodTemplateAnnotations: tm.Annotations,
		Ports:                  s.ports(),
		TemplateProblem:        s.templateProblem,
	}
	if s.templateAt != nil {
		o.PodTemplatePath = s.templateAt.String()
		o.TemplateUpdateAdds = s.templateAt.updateAdds
	}
	return o
}
