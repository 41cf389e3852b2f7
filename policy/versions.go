package policy

// Version gates: fields the Prometheus Operator drops, without telling the
// author, when the Prometheus that loads the object is older than the
// field's minimum version. The table is the operator's, at the release
// promenroll pins (test/cluster's PrometheusOperatorVersion, v0.94.1),
// cited by place; a test keeps each entry's minimum equal to the
// operator's source.

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/blang/semver/v4"
	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// CheckVersion names the findings of the version gates.
const CheckVersion = "prometheus-version"

// DefaultPrometheusVersion is the version the operator assumes of a
// Prometheus whose spec.version is unset: the last of its compatibility
// matrix (prometheus-operator v0.94.1 pkg/operator/defaults.go,
// DefaultPrometheusVersion).
const DefaultPrometheusVersion = "v3.14.0"

// ruleVersionGate is one field of a PrometheusRule the operator drops
// below a Prometheus version.
type ruleVersionGate struct {
	// Field is the field's name in the rule file.
	Field string
	// Min is the first Prometheus version that supports it.
	Min semver.Version
	// set reports whether group g (and rule r of it, for a rule's field)
	// uses the field; rule < 0 asks about the group.
	set func(g *monv1.RuleGroup, rule int) bool
	// perRule: the field is a rule's, not a group's.
	perRule bool
}

// ruleVersionGates are prometheus-operator v0.94.1
// pkg/operator/rules.go, sanitizePrometheusRulesSpec (lines 155–195): it
// drops these fields, with a log line only, when the Prometheus is older.
var ruleVersionGates = []ruleVersionGate{
	{Field: "limit", Min: semver.MustParse("2.31.0"), set: func(g *monv1.RuleGroup, _ int) bool { return g.Limit != nil }},
	{Field: "query_offset", Min: semver.MustParse("2.53.0"), set: func(g *monv1.RuleGroup, _ int) bool { return g.QueryOffset != nil }},
	{Field: "labels", Min: semver.MustParse("3.0.0"), set: func(g *monv1.RuleGroup, _ int) bool { return len(g.Labels) > 0 }},
	{Field: "keep_firing_for", Min: semver.MustParse("2.42.0"), perRule: true, set: func(g *monv1.RuleGroup, r int) bool { return g.Rules[r].KeepFiringFor != nil }},
}

// prometheusVersion is the version the operator gives p: its spec.version,
// or the operator's default. ok is false for a version it cannot parse
// (the operator refuses such a Prometheus; nothing is judged).
func prometheusVersion(p PrometheusSelectors) (v semver.Version, shown string, ok bool) {
	shown = p.Version
	if shown == "" {
		shown = DefaultPrometheusVersion + " (the operator's default)"
	}
	v, err := semver.ParseTolerant(cmp.Or(p.Version, DefaultPrometheusVersion))
	return v, shown, err == nil
}

// ruleVersionFindings warns, for each Prometheus that loads the rule and
// is older than a field it uses, that the operator drops that field there.
func ruleVersionFindings(o *monv1.PrometheusRule, ns Namespace, cs ClusterState) []Finding {
	var out []Finding
	for _, p := range loaders(cs.Prometheuses, Object{Kind: "PrometheusRule", Namespace: o.Namespace, Labels: o.Labels}, ns) {
		v, shown, ok := prometheusVersion(p)
		if !ok {
			continue
		}
		for _, gate := range ruleVersionGates {
			if !v.LT(gate.Min) {
				continue
			}
			for i := range o.Spec.Groups {
				g := &o.Spec.Groups[i]
				fld := field.NewPath("spec", "groups").Index(i)
				warn := func(fld *field.Path, what string) {
					out = append(out, Finding{Check: CheckVersion, Level: LevelWarn, Err: &field.Error{Type: field.ErrorTypeInvalid, Field: fld.String(), BadValue: field.OmitValueType{},
						Detail: fmt.Sprintf("%s runs Prometheus %s, older than v%s: the operator drops %s there and loads %s without it (raise its spec.version to v%s or later, or remove the field)",
							p.who(), shown, gate.Min, gate.Field, what, gate.Min)}})
				}
				if !gate.perRule {
					if gate.set(g, -1) {
						warn(fld.Child(gate.Field), "group "+g.Name)
					}
					continue
				}
				for j := range g.Rules {
					if gate.set(g, j) {
						warn(fld.Child("rules").Index(j).Child(gate.Field), "the rule")
					}
				}
			}
		}
	}
	return out
}

