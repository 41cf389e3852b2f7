package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/promenroll/promenroll/internal/testwait"
	"github.com/promenroll/promenroll/policy"
)

// engineView is what one engine says of one object: the labels and
// annotations added ("field key=value", sorted) and the warnings (sorted;
// the mutating and the validating side's each fitted to the API server's
// limits, as kubectl receives them).
type engineView struct {
	Added    []string
	Warnings []string
}

// report is the part of check's and audit's `-o json` the test reads.
type report struct {
	Objects []struct {
		Kind, Namespace, Name string
		Labels                []struct{ Field, Key, Value string }
		Findings              []struct{ Level, Code, Field, Message string }
	}
}

// viewsOf reads a check or audit report into views by kind/namespace/name.
func viewsOf(t *testing.T, js string) map[string]engineView {
	t.Helper()
	var r report
	if err := json.Unmarshal([]byte(js), &r); err != nil {
		t.Fatalf("not a report: %v\n%s", err, js)
	}
	out := map[string]engineView{}
	for _, o := range r.Objects {
		var v engineView
		for _, l := range o.Labels {
			v.Added = append(v.Added, l.Field+" "+l.Key+"="+l.Value)
		}
		var mutating, validating []string
		for _, f := range o.Findings {
			switch {
			case f.Level != "warn":
			case f.Code == "admission-warning":
				mutating = append(mutating, f.Message)
			case f.Field != "":
				validating = append(validating, f.Field+": "+f.Message)
			default:
				validating = append(validating, f.Message)
			}
		}
		v.Warnings = append(policy.LimitWarnings(mutating), policy.LimitWarnings(validating)...)
		out[o.Kind+" "+o.Namespace+"/"+o.Name] = v.sorted()
	}
	return out
}

func (v engineView) sorted() engineView {
	slices.Sort(v.Added)
	slices.Sort(v.Warnings)
	return v
}

// corpusDoc is one document of the corpus.
type corpusDoc struct {
	text string
	js   map[string]any
	key  string
	kind string
}

func readCorpus(t *testing.T, path string) []corpusDoc {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var docs []corpusDoc
	for _, text := range strings.Split(string(data), "\n---\n") {
		var d corpusDoc
		d.text = text
		if err := yaml.Unmarshal([]byte(text), &d.js); err != nil {
			t.Fatalf("corpus: %v", err)
		}
		meta, _ := d.js["metadata"].(map[string]any)
		d.kind, _ = d.js["kind"].(string)
		d.key = fmt.Sprintf("%s %v/%v", d.kind, meta["namespace"], meta["name"])
		docs = append(docs, d)
	}
	return docs
}

// unstorable marks a corpus document the API server refuses without the
// webhook (its schema refuses what only the mutation fixes).
func unstorable(d corpusDoc) bool {
	return strings.Contains(d.text, "# one-engine: not storable without the webhook")
}

// added is what the API server stored beyond the document: labels, the
// prometheus.io/ annotations (kubectl and the controllers write others),
// and rule label and annotation values that became strings.
func added(in, stored map[string]any) []string {
	var out []string
	at := func(m map[string]any, path ...string) map[string]any {
		for _, p := range path {
			m, _ = m[p].(map[string]any)
		}
		return m
	}
	diff := func(field string, keep func(string) bool, path ...string) {
		was, now := at(in, path...), at(stored, path...)
		for _, k := range slices.Sorted(maps.Keys(now)) {
			if _, isString := was[k].(string); keep(k) && (!isString || was[k] != now[k]) {
				out = append(out, fmt.Sprintf("%s %s=%v", field, k, now[k]))
			}
		}
	}
	// The Job controller's labels, which the API server adds to a Job's
	// pod template (and selector) itself.
	all := func(k string) bool {
		return !strings.HasPrefix(k, "batch.kubernetes.io/") && k != "controller-uid" && k != "job-name"
	}
	scrape := func(k string) bool { return strings.HasPrefix(k, "prometheus.io/") }
	diff("metadata.labels", all, "metadata", "labels")
	diff("metadata.annotations", scrape, "metadata", "annotations")
	diff("spec.template.metadata.labels", all, "spec", "template", "metadata", "labels")
	diff("spec.template.metadata.annotations", scrape, "spec", "template", "metadata", "annotations")
	diff("spec.jobTemplate.spec.template.metadata.labels", all, "spec", "jobTemplate", "spec", "template", "metadata", "labels")
	diff("spec.jobTemplate.spec.template.metadata.annotations", scrape, "spec", "jobTemplate", "spec", "template", "metadata", "annotations")
	groups := func(m map[string]any) []any { g, _ := at(m, "spec")["groups"].([]any); return g }
	for i, g := range groups(stored) {
		rules, _ := g.(map[string]any)["rules"].([]any)
		for j := range rules {
			for _, what := range []string{"labels", "annotations"} {
				inRule := groups(in)[i].(map[string]any)["rules"].([]any)[j].(map[string]any)
				outRule := rules[j].(map[string]any)
				wasM, _ := inRule[what].(map[string]any)
				nowM, _ := outRule[what].(map[string]any)
				for _, k := range slices.Sorted(maps.Keys(nowM)) {
					if _, isString := wasM[k].(string); !isString {
						out = append(out, fmt.Sprintf("spec.groups.%d.rules.%d.%s %s=%v", i, j, what, k, nowM[k]))
					}
				}
			}
		}
	}
	return out
}

