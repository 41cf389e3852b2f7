package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/promenroll/promenroll/test/cluster"
)

// TestACronJobsJobPodIsAnUpTargetWhileItRuns: a CronJob applied with no
// monitoring label is enrolled at the pod template of its job template;
// the real kube-controller-manager makes its Job at the next minute and the
// Job's pod from that template, the harness runs the pod, and the shipped
// PodMonitor scrapes it: a target that is up in Prometheus while the Job
// runs, with the pod's owner chain CronJob → Job → Pod.
func TestACronJobsJobPodIsAnUpTargetWhileItRuns(t *testing.T) {
	m := monitoringStack(t)
	ns := "scrape-batch"
	createNamespace(t, ns, nil, nil)

	applied := time.Now()
	kubectl(t, fmt.Sprintf(`apiVersion: batch/v1
kind: CronJob
metadata: {name: report, namespace: %s, labels: {app: report}}
spec:
  schedule: "* * * * *"
  concurrencyPolicy: Forbid
  successfulJobsHistoryLimit: 1
  jobTemplate:
    spec:
      template:
        metadata: {labels: {app: report}}
        spec:
          restartPolicy: Never
          containers:
          - name: app
            image: registry.example/report:1.0
            ports: [{name: metrics, containerPort: 9090}]
`, ns), "apply", "-f", "-")

	var cj batchv1.CronJob
	if err := c.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "report"}, &cj); err != nil {
		t.Fatal(err)
	}
	if got := cj.Spec.JobTemplate.Spec.Template.Labels["monitoring.promenroll.io/scrape"]; got != "true" {
		t.Fatalf("the stored CronJob's spec.jobTemplate.spec.template labels %v: want monitoring.promenroll.io/scrape=true", cj.Spec.JobTemplate.Spec.Template.Labels)
	}

	tg := upTarget(t, m, podPool, ns, "report-")
	t.Logf("measured: kubectl apply of a CronJob to its Job's pod's first successful scrape: %s (the schedule fires at the next minute)", time.Since(applied).Round(100*time.Millisecond))
	if !strings.HasSuffix(tg.ScrapeURL, ":9090/metrics") || tg.Labels["container"] != "app" {
		t.Errorf("target %s %v: want the app container's port 9090 at /metrics", tg.ScrapeURL, tg.Labels)
	}
	var pod corev1.Pod
	if err := c.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: tg.Labels["pod"]}, &pod); err != nil {
		t.Fatal(err)
	}
	job := controllerOf(pod.OwnerReferences)
	if job == "" || !strings.HasPrefix(job, "Job/report-") {
		t.Fatalf("pod %s is owned by %q, want a Job of the CronJob", pod.Name, job)
	}
	var j batchv1.Job
	if err := c.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: strings.TrimPrefix(job, "Job/")}, &j); err != nil {
		t.Fatal(err)
	}
	if owner := controllerOf(j.OwnerReferences); owner != "CronJob/report" {
		t.Errorf("Job %s is owned by %q, want CronJob/report", j.Name, owner)
	}
	waitForQuery(t, m, fmt.Sprintf(`up{namespace=%q, pod=%q} == 1`, ns, pod.Name))
	// No more Jobs: the test ends with the one it scraped.
	kubectl(t, "", "-n", ns, "patch", "cronjob", "report", "--type=merge", "-p", `{"spec":{"suspend":true}}`)
}

// controllerOf names the controller among owner references, as Kind/name.
func controllerOf(refs []metav1.OwnerReference) string {
	for _, r := range refs {
		if r.Controller != nil && *r.Controller {
			return r.Kind + "/" + r.Name
		}
	}
	return ""
}

