// Command verdicts prints prometheus-operator's own verdict on every
// *.good.yaml and *.bad.yaml monitor or AlertmanagerConfig under a folder,
// one line each: path, "valid" or "invalid", and the operator's error. For
// a monitor it runs the operator's ResourceSelector
// (pkg/prometheus/resource_selector.go: checkServiceMonitor,
// checkPodMonitor, checkProbe, checkScrapeConfig), the code that silently
// skips an invalid monitor when the operator builds the Prometheus
// configuration, with every Secret the testdata references present, so only
// the object itself decides. For an AlertmanagerConfig it asks the
// operator's admission webhook (pkg/admission,
// /admission-alertmanagerconfigs/validate) with the AdmissionReview the API
// server sends for the object's version. policy's operator agreement tests
// compare promenroll's gates with it.
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus-operator/prometheus-operator/pkg/admission"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	"github.com/prometheus-operator/prometheus-operator/pkg/assets"
	"github.com/prometheus-operator/prometheus-operator/pkg/operator"
	"github.com/prometheus-operator/prometheus-operator/pkg/prometheus"
	promclient "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/yaml"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: verdicts FOLDER")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "verdicts:", err)
		os.Exit(1)
	}
}

func run(dir string, out io.Writer) error {
	secrets, err := testSecrets()
	if err != nil {
		return err
	}
	return filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(path, ".good.yaml") || strings.HasSuffix(path, ".bad.yaml")) {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		verr, err := verdict(data, secrets)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		rel, _ := filepath.Rel(dir, path)
		if verr == nil {
			fmt.Fprintf(out, "%s\tvalid\t\n", rel)
		} else {
			fmt.Fprintf(out, "%s\tinvalid\t%s\n", rel, strings.ReplaceAll(verr.Error(), "\n", " "))
		}
		return nil
	})
}

// verdict returns the operator's reason to reject the monitor in data (nil:
// it is valid).
func verdict(data []byte, secrets []any) (error, error) {
	var meta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string
		Metadata   struct{ Namespace string }
	}
	if err := yaml.Unmarshal(data, &meta); err != nil {
		return nil, err
	}
	if meta.Kind == "AlertmanagerConfig" {
		return webhookVerdict(data, meta.APIVersion)
	}
	ns := meta.Metadata.Namespace
	p := &monitoringv1.Prometheus{ObjectMeta: metav1.ObjectMeta{Name: "k8s", Namespace: ns}}
	rs, err := prometheus.NewResourceSelector(slog.New(slog.NewTextHandler(io.Discard, nil)), p,
		assets.NewStoreBuilder(fake.NewClientset().CoreV1(), fake.NewClientset(secretsIn(secrets, ns)...).CoreV1()),
		nil, operator.NewMetrics(promclient.NewPedanticRegistry()), operator.NewFakeRecorder(10, p))
	if err != nil {
		return nil, err
	}
	switch meta.Kind {
	case "ServiceMonitor":
		return judge(data, &monitoringv1.ServiceMonitor{}, rs.SelectServiceMonitors)
	case "PodMonitor":
		return judge(data, &monitoringv1.PodMonitor{}, rs.SelectPodMonitors)
	case "Probe":
		return judge(data, &monitoringv1.Probe{}, rs.SelectProbes)
	case "ScrapeConfig":
		return judge(data, &monitoringv1alpha1.ScrapeConfig{}, rs.SelectScrapeConfigs)
	}
	return nil, fmt.Errorf("kind %q is not a monitor", meta.Kind)
}

// judge decodes data into obj and has the operator select it: the
// selection runs the operator's check of that kind.
func judge[T operator.ConfigurationResource](data []byte, obj T, sel func(context.Context, prometheus.ListAllByNamespaceFn) (operator.TypedResourcesSelection[T], error)) (error, error) {
	if err := yaml.UnmarshalStrict(data, any(obj)); err != nil {
		return nil, err
	}
	res, err := sel(context.Background(), func(_ string, _ labels.Selector, appendFn cache.AppendFunc) error {
		appendFn(any(obj))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rejection(res), nil
}

// rejection is the operator's reason to reject the selected object, from
// the Accepted condition it would write.
func rejection[T operator.ConfigurationResource](res operator.TypedResourcesSelection[T]) error {
	for _, r := range res {
		for _, c := range r.Conditions() {
			if c.Status == monitoringv1.ConditionFalse {
				return errors.New(c.Message)
			}
		}
	}
	return nil
}

// testSecrets are the Secrets the testdata monitors reference (creds, ca,
// oauth, proxy), with a real CA certificate.
func testSecrets() ([]any, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	var ca bytes.Buffer
	_ = pem.Encode(&ca, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	data := map[string]map[string][]byte{
		"creds": {"user": []byte("u"), "password": []byte("p"), "token": []byte("t")},
		"ca":    {"ca.crt": ca.Bytes()},
		"oauth": {"id": []byte("i"), "secret": []byte("s")},
		"proxy": {"team": []byte("shop")},
	}
	var out []any
	for name, d := range data {
		out = append(out, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: d})
	}
	return out, nil
}

func secretsIn(secrets []any, ns string) []runtime.Object {
	var out []runtime.Object
	for _, s := range secrets {
		c := s.(*corev1.Secret).DeepCopy()
		c.Namespace = ns
		out = append(out, c)
	}
	return out
}

// webhookVerdict asks the operator's admission webhook about the
// AlertmanagerConfig in data, as the API server would for its version.
func webhookVerdict(data []byte, apiVersion string) (error, error) {
	obj, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, err
	}
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return nil, err
	}
	review, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "verdicts", Operation: admissionv1.Create,
			Kind:     metav1.GroupVersionKind{Group: gv.Group, Version: gv.Version, Kind: "AlertmanagerConfig"},
			Resource: metav1.GroupVersionResource{Group: gv.Group, Version: gv.Version, Resource: "alertmanagerconfigs"},
			Object:   runtime.RawExtension{Raw: obj}},
	})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	admission.New(slog.New(slog.NewTextHandler(io.Discard, nil)), model.UTF8Validation, parser.Options{}).Register(mux)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/admission-alertmanagerconfigs/validate", bytes.NewReader(review))
	req.Header.Set("Content-Type", "application/json")
	mux.ServeHTTP(rec, req)
	var resp admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || resp.Response == nil {
		return nil, fmt.Errorf("the operator's webhook answered HTTP %d %q: %v", rec.Code, rec.Body.String(), err)
	}
	if resp.Response.Allowed {
		return nil, nil
	}
	var msgs []string
	if r := resp.Response.Result; r != nil && r.Details != nil {
		for _, c := range r.Details.Causes {
			msgs = append(msgs, c.Message)
		}
	}
	return errors.New(strings.Join(msgs, "; ")), nil
}
