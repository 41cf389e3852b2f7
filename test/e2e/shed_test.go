package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/promenroll/promenroll/internal/limit"
	"github.com/promenroll/promenroll/internal/testwait"
	"github.com/promenroll/promenroll/webhook"
)

// TestShedRequestsGetTheFailurePolicy: a request the limiter refuses is,
// for the real kube-apiserver, a failed webhook call: with failurePolicy
// Ignore the object is admitted, with Fail it is refused with promenroll's
// message, and the API server does not retry it.
func TestShedRequestsGetTheFailurePolicy(t *testing.T) {
	for _, ns := range []string{"shed-ignore", "shed-fail"} {
		createNamespace(t, ns, nil, nil)
	}
	// A webhook server of its own: every request is heavy, one at a time,
	// and a request waits 50ms before it is shed. The handler allows all,
	// and holds the one slot while hold is open.
	hold := make(chan struct{})
	var holding, calls atomic.Int32
	metrics := webhook.NewMetrics(nil)
	limiter := limit.New(limit.Config{MaxInFlight: 1, HeavyBytes: 1, Budget: 50 * time.Millisecond}, metrics.Shed)
	allow := admission.HandlerFunc(func(_ context.Context, req admission.Request) admission.Response {
		calls.Add(1)
		if req.Name == "hold" {
			holding.Store(1)
			<-hold
		}
		return admission.Allowed("")
	})
	caPEM, certFile, keyFile := c.WebhookCA()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(webhook.Endpoint("validate", allow, limiter))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	defer srv.Close()

	url := srv.URL + "/validate"
	hook := func(name, ns string, policy admissionregistrationv1.FailurePolicyType) admissionregistrationv1.ValidatingWebhook {
		none := admissionregistrationv1.SideEffectClassNone
		return admissionregistrationv1.ValidatingWebhook{
			Name: name, ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caPEM},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
			}},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}},
			FailurePolicy:           &policy,
			SideEffects:             &none,
			AdmissionReviewVersions: []string{"v1"},
		}
	}
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "shed-test"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{
			hook("ignore.shed.promenroll.io", "shed-ignore", admissionregistrationv1.Ignore),
			hook("fail.shed.promenroll.io", "shed-fail", admissionregistrationv1.Fail),
		},
	}
	if err := c.Client.Create(t.Context(), vwc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Client.Delete(context.Background(), vwc) })

	create := func(ns, name string) error {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		return c.Client.Create(t.Context(), cm, client.DryRunAll)
	}
	// Until the API server's informer has the configuration, nothing calls
	// the server.
	testwait.True(t, "the API server calls the test webhook", 30*time.Second, func() bool {
		if err := create("shed-fail", "probe"); err != nil {
			t.Fatalf("with a free slot: %v", err)
		}
		return calls.Load() > 0
	})

	// Take the one slot: a review sent straight to the server, held open.
	held := make(chan error, 1)
	go func() {
		body := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"h","kind":{"group":"","version":"v1","kind":"ConfigMap"},"resource":{"group":"","version":"v1","resource":"configmaps"},"operation":"CREATE","name":"hold","namespace":"shed-fail","object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"hold"}},"userInfo":{}}}`
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
		resp, err := hc.Post(url, "application/json", bytes.NewReader([]byte(body)))
		if err == nil {
			err = resp.Body.Close()
		}
		held <- err
	}()
	for holding.Load() == 0 {
		select {
		case err := <-held:
			t.Fatalf("the request meant to hold the slot ended: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	before := calls.Load()

	if err := create("shed-ignore", "admitted"); err != nil {
		t.Errorf("failurePolicy Ignore: a shed request refused the ConfigMap: %v", err)
	}
	err = create("shed-fail", "refused")
	if err == nil || !strings.Contains(err.Error(), "promenroll is busy") {
		t.Errorf("failurePolicy Fail: got %v, want a refusal quoting \"promenroll is busy\"", err)
	} else {
		t.Logf("failurePolicy Fail, as kubectl shows it: %v", err)
	}
	// Shed before the handler: neither call reached it, and each was
	// answered once (a Retry-After would have made the API server retry).
	if got := testutil.ToFloat64(metrics.Shed.WithLabelValues("validate")); got != 2 || calls.Load() != before {
		t.Errorf("shed %v requests and the handler saw %d more, want 2 shed and none seen", got, calls.Load()-before)
	}

	close(hold)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	if err := create("shed-fail", "after"); err != nil {
		t.Errorf("with the slot free again: %v", err)
	}
}