// rolloutCRD has the shape of Argo Rollouts' Rollout where promenroll reads
// it (a pod template at spec.template); the rest of the schema is left
// open. The argo-rollouts module is not imported for one CRD: it would pull
// Argo's controller dependencies into the test modules.
const rolloutCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: rollouts.argoproj.io}
spec:
  group: argoproj.io
  names: {kind: Rollout, listKind: RolloutList, plural: rollouts, singular: rollout, shortNames: [ro]}
  scope: Namespaced
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-preserve-unknown-fields: true
            properties:
              template:
                type: object
                x-kubernetes-preserve-unknown-fields: true
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
`

// declareRollouts installs the Rollout CRD, adds rollouts to the enrolling
// webhook's rules (as the chart renders policy.kinds) and puts in force
// the base policy with Rollout declared and enrolled by the workloads rule,
// which it returns; probe is a Rollout whose server-side dry-run says when
// the policy is in force. All is undone when the test ends.
func declareRollouts(t *testing.T, probe string) string {
	t.Helper()
	kubectl(t, rolloutCRD, "apply", "-f", "-")
	kubectl(t, "", "wait", "--for=condition=Established", "crd/rollouts.argoproj.io", "--timeout=60s")
	kubectl(t, "", "patch", "mutatingwebhookconfiguration", "promenroll", "--type=json", "-p",
		`[{"op":"add","path":"/webhooks/0/rules/-","value":{"apiGroups":["argoproj.io"],"apiVersions":["v1alpha1"],"operations":["CREATE","UPDATE"],"resources":["rollouts"],"scope":"Namespaced"}}]`)
	t.Cleanup(func() {
		var mut admissionregistrationv1.MutatingWebhookConfiguration
		err := c.Client.Get(context.Background(), client.ObjectKey{Name: "promenroll"}, &mut)
		if err == nil {
			mut.Webhooks[0].Rules = slices.DeleteFunc(mut.Webhooks[0].Rules, func(r admissionregistrationv1.RuleWithOperations) bool {
				return slices.Contains(r.APIGroups, "argoproj.io")
			})
			err = c.Client.Update(context.Background(), &mut)
		}
		if err != nil {
			t.Errorf("remove the rollouts rule from the mutating webhook configuration: %v", err)
		}
	})
	declared := strings.Replace(basePolicy, "enroll:\n", "kinds:\n- {apiVersion: argoproj.io/v1alpha1, kind: Rollout, resource: rollouts, podTemplate: spec.template}\nenroll:\n", 1)
	declared = strings.Replace(declared, "kinds: [Deployment, StatefulSet, DaemonSet, Job, CronJob]", "kinds: [Deployment, StatefulSet, DaemonSet, Job, CronJob, Rollout]", 1)
	setPolicy(t, declared, func() bool {
		out, _, err := c.Kubectl(t.Context(), probe, "apply", "--dry-run=server", "-o", "json", "-f", "-")
		return err == nil && strings.Contains(out, "monitoring.promenroll.io/scrape")
	})
	t.Cleanup(func() { replacePolicyFile(t, basePolicy) })
	return declared
}

// TestAnEnrolledRolloutIsScrapedOnceBehindStableAndCanaryServices: with
// Rollout declared in the policy and in the webhook configuration (as the
// chart renders it from policy.kinds), a Rollout applied with no monitoring
// label is enrolled at spec.template; its pods (from the ReplicaSet Argo's
// controller would make from that template) are an up target of the
// PodMonitor, and its stable and canary Services, both enrolled and both
// selecting them, add no second or third target: the ServiceMonitor drops
// their endpoints, as the pod wins.
func TestAnEnrolledRolloutIsScrapedOnceBehindStableAndCanaryServices(t *testing.T) {
	m := monitoringStack(t)
	needServiceEndpoints(t, m)
	ns := "scrape-rollout"
	createNamespace(t, ns, nil, nil)
	rollout := fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: api, namespace: %s, labels: {app: api}}
spec:
  replicas: 1
  selector: {matchLabels: {app: api}}
  strategy: {canary: {stableService: api-stable, canaryService: api-canary}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
      - name: app
        image: registry.example/api:1.0
        ports: [{name: metrics, containerPort: 9090}]
`, ns)
	declareRollouts(t, rollout)

	kubectl(t, rollout, "apply", "-f", "-")
	out, _ := kubectl(t, "", "-n", ns, "get", "rollout", "api", "-o", "json")
	var stored struct {
		Metadata struct {
			UID    string            `json:"uid"`
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
		Spec struct {
			Template corev1.PodTemplateSpec `json:"template"`
		} `json:"spec"`
	}
	if err := json.Unmarshal([]byte(out), &stored); err != nil {
		t.Fatal(err)
	}
	if stored.Metadata.Labels["monitoring.promenroll.io/scrape"] != "true" || stored.Spec.Template.Labels["monitoring.promenroll.io/scrape"] != "true" {
		t.Fatalf("the stored Rollout is not enrolled: labels %v, spec.template labels %v", stored.Metadata.Labels, stored.Spec.Template.Labels)
	}

	// What Argo's controller does: a ReplicaSet of the Rollout's template,
	// with its pod-template-hash, owned by the Rollout.
	tmpl := stored.Spec.Template
	tmpl.Labels["rollouts-pod-template-hash"] = "7d9f6c"
	rs := appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "api-7d9f6c", Namespace: ns, Labels: tmpl.Labels, OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "argoproj.io/v1alpha1", Kind: "Rollout", Name: "api", UID: types.UID(stored.Metadata.UID), Controller: ptr.To(true),
		}}},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "api", "rollouts-pod-template-hash": "7d9f6c"}}, Template: tmpl},
	}
	if err := c.Client.Create(t.Context(), &rs); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"api-stable", "api-canary"} {
		kubectl(t, service(ns, name, "metrics", "metrics", map[string]string{"app.kubernetes.io/name": name}), "apply", "-f", "-")
	}
	// service() selects app: <its name>; both must select the Rollout's pods.
	for _, name := range []string{"api-stable", "api-canary"} {
		kubectl(t, "", "-n", ns, "patch", "service", name, "--type=merge", "-p", `{"spec":{"selector":{"app":"api"}}}`)
	}

	tg := upTarget(t, m, podPool, ns, "api-7d9f6c-")
	waitFor(t, m, "the ServiceMonitor discovers both Services' endpoints of the Rollout's pod and drops them", func(_ []cluster.Target, dropped []map[string]string) bool {
		seen := map[string]bool{}
		for _, d := range dropped {
			if d["__scrape_pool__"] == servicePool && d["__meta_kubernetes_namespace"] == ns && d["__meta_kubernetes_pod_name"] == tg.Labels["pod"] {
				seen[d["__meta_kubernetes_service_name"]] = true
			}
		}
		return seen["api-stable"] && seen["api-canary"]
	})
	active, _, err := m.AllTargets(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var scrapes []string
	for _, a := range active {
		if a.Labels["namespace"] == ns && a.Labels["pod"] == tg.Labels["pod"] {
			scrapes = append(scrapes, a.ScrapePool+" "+a.ScrapeURL)
		}
	}
	if len(scrapes) != 1 {
		t.Errorf("the Rollout's pod is scraped %d times, want once (by the PodMonitor): %v", len(scrapes), scrapes)
	}
}
