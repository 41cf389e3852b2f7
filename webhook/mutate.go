package webhook

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/promenroll/promenroll/policy"
)

// API groups of the kinds promenroll handles.
const (
	groupApps       = "apps"
	groupCore       = ""
	groupMonitoring = "monitoring.coreos.com"
)

// Mutator is the /mutate handler: enrollment labels for workloads and
// Services, selector labels for ServiceMonitors, PodMonitors and
// PrometheusRules, and string coercion of PrometheusRule labels.
type Mutator struct {
	Policies   *PolicyStore
	Namespaces NamespaceGetter
	// Prometheuses, if set, lets promenroll warn about monitors and rules
	// no Prometheus will load.
	Prometheuses PrometheusLister
	Metrics      *Metrics

	// autoSelectMissing remembers the autoSelect targets already logged as
	// missing, per policy generation, so the log says it once.
	autoSelectMissing sync.Map
}

var _ admission.Handler = (*Mutator)(nil)

// Handle implements admission.Handler.
func (m *Mutator) Handle(ctx context.Context, req admission.Request) admission.Response {
	return instrumented(ctx, req, m.Metrics, "mutate", func() outcome { return m.decide(ctx, req) })
}

func (m *Mutator) decide(ctx context.Context, req admission.Request) outcome {
	if out, done := screen(req); done {
		return out
	}
	g, kind := req.Kind.Group, req.Kind.Kind
	switch {
	case g == groupApps && slices.Contains(policy.WorkloadKinds, kind), g == groupCore && kind == "Service":
		return m.enroll(ctx, req)
	case g == groupMonitoring && slices.Contains(policy.MonitorKinds, kind):
		return m.monitor(ctx, req)
	default:
		return skip(fmt.Sprintf("kind %s is not handled by /mutate: check the webhook configuration's rules", gvkString(req)))
	}
}

// decisionMode is the mode a label decision is reported under: enforce if
// anything is applied, dry-run if it only reports.
func decisionMode(d policy.Decision) policy.Mode {
	if len(d.Enforced()) > 0 {
		return policy.ModeEnforce
	}
	if len(d.DryRun()) > 0 || slices.ContainsFunc(d.Warnings, func(w string) bool { return strings.HasPrefix(w, policy.DryRunPrefix) }) {
		return policy.ModeDryRun
	}
	return policy.ModeEnforce
}

func describeChanges(cs []policy.LabelChange) string {
	var b strings.Builder
	for i, c := range cs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(string(c.Target))
		b.WriteByte(' ')
		b.WriteString(c.Key)
		b.WriteByte('=')
		b.WriteString(c.Value)
	}
	return b.String()
}
