package policy

import (
	"fmt"
	"slices"
	"strings"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Check of the warnings that need cluster state.
const CheckTargetsFound = "targets-found"

// Service is what the ServiceMonitor checks read of a Service.
type Service struct {
	Namespace, Name string
	Labels          map[string]string
	Ports           []Port
}

// ServiceReader gives the Services of some namespaces (all of them when
// all is true), from a cache: it is called on the request path.
type ServiceReader interface {
	Services(namespaces []string, all bool) []Service
}

// MonitorNamespaces resolves a monitor's namespaceSelector as the operator
// does (pkg/prometheus/promcfg.go, getNamespacesFromNamespaceSelector, with
// the Prometheus' ignoreNamespaceSelectors off): any means every
// namespace, matchNames those, and neither the monitor's own namespace.
func MonitorNamespaces(sel monv1.NamespaceSelector, own string) (names []string, all bool) {
	switch {
	case sel.Any:
		return nil, true
	case len(sel.MatchNames) > 0:
		return sel.MatchNames, false
	default:
		return []string{own}, false
	}
}

// reach is what a monitor's selectors reach: its parsed label selector,
// the namespaces, and how to say where in a message.
type reach struct {
	sel   labels.Selector
	names []string
	all   bool
	where string
}

// reachOf resolves a monitor's selector and namespace selector. ok is false
// when there is nothing to compare with: a selector that does not parse
// (the gate denies it) or a manifest without a namespace.
func reachOf(selector *metav1.LabelSelector, nsSel monv1.NamespaceSelector, own string) (reach, bool) {
	sel, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		return reach{}, false
	}
	names, all := MonitorNamespaces(nsSel, own)
	if !all && slices.Contains(names, "") {
		return reach{}, false
	}
	r := reach{sel: sel, names: names, all: all, where: "namespace " + own}
	switch {
	case all:
		r.where = "any namespace"
	case len(nsSel.MatchNames) > 0:
		r.where = "namespaces " + strings.Join(names, ", ")
	}
	return r, true
}

// targetWarning is a warning of the target checks.
func targetWarning(err *field.Error) Finding {
	return Finding{Check: CheckTargetsFound, Level: LevelWarn, Err: err}
}

// ServiceMonitorTargetWarnings says what will make a ServiceMonitor yield
// no target, judged on the Services its selector reaches now: no Service
// matches, an endpoint port names no port of those Services, a targetPort
// that is a Service port's name. They are warnings, never denials: Helm and
// Argo CD often create the Service after the monitor.
func ServiceMonitorTargetWarnings(sm *monv1.ServiceMonitor, services ServiceReader) []Finding {
	if services == nil {
		return nil
	}
	r, ok := reachOf(&sm.Spec.Selector, sm.Spec.NamespaceSelector, sm.Namespace)
	if !ok {
		return nil
	}
	var matched []Service
	for _, s := range services.Services(r.names, r.all) {
		if r.sel.Matches(labels.Set(s.Labels)) {
			matched = append(matched, s)
		}
	}
	spec := field.NewPath("spec")
	if len(matched) == 0 {
		return []Finding{targetWarning(field.Invalid(spec.Child("selector"), metav1.FormatLabelSelector(&sm.Spec.Selector),
			fmt.Sprintf("matches no Service in %s: no target until one exists with these labels (fine if it is created next)", r.where)))}
	}
	var out []Finding
	for i, ep := range sm.Spec.Endpoints {
		f := spec.Child("endpoints").Index(i)
		if ep.Port != "" && !slices.ContainsFunc(matched, func(s Service) bool { return hasPortNamed(s, ep.Port) }) {
			out = append(out, targetWarning(field.Invalid(f.Child("port"), ep.Port, "names no port of the selected Services ("+describePorts(matched)+"): this endpoint yields no target; use one of those names")))
		}
		if ep.Port == "" && ep.TargetPort != nil && ep.TargetPort.StrVal != "" && slices.ContainsFunc(matched, func(s Service) bool { return hasPortNamed(s, ep.TargetPort.StrVal) }) {
			out = append(out, targetWarning(field.Invalid(f.Child("targetPort"), ep.TargetPort.StrVal,
				"is the name of a Service port, but targetPort names a container port of the Pods: write port: "+ep.TargetPort.StrVal+" instead")))
		}
	}
	return out
}

func hasPortNamed(s Service, name string) bool {
	return slices.ContainsFunc(s.Ports, func(p Port) bool { return p.Name == name })
}

