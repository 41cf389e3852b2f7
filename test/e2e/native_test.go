package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/promenroll/promenroll/internal/testdiff"
	"github.com/promenroll/promenroll/internal/testwait"
	"github.com/promenroll/promenroll/policy"
	"github.com/promenroll/promenroll/test/cluster"
)

// nativeCorpus is one namespace's 21 objects for the engine differential:
// every enroll rule of basePolicy, substitutions present and missing, a
// label and a pod template label or annotation the object already has
// (kept), the opt-out on a workload and on a Service, and each pod owner
// kind.
const nativeCorpus = `apiVersion: apps/v1
kind: Deployment
metadata: {name: plain, namespace: NS}
spec:
  selector: {matchLabels: {app: plain}}
  template:
    metadata: {labels: {app: plain}}
    spec: {containers: [{name: c, image: registry.example/app:1}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: envoy, namespace: NS, labels: {app.kubernetes.io/name: envoy}}
spec:
  selector: {matchLabels: {app: envoy}}
  template:
    metadata: {labels: {app: envoy}}
    spec: {containers: [{name: c, image: registry.example/envoy:1}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: cart, namespace: NS, labels: {app.kubernetes.io/name: cart, app.kubernetes.io/part-of: shop}}
spec:
  selector: {matchLabels: {app: cart}}
  template:
    metadata: {labels: {app: cart}}
    spec: {containers: [{name: c, image: registry.example/cart:1}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: nameless, namespace: NS, labels: {app.kubernetes.io/part-of: shop}}
spec:
  selector: {matchLabels: {app: nameless}}
  template:
    metadata: {labels: {app: nameless}}
    spec: {containers: [{name: c, image: registry.example/app:1}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: kept, namespace: NS, labels: {monitoring.promenroll.io/scrape: "false"}}
spec:
  selector: {matchLabels: {app: kept}}
  template:
    metadata: {labels: {app: kept, monitoring.promenroll.io/scrape: "false"}}
    spec: {containers: [{name: c, image: registry.example/app:1}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: opted-out, namespace: NS, labels: {promenroll.io/enroll: "false"}}
spec:
  selector: {matchLabels: {app: opted-out}}
  template:
    metadata: {labels: {app: opted-out}}
    spec: {containers: [{name: c, image: registry.example/app:1}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: NS, labels: {app.kubernetes.io/name: db, app.kubernetes.io/part-of: shop}}
spec:
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: c, image: registry.example/db:1}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: NS}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: c, image: registry.example/agent:1}]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate, namespace: NS}
spec:
  template:
    spec: {restartPolicy: Never, containers: [{name: c, image: registry.example/migrate:1}]}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: report, namespace: NS}
spec:
  schedule: "0 * * * *"
  jobTemplate:
    spec:
      template:
        spec: {restartPolicy: Never, containers: [{name: c, image: registry.example/report:1}]}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: NS, labels: {app.kubernetes.io/name: api}}
spec:
  selector: {app: api}
  ports: [{name: metrics, port: 9090}]
---
apiVersion: v1
kind: Service
metadata: {name: anonymous, namespace: NS}
spec:
  selector: {app: anonymous}
  ports: [{name: metrics, port: 9090}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: cart-set, namespace: NS, labels: {app.kubernetes.io/name: cart, app.kubernetes.io/part-of: shop, shop.example/component: basket}}
spec:
  selector: {matchLabels: {app: cart-set}}
  template:
    metadata: {labels: {app: cart-set}}
    spec: {containers: [{name: c, image: registry.example/cart:1}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: envoy-annotated, namespace: NS, labels: {app.kubernetes.io/name: envoy}}
spec:
  selector: {matchLabels: {app: envoy-annotated}}
  template:
    metadata: {labels: {app: envoy-annotated}, annotations: {prometheus.io/port: "9901"}}
    spec: {containers: [{name: c, image: registry.example/envoy:1, ports: [{name: admin, containerPort: 9901}]}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: cache, namespace: NS}
spec:
  serviceName: cache
  selector: {matchLabels: {app: cache}}
  template:
    metadata: {labels: {app: cache, monitoring.promenroll.io/scrape: "false"}}
    spec: {containers: [{name: c, image: registry.example/cache:1}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent-shop, namespace: NS, labels: {app.kubernetes.io/name: agent, app.kubernetes.io/part-of: shop}}
spec:
  selector: {matchLabels: {app: agent-shop}}
  template:
    metadata: {labels: {app: agent-shop}}
    spec: {containers: [{name: c, image: registry.example/agent:1}]}
---
apiVersion: v1
kind: Service
metadata: {name: api-team, namespace: NS, labels: {app.kubernetes.io/name: api, team: platform}}
spec:
  selector: {app: api}
  ports: [{name: metrics, port: 9090}]
---
apiVersion: v1
kind: Service
metadata: {name: api-opted-out, namespace: NS, labels: {app.kubernetes.io/name: api, promenroll.io/enroll: "false"}}
spec:
  selector: {app: api}
  ports: [{name: metrics, port: 9090}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: report-labelled, namespace: NS, labels: {monitoring.promenroll.io/scrape: "true"}}
spec:
  schedule: "0 * * * *"
  jobTemplate:
    spec:
      template:
        metadata: {labels: {monitoring.promenroll.io/scrape: "false"}}
        spec: {restartPolicy: Never, containers: [{name: c, image: registry.example/report:1}]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate-shop, namespace: NS, labels: {app.kubernetes.io/part-of: shop}}
spec:
  template:
    metadata: {labels: {app: migrate-shop}}
    spec: {restartPolicy: Never, containers: [{name: c, image: registry.example/migrate:1}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db-nameless, namespace: NS, labels: {app.kubernetes.io/part-of: shop}}
spec:
  serviceName: db
  selector: {matchLabels: {app: db-nameless}}
  template:
    metadata: {labels: {app: db-nameless}}
    spec: {containers: [{name: c, image: registry.example/db:1}]}
`