// waitCached waits until promenroll's caches hold a Service or workload of
// the corpus: a server-side dry-run of a probe monitor selecting it by its
// diff.promenroll.io/object label is no longer told it matches nothing.
func waitCached(t *testing.T, d corpusDoc) {
	t.Helper()
	name, _ := d.js["metadata"].(map[string]any)["name"].(string)
	probe, nothing := "", ""
	switch d.kind {
	case "Service":
		probe = "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: cache-probe, namespace: diff}\nspec: {selector: {matchLabels: {diff.promenroll.io/object: %s}}, endpoints: [{port: probe}]}\n"
		nothing = "matches no Service"
	default:
		probe = "apiVersion: monitoring.coreos.com/v1\nkind: PodMonitor\nmetadata: {name: cache-probe, namespace: diff}\nspec: {selector: {matchLabels: {diff.promenroll.io/object: %s}}, podMetricsEndpoints: [{port: probe}]}\n"
		nothing = "matches the pod template of no"
	}
	testwait.For(t, "promenroll's cache holds "+d.key, 30*time.Second, func() (bool, error) {
		_, errOut, err := c.Kubectl(t.Context(), fmt.Sprintf(probe, name), "apply", "--dry-run=server", "-f", "-")
		if err != nil {
			return false, fmt.Errorf("%w %s", err, errOut)
		}
		if strings.Contains(errOut, nothing) {
			return false, errors.New(errOut)
		}
		return true, nil
	})
}