// describePorts lists the matched Services' ports, saying when a Service's
// only port is unnamed (endpoints[].port cannot select it).
func describePorts(services []Service) string {
	var parts []string
	for i, s := range services {
		if i == 5 {
			parts = append(parts, fmt.Sprintf("and %d more Services", len(services)-i))
			break
		}
		var ports []string
		for _, p := range s.Ports {
			if p.Name == "" {
				ports = append(ports, fmt.Sprintf("an unnamed port %d, which endpoints[].port cannot select: name it", p.Number))
			} else {
				ports = append(ports, p.Name)
			}
		}
		parts = append(parts, fmt.Sprintf("Service %s: %s", s.Name, strings.Join(ports, ", ")))
	}
	return strings.Join(parts, "; ")
}

// Workload is what the PodMonitor checks read of a Deployment, StatefulSet
// or DaemonSet: its pod template's labels and container ports. The Pods a
// PodMonitor selects come from such templates in most clusters, and there
// are far fewer of them than Pods to cache.
type Workload struct {
	Kind, Namespace, Name string
	PodLabels             map[string]string
	Ports                 []Port
}

// WorkloadReader gives the workloads of some namespaces (all of them when
// all is true), from a cache: it is called on the request path.
type WorkloadReader interface {
	Workloads(namespaces []string, all bool) []Workload
}

// PodMonitorTargetWarnings says what will make a PodMonitor yield no target,
// judged on the pod templates its selector reaches now: none matches, or an
// endpoint's port (a name) or portNumber that no matched template declares.
// Warnings only: the Pods may come from elsewhere (a Job, an operator, a
// bare Pod) or be created next.
func PodMonitorTargetWarnings(pm *monv1.PodMonitor, workloads WorkloadReader) []Finding {
	if workloads == nil {
		return nil
	}
	r, ok := reachOf(&pm.Spec.Selector, pm.Spec.NamespaceSelector, pm.Namespace)
	if !ok {
		return nil
	}
	var matched []Workload
	for _, w := range workloads.Workloads(r.names, r.all) {
		if r.sel.Matches(labels.Set(w.PodLabels)) {
			matched = append(matched, w)
		}
	}
	spec := field.NewPath("spec")
	if len(matched) == 0 {
		return []Finding{targetWarning(field.Invalid(spec.Child("selector"), metav1.FormatLabelSelector(&pm.Spec.Selector),
			fmt.Sprintf("matches the pod template of no Deployment, StatefulSet, DaemonSet, Job or CronJob in %s: no target unless its Pods come from elsewhere or are created next", r.where)))}
	}
	var out []Finding
	for i, ep := range pm.Spec.PodMetricsEndpoints {
		f := spec.Child("podMetricsEndpoints").Index(i)
		declares := func(match func(Port) bool) bool {
			return slices.ContainsFunc(matched, func(w Workload) bool { return slices.ContainsFunc(w.Ports, match) })
		}
		switch {
		case ep.Port != nil && *ep.Port != "":
			if !declares(func(p Port) bool { return p.Name == *ep.Port }) {
				out = append(out, targetWarning(field.Invalid(f.Child("port"), *ep.Port, "names no container port of the selected pod templates ("+describeWorkloadPorts(matched)+"): this endpoint yields no target; use one of those names")))
			}
		case ep.PortNumber != nil && *ep.PortNumber != 0:
			if !declares(func(p Port) bool { return p.Number == *ep.PortNumber }) {
				out = append(out, targetWarning(field.Invalid(f.Child("portNumber"), *ep.PortNumber, "is no container port of the selected pod templates ("+describeWorkloadPorts(matched)+"): this endpoint yields no target")))
			}
		}
	}
	return out
}

func describeWorkloadPorts(ws []Workload) string {
	var parts []string
	for i, w := range ws {
		if i == 5 {
			parts = append(parts, fmt.Sprintf("and %d more", len(ws)-i))
			break
		}
		var ports []string
		for _, p := range w.Ports {
			if p.Name != "" {
				ports = append(ports, fmt.Sprintf("%s (%d)", p.Name, p.Number))
			} else {
				ports = append(ports, fmt.Sprint(p.Number))
			}
		}
		if len(ports) == 0 {
			ports = []string{"no ports"}
		}
		parts = append(parts, fmt.Sprintf("%s %s: %s", w.Kind, w.Name, strings.Join(ports, ", ")))
	}
	return strings.Join(parts, "; ")
}