// dropJobLabels removes the labels the Job controller adds to a Job and
// its template: what enrollment wrote is the rest.
func dropJobLabels(labels map[string]any) {
	for k := range labels {
		if strings.HasPrefix(k, "batch.kubernetes.io/") || k == "controller-uid" || k == "job-name" {
			delete(labels, k)
		}
	}
}

// enrolledState is what enrollment wrote on each object of a namespace:
// its labels and annotations, and its pod template's.
func enrolledState(t *testing.T, ns string) map[string]any {
	t.Helper()
	out, _ := kubectl(t, "", "get", "deployments,statefulsets,daemonsets,jobs,cronjobs,services", "-n", ns, "-o", "json")
	var list struct {
		Items []map[string]any
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	state := map[string]any{}
	for _, o := range list.Items {
		meta := o["metadata"].(map[string]any)
		labels, _ := meta["labels"].(map[string]any)
		dropJobLabels(labels)
		entry := map[string]any{"labels": labels}
		// The controllers' own annotations come when they get to the
		// object: what enrollment wrote is the rest.
		if a, ok := meta["annotations"].(map[string]any); ok {
			for _, k := range []string{"kubectl.kubernetes.io/last-applied-configuration", "deployment.kubernetes.io/revision", "deprecated.daemonset.template.generation"} {
				delete(a, k)
			}
			if len(a) > 0 {
				entry["annotations"] = a
			}
		}
		spec, _ := o["spec"].(map[string]any)
		tmpl, _ := spec["template"].(map[string]any)
		if jt, ok := spec["jobTemplate"].(map[string]any); ok {
			tmpl, _ = jt["spec"].(map[string]any)["template"].(map[string]any)
		}
		if tm, ok := tmpl["metadata"].(map[string]any); ok {
			tl, _ := tm["labels"].(map[string]any)
			dropJobLabels(tl)
			entry["templateLabels"], entry["templateAnnotations"] = tl, tm["annotations"]
		}
		state[o["kind"].(string)+"/"+meta["name"].(string)] = entry
	}
	return state
}

// TestNativeEnrollmentEqualsTheWebhookWithPromenrollStopped: the policies
// `promenroll compile` prints for the suite's policy, applied to the real
// kube-apiserver, enroll with every promenroll process stopped exactly
// what the webhook enrolls: the same corpus, in a namespace with a team
// label and in a dry-run one, created, then replaced without the labels
// (UPDATE), gives the same stored labels and annotations object by object
// (21 objects in each of two namespaces, created and updated).
func TestNativeEnrollmentEqualsTheWebhookWithPromenrollStopped(t *testing.T) {
	pairs := []struct {
		webhook, native string
		annotations     map[string]string
	}{
		{"nat-webhook", "nat-native", nil},
		{"nat-webhook-dry", "nat-native-dry", map[string]string{"promenroll.io/mode": "dry-run"}},
	}
	team := map[string]string{"team": "payments"}
	docs := func(ns string) []string {
		return strings.Split(strings.ReplaceAll(nativeCorpus, "namespace: NS", "namespace: "+ns), "---\n")
	}
	// replace retries a conflict (bounded): the objects' controllers
	// write them too. It returns kubectl's standard error.
	replace := func(doc string) string {
		t.Helper()
		for attempt := 1; ; attempt++ {
			_, errOut, err := c.Kubectl(t.Context(), doc, "replace", "-f", "-")
			if err == nil {
				return errOut
			}
			if !strings.Contains(errOut, "the object has been modified") || attempt == 5 {
				t.Fatalf("kubectl replace: %v: %s", err, errOut)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	// run applies the corpus object by object, then replaces each without
	// the labels enrollment added (UPDATE; a Job's template is immutable:
	// it is left out), and returns the warnings given, by object and
	// operation, as the webhook words them: a native policy's names
	// before each removed, the namespace's name replaced by NS, and the
	// scrape annotation checks, which only the webhook makes, left out.
	run := func(ns string) map[string][]string {
		t.Helper()
		warnings := map[string][]string{}
		record := func(id, stderr string) {
			for _, l := range strings.Split(stderr, "\n") {
				w, ok := strings.CutPrefix(l, "Warning: ")
				if !ok {
					continue
				}
				w = nativeWarningPrefix.ReplaceAllString(w, "")
				if policy.IsScrapeWarning(w) {
					continue
				}
				warnings[id] = append(warnings[id], strings.ReplaceAll(w, ns, "NS"))
			}
			slices.Sort(warnings[id])
		}
		for _, d := range docs(ns) {
			_, errOut := kubectl(t, d, "apply", "-f", "-")
			record("CREATE "+objectID(d), errOut)
		}
		for _, d := range docs(ns) {
			if !strings.Contains(d, "kind: Job\n") {
				record("UPDATE "+objectID(d), replace(d))
			}
		}
		return warnings
	}
	webhookWarnings := map[string]map[string][]string{}
	for _, p := range pairs {
		createNamespace(t, p.webhook, team, p.annotations)
		webhookWarnings[p.webhook] = run(p.webhook)
		if n := len(enrolledState(t, p.webhook)); n != 21 {
			t.Fatalf("%s: %d objects stored, want the corpus' 21", p.webhook, n)
		}
	}

	native, _, err := c.Promenroll(t.Context(), "compile", "--policy", policyFile, "--namespace", cluster.Namespace)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	// The API server compiles every CEL expression when the policy is
	// created: a program it refuses fails here.
	kubectl(t, native, "apply", "-f", "-")
	c.StopWebhook()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if _, errOut, err := c.Kubectl(ctx, native, "delete", "-f", "-"); err != nil {
			t.Errorf("delete the native policies: %v: %s", err, errOut)
		}
		if err := c.StartWebhook(ctx); err != nil {
			t.Errorf("restart promenroll: %v", err)
		}
	})
	// The API server loads new admission policies within seconds: a
	// probe Deployment is made again until it is enrolled and warned
	// about (a label it keeps), so both the mutating and the validating
	// policies are in force.
	createNamespace(t, "nat-probe", team, nil)
	const probe = `apiVersion: apps/v1
kind: Deployment
metadata: {name: probe, namespace: nat-probe, labels: {monitoring.promenroll.io/scrape: "false"}}
spec:
  selector: {matchLabels: {app: probe}}
  template:
    metadata: {labels: {app: probe}}
    spec: {containers: [{name: c, image: registry.example/app:1}]}
`
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Second) {
		_, errOut := kubectl(t, probe, "apply", "-f", "-")
		labels, _ := enrolledState(t, "nat-probe")["Deployment/probe"].(map[string]any)["templateLabels"].(map[string]any)
		if strings.Contains(errOut, "kept; rule workloads wants") && labels["monitoring.promenroll.io/scrape"] == "true" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the native policies are not in force within 30s: %s", errOut)
		}
		kubectl(t, probe, "delete", "-f", "-")
	}
	// audit tells which engine enrolls: the installed policies were
	// compiled from this policy, and the policy says webhook (both
	// enroll); with engine native they are current; for a policy with
	// another rule they are stale.
	audit := func(doc, want string) {
		t.Helper()
		file := filepath.Join(t.TempDir(), "policy.yaml")
		if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		out, errOut, _ := c.Promenroll(t.Context(), "audit", "--policy", file, "--kubeconfig", c.Kubeconfig, "-n", "nat-probe")
		if !strings.Contains(out, want) {
			t.Errorf("audit of %s: want %q in:\n%s%s", want, want, out, errOut)
		}
	}
	audit(basePolicy, "enrollment.engine is webhook, and 3 native enrollment policies are installed: both enroll")
	nativeEngine := basePolicy + "enrollment: {engine: native}\n"
	audit(nativeEngine, "audit: native enrollment: 3 policies, compiled from this policy")
	audit(strings.Replace(nativeEngine, "enroll:\n", "enroll:\n- {name: extra, kinds: [Deployment], labels: {extra: \"yes\"}}\n", 1), "native enrollment policies compiled from another policy enroll by its rules")
	for _, p := range pairs {
		createNamespace(t, p.native, team, p.annotations)
		warnings := run(p.native)
		got, want := enrolledState(t, p.native), enrolledState(t, p.webhook)
		if d := testdiff.Diff(want, got); d != "" {
			t.Errorf("%s: native enrollment differs from the webhook's (%s) (-webhook +native):\n%s", p.native, p.webhook, d)
		}
		if d := testdiff.Diff(webhookWarnings[p.webhook], warnings); d != "" {
			t.Errorf("%s: native warnings differ from the webhook's (%s) (-webhook +native):\n%s", p.native, p.webhook, d)
		}
		n := 0
		for _, ws := range warnings {
			n += len(ws)
		}
		t.Logf("%s: %d warnings over %d objects, created and updated, as the webhook's", p.native, n, len(got))
		if n == 0 {
			t.Errorf("%s: no warning at all: the corpus no longer exercises them", p.native)
		}
	}
}

