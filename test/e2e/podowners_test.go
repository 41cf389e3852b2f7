package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
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
