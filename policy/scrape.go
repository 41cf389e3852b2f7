package policy

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// The scrape annotations vanilla Prometheus' example Kubernetes
// configuration made a convention, read by the enrollment monitors in
// deploy/base/monitors/enrollment.yaml: on the pod (template) for the
// PodMonitor, on the Service for the ServiceMonitor.
const (
	ScrapeAnnotation = "prometheus.io/scrape"
	PortAnnotation   = "prometheus.io/port"
	PathAnnotation   = "prometheus.io/path"
	SchemeAnnotation = "prometheus.io/scheme"
)

// MetricsPortNames are the port names scraped when no prometheus.io/port
// annotation says otherwise (the names kube-prometheus and most Helm charts
// give their metrics ports).
var MetricsPortNames = []string{"metrics", "http-metrics"}

// Port is a port an object declares: a container port of a workload's pod
// template, or a Service port.
type Port struct {
	Name   string
	Number int32
	// TargetPort is a Service port's targetPort (the pod's port the
	// endpoint carries); zero value when absent or for container ports.
	TargetPort intstr.IntOrString
}

// compileScrape turns a rule's scrape settings into the annotations it
// writes, checking each value as the enrollment monitors will read it.
func compileScrape(s *Scrape, fld *field.Path) ([]labelTemplate, field.ErrorList) {
	if s == nil {
		return nil, nil
	}
	var out []labelTemplate
	var errs field.ErrorList
	static := func(key, v string) labelTemplate {
		return labelTemplate{key: key, value: valueTemplate{raw: v, parts: []part{{kind: partLiteral, text: v}}}}
	}
	if port := s.Port.String(); port != "" && port != "0" {
		if why := portProblem(port); why != "" {
			errs = append(errs, field.Invalid(fld.Child("port"), port, why))
		}
		out = append(out, static(PortAnnotation, port))
	}
	if s.Path != "" {
		if why := pathProblem(s.Path); why != "" {
			errs = append(errs, field.Invalid(fld.Child("path"), s.Path, why))
		}
		out = append(out, static(PathAnnotation, s.Path))
	}
	if s.Scheme != "" {
		if why := schemeProblem(s.Scheme); why != "" {
			errs = append(errs, field.NotSupported(fld.Child("scheme"), s.Scheme, []string{"http", "https"}))
		}
		out = append(out, static(SchemeAnnotation, s.Scheme))
	}
	if len(out) == 0 {
		errs = append(errs, field.Required(fld, "set port, path or scheme, or leave scrape out"))
	}
	slices.SortFunc(out, func(a, b labelTemplate) int { return strings.Compare(a.key, b.key) })
	return out, errs
}

// portProblem says why v is neither a port number nor a port name.
func portProblem(v string) string {
	if n, err := strconv.Atoi(v); err == nil {
		if msgs := validation.IsValidPortNum(n); len(msgs) > 0 {
			return strings.Join(msgs, "; ")
		}
		return ""
	}
	if msgs := validation.IsValidPortName(v); len(msgs) > 0 {
		return "not a port number (1-65535) nor a port name: " + strings.Join(msgs, "; ")
	}
	return ""
}

func pathProblem(v string) string {
	if !strings.HasPrefix(v, "/") {
		return `must start with "/"`
	}
	return ""
}

func schemeProblem(v string) string {
	if v != "http" && v != "https" {
		return "must be http or https"
	}
	return ""
}

// scrapeWarningRE matches ScrapeWarnings' form: <field>[<annotation>]="v": why.
var scrapeWarningRE = regexp.MustCompile(`^[A-Za-z.]+\[(` + regexp.QuoteMeta(PortAnnotation) + `|` + regexp.QuoteMeta(PathAnnotation) + `|` + regexp.QuoteMeta(SchemeAnnotation) + `)\]=".*": `)

// IsScrapeWarning reports whether w is one of ScrapeWarnings' (which
// native enrollment does not give).
func IsScrapeWarning(w string) bool { return scrapeWarningRE.MatchString(w) }

// ScrapeWarnings checks the scrape annotations an enrolled object will
// carry (its own plus those the decision adds) against the ports it
// declares, and says what the enrollment monitors will make of each
// problem: a port that no declared port answers to yields no target, a bad
// path or scheme is ignored.
func ScrapeWarnings(obj Object, d Decision) []string {
	var annotations map[string]string
	var where string
	var target Target
	switch {
	case obj.Kind == "Service":
		annotations, where, target = obj.Annotations, "metadata.annotations", MetadataAnnotations
	case obj.OwnsPods() && obj.HasPodTemplate:
		annotations, where, target = obj.PodTemplateAnnotations, obj.Field(PodTemplateAnnotations), PodTemplateAnnotations
	default:
		return nil
	}
	effective := map[string]string{}
	for k, v := range annotations {
		effective[k] = v
	}
	for _, c := range d.Changes {
		if c.Target == target {
			if _, ok := effective[c.Key]; !ok {
				effective[c.Key] = c.Value
			}
		}
	}
	var ws []string
	warn := func(key, v, what string) {
		ws = append(ws, fmt.Sprintf("%s[%s]=%q: %s", where, key, v, what))
	}
	if v, ok := effective[PortAnnotation]; ok {
		if why := portProblem(v); why != "" {
			warn(PortAnnotation, v, why+"; no target will be scraped: set it to the name or number of a port the object declares")
		} else if why := undeclaredPort(obj, v); why != "" {
			warn(PortAnnotation, v, why)
		}
	}
	if v, ok := effective[PathAnnotation]; ok {
		if why := pathProblem(v); why != "" {
			warn(PathAnnotation, v, why+"; it is ignored and /metrics is scraped")
		}
	}
	if v, ok := effective[SchemeAnnotation]; ok {
		if why := schemeProblem(v); why != "" {
			warn(SchemeAnnotation, v, why+"; it is ignored and http is used")
		}
	}
	return ws
}

// undeclaredPort says why no declared port answers to v (a valid port name
// or number), or "" when one does or it cannot be known.
func undeclaredPort(obj Object, v string) string {
	n, err := strconv.Atoi(v)
	numeric := err == nil
	what := "container port"
	if obj.Kind == "Service" {
		what = "Service port"
	}
	for _, p := range obj.Ports {
		switch {
		case !numeric && p.Name == v:
			return ""
		case numeric && obj.Kind != "Service" && int(p.Number) == n:
			return ""
		case numeric && obj.Kind == "Service":
			// The ServiceMonitor sees the endpoint's port: the targetPort.
			switch {
			case p.TargetPort.Type == intstr.String && p.TargetPort.StrVal != "":
				return "" // a named targetPort: its number is the pod's to say
			case p.TargetPort.IntValue() == n, p.TargetPort.IntValue() == 0 && int(p.Number) == n:
				return ""
			case int(p.Number) == n:
				return fmt.Sprintf("Service port %d forwards to targetPort %d, and the endpoint's port is what is matched: use the port's name (%q) or %d; no target will be scraped", n, p.TargetPort.IntValue(), p.Name, p.TargetPort.IntValue())
			}
		}
	}
	var names []string
	for _, p := range obj.Ports {
		if p.Name != "" {
			names = append(names, fmt.Sprintf("%s (%d)", p.Name, p.Number))
		} else {
			names = append(names, strconv.Itoa(int(p.Number)))
		}
	}
	if len(names) == 0 {
		return fmt.Sprintf("the object declares no %s, so no target will be scraped: declare the port (ports[].name %q)", what, v)
	}
	return fmt.Sprintf("no %s is named or numbered %s (declared: %s), so no target will be scraped: use one of those", what, v, strings.Join(names, ", "))
}