var (
	// nativeWarningPrefix is what the API server puts before a
	// ValidatingAdmissionPolicy's warning.
	nativeWarningPrefix = regexp.MustCompile(`^Validation failed for ValidatingAdmissionPolicy '[^']*' with binding '[^']*': `)
)

// objectID is a manifest's kind/name.
func objectID(doc string) string {
	kind := regexp.MustCompile(`(?m)^kind: (\S+)`).FindStringSubmatch(doc)
	name := regexp.MustCompile(`(?m)^metadata: \{name: ([^,}]+)`).FindStringSubmatch(doc)
	if kind == nil || name == nil {
		return doc
	}
	return kind[1] + "/" + name[1]
}

// TestNativePoliciesOfTheMostRulesAreAccepted: the API server compiles and
// accepts the native policies of policy.MaxNativeRules rules, selectors and
// substitutions in each, and they enroll by their first rule and their
// last; `promenroll compile` refuses a policy of 100 rules, saying why.
func TestNativePoliciesOfTheMostRulesAreAccepted(t *testing.T) {
	write := func(rules int) string {
		var b strings.Builder
		b.WriteString("apiVersion: promenroll.io/v1alpha1\nkind: Policy\nenroll:\n")
		for i := range rules {
			fmt.Fprintf(&b, "- name: r%d\n  kinds: [Deployment, CronJob, Service]\n  selector: {matchExpressions: [{key: app, operator: In, values: [a%d, b%d]}]}\n  namespaceSelector: {matchLabels: {tier: t%d}}\n  labels: {team%d: \"{namespaceLabel:team}-{label:app}\"}\n  podTemplateLabels: {scrape%d: \"true\"}\n", i, i, i, i, i, i)
		}
		file := filepath.Join(t.TempDir(), "policy.yaml")
		if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return file
	}
	if _, errOut, err := c.Promenroll(t.Context(), "compile", "--policy", write(100)); err == nil || !strings.Contains(errOut, "at most 32 enroll rules, the policy has 100") {
		t.Errorf("compile of 100 rules: %v: %s", err, errOut)
	}
	rules := policy.MaxNativeRules
	native, _, err := c.Promenroll(t.Context(), "compile", "--policy", write(rules), "--name", "most")
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	start := time.Now()
	out, _ := kubectl(t, native, "apply", "-f", "-")
	if n, want := strings.Count(out, " created"), strings.Count(native, "\nkind: "); n != want || strings.Count(out, "mutatingadmissionpolicy.") != 3 {
		t.Errorf("%d objects created, want %d, three mutating policies among them:\n%s", n, want, out)
	}
	t.Logf("%d rules: %d bytes of policies, created in %s", rules, len(native), time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		_, _, _ = c.Kubectl(ctx, native, "delete", "-f", "-")
	})
	// The first rule and the last: their keys land in different mutations
	// (an expression is at most 100,000 code points), each applied to
	// what the ones before made.
	for _, i := range []int{0, rules - 1} {
		ns := fmt.Sprintf("most-%d", i)
		createNamespace(t, ns, map[string]string{"tier": fmt.Sprintf("t%d", i), "team": "blue"}, nil)
		doc := fmt.Sprintf("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: %s, labels: {app: a%d}}\nspec:\n  selector: {matchLabels: {app: a%d}}\n  template:\n    metadata: {labels: {app: a%d}}\n    spec: {containers: [{name: c, image: registry.example/app:1}]}\n", ns, i, i, i)
		want := fmt.Sprintf("team%d=blue-a%d scrape%d=true", i, i, i)
		testwait.For(t, ns+": "+want, 30*time.Second, func() (bool, error) {
			got, _ := kubectl(t, doc, "create", "--dry-run=server", "-o", fmt.Sprintf(`jsonpath=team%d={.metadata.labels.team%d} scrape%d={.spec.template.metadata.labels.scrape%d}`, i, i, i, i), "-f", "-")
			return got == want, fmt.Errorf("got %q", got)
		})
	}
}