// relabelActionGates are prometheus-operator v0.94.1
// pkg/prometheus/validation/validator.go, ValidateRelabelConfig: a
// relabeling with one of these actions makes the operator reject the
// whole monitor for a Prometheus older than the minimum (it is left out
// of that Prometheus' configuration, with an Event and a log line).
var relabelActionGates = []struct {
	Actions []string
	Min     semver.Version
}{
	{Actions: []string{"lowercase", "uppercase"}, Min: semver.MustParse("2.36.0")},
	{Actions: []string{"keepequal", "dropequal"}, Min: semver.MustParse("2.41.0")},
}

// relabelingAt is one relabeling of a monitor and where it is.
type relabelingAt struct {
	path *field.Path
	rc   monv1.RelabelConfig
}

// relabelingsAt lists rcs at path[i].
func relabelingsAt(path *field.Path, rcs []monv1.RelabelConfig) []relabelingAt {
	out := make([]relabelingAt, 0, len(rcs))
	for i, rc := range rcs {
		out = append(out, relabelingAt{path.Index(i), rc})
	}
	return out
}

// relabelVersionFindings warns, for each Prometheus that loads the
// monitor obj and is older than an action one of its relabelings uses,
// that the operator rejects the monitor for that Prometheus.
func relabelVersionFindings(obj Object, ns Namespace, cs ClusterState, rels []relabelingAt) []Finding {
	var out []Finding
	for _, p := range loaders(cs.Prometheuses, obj, ns) {
		v, shown, ok := prometheusVersion(p)
		if !ok {
			continue
		}
		for _, r := range rels {
			action := strings.ToLower(r.rc.Action)
			for _, gate := range relabelActionGates {
				if !slices.Contains(gate.Actions, action) || !v.LT(gate.Min) {
					continue
				}
				out = append(out, Finding{Check: CheckVersion, Level: LevelWarn, Err: field.Invalid(r.path.Child("action"), r.rc.Action,
					fmt.Sprintf("%s runs Prometheus %s, older than v%s: the operator rejects this %s for it (%s needs v%s), so that Prometheus scrapes nothing of it (raise its spec.version, or use another action)",
						p.who(), shown, gate.Min, obj.Kind, action, gate.Min))})
			}
		}
	}
	return out
}

// specVersionGates are the monitor fields that
// prometheus-operator v0.94.1 pkg/prometheus/promcfg.go writes into the
// scrape configuration only from a minimum Prometheus version
// (WithMinimumVersion(...).AppendMapItem, and the limitKey table): below
// it, the operator leaves the field out, with a log line. JSON is the
// field's path (dotted when nested) in a ServiceMonitor's, PodMonitor's,
// Probe's or ScrapeConfig's spec, or in one of its spec.endpoints[] or
// spec.podMetricsEndpoints[] (a field sits where its kind declares it:
// authorization is an endpoint's in a ServiceMonitor, the spec's in a
// Probe); Key is its key in the scrape configuration.
var specVersionGates = []struct {
	JSON, Key string
	Min       semver.Version
}{
	{JSON: "targetLimit", Key: "target_limit", Min: semver.MustParse("2.21.0")},
	{JSON: "labelLimit", Key: "label_limit", Min: semver.MustParse("2.27.0")},
	{JSON: "labelNameLengthLimit", Key: "label_name_length_limit", Min: semver.MustParse("2.27.0")},
	{JSON: "labelValueLengthLimit", Key: "label_value_length_limit", Min: semver.MustParse("2.27.0")},
	{JSON: "keepDroppedTargets", Key: "keep_dropped_targets", Min: semver.MustParse("2.47.0")},
	{JSON: "scrapeProtocols", Key: "scrape_protocols", Min: semver.MustParse("2.49.0")},
	{JSON: "fallbackScrapeProtocol", Key: "fallback_scrape_protocol", Min: semver.MustParse("3.0.0")},
	{JSON: "nativeHistogramBucketLimit", Key: "native_histogram_bucket_limit", Min: semver.MustParse("2.45.0")},
	{JSON: "nativeHistogramMinBucketFactor", Key: "native_histogram_min_bucket_factor", Min: semver.MustParse("2.50.0")},
	{JSON: "scrapeClassicHistograms", Key: "scrape_classic_histograms", Min: semver.MustParse("2.45.0")},
	{JSON: "convertClassicHistogramsToNHCB", Key: "convert_classic_histograms_to_nhcb", Min: semver.MustParse("3.0.0")},
	{JSON: "scrapeNativeHistograms", Key: "scrape_native_histograms", Min: semver.MustParse("3.8.0")},
	{JSON: "trackTimestampsStaleness", Key: "track_timestamps_staleness", Min: semver.MustParse("2.48.0")},
	{JSON: "bodySizeLimit", Key: "body_size_limit", Min: semver.MustParse("2.28.0")},
	{JSON: "enableCompression", Key: "enable_compression", Min: semver.MustParse("2.49.0")},
	// The HTTP client options (addHTTPConfigtoYaml, addSafeTLStoYaml,
	// addOAuth2ToYaml, addAuthorizationToYaml).
	{JSON: "authorization", Key: "authorization", Min: semver.MustParse("2.26.0")},
	{JSON: "oauth2", Key: "oauth2", Min: semver.MustParse("2.27.0")},
	{JSON: "followRedirects", Key: "follow_redirects", Min: semver.MustParse("2.26.0")},
	{JSON: "enableHttp2", Key: "enable_http2", Min: semver.MustParse("2.35.0")},
	{JSON: "enableHTTP2", Key: "enable_http2", Min: semver.MustParse("2.35.0")},
	{JSON: "tlsConfig.minVersion", Key: "min_version", Min: semver.MustParse("2.35.0")},
	{JSON: "tlsConfig.maxVersion", Key: "max_version", Min: semver.MustParse("2.41.0")},
	// addProxyConfigtoYaml's cgProxyConfig (proxyUrl has no minimum).
	{JSON: "noProxy", Key: "no_proxy", Min: semver.MustParse("2.43.0")},
	{JSON: "proxyFromEnvironment", Key: "proxy_from_environment", Min: semver.MustParse("2.43.0")},
	{JSON: "proxyConnectHeader", Key: "proxy_connect_header", Min: semver.MustParse("2.43.0")},
}