// withoutWebhooks removes promenroll's webhook configurations, runs fn and
// puts them back; the API server's view of both is waited for each way.
func withoutWebhooks(t *testing.T, fn func()) {
	t.Helper()
	// Not t.Context(): the restore may run as a cleanup, after it is done.
	ctx := context.Background()
	var mut admissionregistrationv1.MutatingWebhookConfiguration
	var val admissionregistrationv1.ValidatingWebhookConfiguration
	for _, o := range []client.Object{&mut, &val} {
		if err := c.Client.Get(ctx, client.ObjectKey{Name: "promenroll"}, o); err != nil {
			t.Fatal(err)
		}
	}
	saved := []client.Object{mut.DeepCopy(), val.DeepCopy()}
	restored := false
	restore := func() {
		if restored {
			return
		}
		restored = true
		for _, o := range saved {
			o.SetResourceVersion("")
			o.SetUID("")
			o.SetCreationTimestamp(metav1.Time{})
			o.SetManagedFields(nil)
			if err := c.Client.Create(ctx, o); err != nil {
				t.Errorf("restore %T: %v", o, err)
			}
		}
		waitHooked(t, true)
	}
	t.Cleanup(restore)
	for _, o := range []client.Object{&mut, &val} {
		if err := c.Client.Delete(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	waitHooked(t, false)
	fn()
	restore()
}

// waitHooked waits until the API server calls promenroll's webhooks
// (hooked) or does not: a dry-run Service gets the enrollment label, and a
// PrometheusRule that does not parse is refused, or neither.
func waitHooked(t *testing.T, hooked bool) {
	t.Helper()
	svc := "apiVersion: v1\nkind: Service\nmetadata: {name: hook-probe, namespace: diff, labels: {app.kubernetes.io/name: probe}}\nspec: {ports: [{port: 80}]}\n"
	rule := "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata: {name: hook-probe, namespace: diff}\nspec: {groups: [{name: g, rules: [{record: 'x:y:z', expr: 'up =='}]}]}\n"
	testwait.True(t, "the API server "+map[bool]string{true: "calls", false: "stops calling"}[hooked]+" promenroll's webhooks", 30*time.Second, func() bool {
		out, _, _ := c.Kubectl(context.Background(), svc, "create", "--dry-run=server", "-o", "json", "-f", "-")
		_, _, ruleErr := c.Kubectl(context.Background(), rule, "create", "--dry-run=server", "-f", "-")
		return strings.Contains(out, scrape) == hooked && (ruleErr != nil) == hooked
	})
}

// TestOneEngine is the differential test of the one engine: a corpus
// applied with kubectl one document at a time through the webhooks
// (serve), the same file through `promenroll check`, and the same objects
// stored with no webhook then `promenroll audit`ed give, for every object,
// the same added labels and annotations and the same warnings.
func TestOneEngine(t *testing.T) {
	corpusPath, err := filepath.Abs(filepath.Join("testdata", "differential.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	docs := readCorpus(t, corpusPath)
	if len(docs) < 20 {
		t.Fatalf("the corpus has %d objects, want at least 20", len(docs))
	}
	for _, ns := range []string{"diff", "diff-excluded"} {
		createNamespace(t, ns, map[string]string{"team": "payments"}, nil)
	}
	// Serve, check and audit run the base policy with Argo Rollouts
	// declared, so the corpus' Rollout goes through the declared entry.
	var probe string
	for _, d := range docs {
		if d.kind == "Rollout" {
			probe = d.text
		}
	}
	policyPath := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policyPath, []byte(declareRollouts(t, probe)), 0o644); err != nil {
		t.Fatal(err)
	}

	// check, offline, with the namespaces' labels as the cluster has them.
	out, errOut, err := c.Promenroll(t.Context(), "check", "--policy", policyPath, "-o", "json",
		"--namespace-labels", "diff=team=payments,diff=kubernetes.io/metadata.name=diff,diff-excluded=team=payments,diff-excluded=kubernetes.io/metadata.name=diff-excluded", corpusPath)
	if err != nil {
		t.Fatalf("check: %v\n%s\n%s", err, out, errOut)
	}
	fromCheck := viewsOf(t, out)

	// serve: each document through kubectl and the webhooks, in order.
	fromServe := map[string]engineView{}
	monitorsStarted := false
	for _, d := range docs {
		if strings.HasPrefix(d.js["apiVersion"].(string), "monitoring.coreos.com/") && d.kind != "Prometheus" && !monitorsStarted {
			monitorsStarted = true
			for _, dd := range docs {
				if strings.Contains(dd.text, "diff.promenroll.io/object") && (dd.kind == "Service" || slices.Contains([]string{"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}, dd.kind)) && dd.key != "Deployment diff/private" {
					waitCached(t, dd)
				}
			}
		}
		_, errOut := kubectl(t, d.text, "apply", "-f", "-")
		var v engineView
		for _, line := range strings.Split(errOut, "\n") {
			if w, ok := strings.CutPrefix(line, "Warning: "); ok {
				v.Warnings = append(v.Warnings, w)
			}
		}
		meta := d.js["metadata"].(map[string]any)
		got, _ := kubectl(t, "", "get", strings.ToLower(d.kind), meta["name"].(string), "-n", meta["namespace"].(string), "-o", "json")
		var stored map[string]any
		if err := json.Unmarshal([]byte(got), &stored); err != nil {
			t.Fatal(err)
		}
		in, err := json.Marshal(d.js)
		if err != nil {
			t.Fatal(err)
		}
		var input map[string]any
		_ = json.Unmarshal(in, &input)
		v.Added = added(input, stored)
		fromServe[d.key] = v.sorted()
	}

	// audit: the same objects stored with no webhook.
	kubectl(t, "", "delete", "--wait=true", "--timeout=2m", "-f", corpusPath)
	withoutWebhooks(t, func() {
		for _, d := range docs {
			_, errOut, err := c.Kubectl(t.Context(), d.text, "apply", "-f", "-")
			if unstorable(d) {
				if err == nil {
					t.Errorf("%s was stored without the webhook; the corpus says the API server refuses it", d.key)
				}
				continue
			}
			if err != nil {
				t.Fatalf("store %s without the webhook: %v\n%s", d.key, err, errOut)
			}
		}
	})
	fromAudit := map[string]engineView{}
	for _, ns := range []string{"diff", "diff-excluded"} {
		// Exit code 1 only means something would be refused; the report
		// says what.
		out, errOut, _ := c.Promenroll(t.Context(), "audit", "--policy", policyPath, "--kubeconfig", c.Kubeconfig, "-n", ns, "-o", "json")
		if !strings.HasPrefix(strings.TrimSpace(out), "{") {
			t.Fatalf("audit -n %s: %s\n%s", ns, out, errOut)
		}
		maps.Copy(fromAudit, viewsOf(t, out))
	}

	labelled, warned := 0, 0
	for _, d := range docs {
		serve := fromServe[d.key]
		if d.kind == "Prometheus" {
			continue
		}
		if len(serve.Added) > 0 {
			labelled++
		}
		if len(serve.Warnings) > 0 {
			warned++
		}
		if diff := cmp.Diff(serve, fromCheck[d.key], cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: serve and check differ (-serve +check):\n%s", d.key, diff)
		}
		if unstorable(d) {
			continue
		}
		if diff := cmp.Diff(serve, fromAudit[d.key], cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: serve and audit differ (-serve +audit):\n%s", d.key, diff)
		}
	}
	t.Logf("%d objects: %d labelled, %d warned, the same in serve, check and audit", len(docs), labelled, warned)
	if labelled < 12 || warned < 8 {
		t.Errorf("the corpus exercises too little: %d objects labelled, %d warned", labelled, warned)
	}
}