// newestSpecGate is the newest minimum of specVersionGates: a Prometheus
// at least that new needs no look at the spec.
var newestSpecGate = func() semver.Version {
	var newest semver.Version
	for _, g := range specVersionGates {
		if g.Min.GT(newest) {
			newest = g.Min
		}
	}
	return newest
}()

// nestedField reports whether m sets the dotted path, and its field path
// under at.
func nestedField(m map[string]any, at *field.Path, path string) (*field.Path, bool) {
	for part := range strings.SplitSeq(path, ".") {
		v, set := m[part]
		if !set || v == nil {
			return nil, false
		}
		at = at.Child(part)
		if next, ok := v.(map[string]any); ok {
			m = next
		} else {
			m = nil
		}
	}
	return at, true
}

// specVersionFindings warns, for each Prometheus that loads the monitor
// obj and is older than a field of spec (the typed spec) that it sets,
// that the operator leaves that field out of its configuration there.
func specVersionFindings(obj Object, ns Namespace, cs ClusterState, spec any) []Finding {
	var old []PrometheusSelectors
	for _, p := range loaders(cs.Prometheuses, obj, ns) {
		if v, _, ok := prometheusVersion(p); ok && v.LT(newestSpecGate) {
			old = append(old, p)
		}
	}
	if len(old) == 0 {
		return nil // the common case: no JSON view of the spec is made
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(spec)
	if err != nil {
		return nil
	}
	type use struct {
		path *field.Path
		gate int
	}
	var uses []use
	// Where a field may sit: the spec, and each endpoint.
	type place struct {
		at *field.Path
		m  map[string]any
	}
	places := []place{{field.NewPath("spec"), m}}
	for _, list := range []string{"endpoints", "podMetricsEndpoints"} {
		eps, _ := m[list].([]any)
		for j, ep := range eps {
			if e, ok := ep.(map[string]any); ok {
				places = append(places, place{field.NewPath("spec", list).Index(j), e})
			}
		}
	}
	for _, pl := range places {
		for i, g := range specVersionGates {
			if at, set := nestedField(pl.m, pl.at, g.JSON); set {
				uses = append(uses, use{at, i})
			}
		}
	}
	var out []Finding
	for _, p := range old {
		v, shown, _ := prometheusVersion(p)
		for _, u := range uses {
			g := specVersionGates[u.gate]
			if !v.LT(g.Min) {
				continue
			}
			out = append(out, Finding{Check: CheckVersion, Level: LevelWarn, Err: &field.Error{Type: field.ErrorTypeInvalid, Field: u.path.String(), BadValue: field.OmitValueType{},
				Detail: fmt.Sprintf("%s runs Prometheus %s, older than v%s: the operator leaves %s out of its scrape configuration there (raise its spec.version to v%s or later, or remove the field)",
					p.who(), shown, g.Min, g.Key, g.Min)}})
		}
	}
	return out
}
