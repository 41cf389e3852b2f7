package selftls

import (
	"context"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

// tlsFixture is an Authority over a fake API (the Secret and both
// webhook configurations, as the install ships them) and a fake clock.
type tlsFixture struct {
	t   *testing.T
	s   *Authority
	c   client.Client
	now time.Time
}

func newTLSFixture(t *testing.T, data map[string][]byte) *tlsFixture {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	svc := func(path string) admissionregistrationv1.WebhookClientConfig {
		return admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Namespace: "promenroll-system", Name: "promenroll", Path: &path}}
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "promenroll-system", Name: "promenroll-tls"}, Data: data},
		&admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "promenroll"}, Webhooks: []admissionregistrationv1.MutatingWebhook{
			{Name: "enroll.promenroll.io", ClientConfig: svc("/mutate")}, {Name: "monitors.promenroll.io", ClientConfig: svc("/mutate")}}},
		&admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "promenroll"}, Webhooks: []admissionregistrationv1.ValidatingWebhook{
			{Name: "rules.promenroll.io", ClientConfig: svc("/validate")}}},
	).Build()
	f := &tlsFixture{t: t, c: c, now: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	f.s = &Authority{
		Secret:               types.NamespacedName{Namespace: "promenroll-system", Name: "promenroll-tls"},
		Names:                ServingNames("promenroll", "promenroll-system", nil),
		WebhookConfiguration: "promenroll",
		CAValidity:           300 * time.Hour,
		CertValidity:         30 * time.Hour,
		Reader:               c,
		Client:               c,
		Metrics:              NewMetrics(nil),
		Log:                  logr.Discard(),
		Now:                  func() time.Time { return f.now },
	}
	f.s.SetDefaults()
	return f
}

// step reconciles once, then lets every replica load the Secret.
func (f *tlsFixture) step() time.Duration {
	f.t.Helper()
	next, err := f.s.reconcile(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	f.s.load(f.secret())
	return next
}

// settle reconciles until nothing changes (at most 10 steps).
func (f *tlsFixture) settle() {
	f.t.Helper()
	for range 10 {
		before := f.secret().ResourceVersion
		f.step()
		if f.secret().ResourceVersion == before {
			return
		}
	}
	f.t.Fatal("the Secret kept changing")
}

func (f *tlsFixture) secret() *corev1.Secret {
	f.t.Helper()
	var sec corev1.Secret
	if err := f.c.Get(context.Background(), f.s.Secret, &sec); err != nil {
		f.t.Fatal(err)
	}
	return &sec
}

func (f *tlsFixture) bundles() []string {
	f.t.Helper()
	var mut admissionregistrationv1.MutatingWebhookConfiguration
	var val admissionregistrationv1.ValidatingWebhookConfiguration
	if err := f.c.Get(context.Background(), types.NamespacedName{Name: "promenroll"}, &mut); err != nil {
		f.t.Fatal(err)
	}
	if err := f.c.Get(context.Background(), types.NamespacedName{Name: "promenroll"}, &val); err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for _, w := range mut.Webhooks {
		out = append(out, string(w.ClientConfig.CABundle))
	}
	for _, w := range val.Webhooks {
		out = append(out, string(w.ClientConfig.CABundle))
	}
	return out
}

// trusted asserts what the API server would do: the served certificate
// verifies against every webhook's caBundle for the Service's name.
func (f *tlsFixture) trusted() *x509.Certificate {
	f.t.Helper()
	served, err := f.s.GetCertificate(nil)
	if err != nil {
		f.t.Fatal(err)
	}
	for i, b := range f.bundles() {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(b)) {
			f.t.Fatalf("webhook %d: caBundle %q holds no certificate", i, b)
		}
		if _, err := served.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "promenroll.promenroll-system.svc", CurrentTime: f.now}); err != nil {
			f.t.Fatalf("webhook %d: the API server would refuse the served certificate: %v", i, err)
		}
	}
	if err := f.s.Ready(nil); err != nil {
		f.t.Fatal(err)
	}
	return served.Leaf
}

func (f *tlsFixture) issued(cert, reason string) float64 {
	return testutil.ToFloat64(f.s.Metrics.Issued.WithLabelValues(cert, reason))
}

func TestAuthorityBootstrapsFromTheEmptySecret(t *testing.T) {
	f := newTLSFixture(t, nil)
	if err := f.s.Ready(nil); err == nil {
		t.Fatal("ready before any certificate")
	}
	f.settle()
	leaf := f.trusted()
	data := f.secret().Data
	for _, k := range []string{SecretCACert, SecretCAKey, SecretCert, SecretKey} {
		if len(data[k]) == 0 {
			t.Errorf("Secret lacks %s", k)
		}
	}
	for _, name := range []string{"promenroll.promenroll-system.svc", "promenroll.promenroll-system.svc.cluster.local"} {
		if err := leaf.VerifyHostname(name); err != nil {
			t.Error(err)
		}
	}
	if f.issued("ca", "missing") != 1 || f.issued("serving", "new-ca") != 1 {
		t.Errorf("issued: ca/missing %v serving/new-ca %v", f.issued("ca", "missing"), f.issued("serving", "new-ca"))
	}
	// Settled: nothing more is written.
	rv := f.secret().ResourceVersion
	if next := f.step(); next < time.Second || f.secret().ResourceVersion != rv {
		t.Errorf("a valid Secret was rewritten (next check in %v)", next)
	}
}

func TestAuthorityRenewsTheServingCertificateBeforeExpiry(t *testing.T) {
	f := newTLSFixture(t, nil)
	f.settle()
	first := f.trusted()
	f.now = f.now.Add(19 * time.Hour) // before 2/3 of 30h
	f.settle()
	if f.trusted().SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatal("renewed before two thirds of the lifetime")
	}
	f.now = f.now.Add(2 * time.Hour) // past 2/3 of 30h
	f.settle()
	second := f.trusted()
	if second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("not renewed two thirds into its life")
	}
	if f.issued("serving", "renewal") != 1 || f.issued("ca", "renewal") != 0 {
		t.Errorf("issued serving/renewal %v, ca/renewal %v", f.issued("serving", "renewal"), f.issued("ca", "renewal"))
	}
}

// TestAuthorityRotatesTheCAWithoutAnUntrustedMoment walks a CA
// rotation: at every step the served certificate verifies against every
// webhook's caBundle.
func TestAuthorityRotatesTheCAWithoutAnUntrustedMoment(t *testing.T) {
	f := newTLSFixture(t, nil)
	f.settle()
	oldCA, _ := parseCerts(f.secret().Data[SecretCACert])
	// Step through the hours up to the CA's renewal point (2/3 of 300h);
	// the serving certificate is renewed on the way.
	var cas []*x509.Certificate
	for range 250 {
		f.now = f.now.Add(time.Hour)
		f.settle()
		f.trusted()
		if cas, _ = parseCerts(f.secret().Data[SecretCACert]); len(cas) > 1 {
			break
		}
	}
	if len(cas) != 2 || !cas[1].Equal(oldCA[0]) {
		t.Fatalf("after the CA's renewal point ca.crt holds %d CAs, want the new one and the old one", len(cas))
	}
	// Within the settle time the old CA's certificate is still served.
	if f.trusted().CheckSignatureFrom(cas[0]) == nil {
		t.Fatal("a certificate of the new CA was served before the caBundle had carried it for the settle time")
	}
	f.now = f.now.Add(f.s.Settle)
	f.settle()
	if f.trusted().CheckSignatureFrom(cas[0]) != nil {
		t.Fatal("the serving certificate was not re-issued by the new CA")
	}
	// The old CA leaves the bundle once nothing served needs it.
	f.now = f.now.Add(clockSkew + f.s.Settle)
	f.settle()
	f.trusted()
	if cas, _ := parseCerts(f.secret().Data[SecretCACert]); len(cas) != 1 {
		t.Errorf("old CA kept: %d CAs", len(cas))
	}
	for _, b := range f.bundles() {
		if b != string(f.secret().Data[SecretCACert]) {
			t.Error("caBundle differs from ca.crt")
		}
	}
}

func TestAuthorityRepairsAndCounts(t *testing.T) {
	for name, corrupt := range map[string]struct {
		edit   func(d map[string][]byte, other map[string][]byte)
		cert   string
		reason string
	}{
		"garbage everywhere": {func(d, _ map[string][]byte) {
			for k := range d {
				d[k] = []byte("garbage")
			}
		}, "ca", "unusable"},
		"garbage serving certificate": {func(d, _ map[string][]byte) {
			d[SecretCert] = []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
		}, "serving", "unusable"},
		"key of another certificate": {func(d, o map[string][]byte) { d[SecretKey] = o[SecretKey] }, "serving", "unusable"},
		"certificate of another CA":  {func(d, o map[string][]byte) { d[SecretCert], d[SecretKey] = o[SecretCert], o[SecretKey] }, "serving", "untrusted"},
		"CA key removed":             {func(d, _ map[string][]byte) { delete(d, SecretCAKey) }, "ca", "missing"},
	} {
		t.Run(name, func(t *testing.T) {
			other := newTLSFixture(t, nil)
			other.settle()
			f := newTLSFixture(t, nil)
			f.settle()
			before := f.trusted()
			counted := f.issued(corrupt.cert, corrupt.reason)
			sec := f.secret()
			corrupt.edit(sec.Data, other.secret().Data)
			if err := f.c.Update(context.Background(), sec); err != nil {
				t.Fatal(err)
			}
			// Every replica keeps serving the last good certificate.
			f.s.load(f.secret())
			if got, _ := f.s.GetCertificate(nil); got.Leaf.SerialNumber.Cmp(before.SerialNumber) != 0 {
				t.Fatal("a corrupted Secret's certificate was served")
			}
			f.settle()
			f.trusted()
			if n := f.issued(corrupt.cert, corrupt.reason) - counted; n != 1 {
				t.Errorf("promenroll_tls_certificates_issued_total{certificate=%q,reason=%q} rose by %v, want 1", corrupt.cert, corrupt.reason, n)
			}
		})
	}
}

func TestAuthorityNeverServesAnExpiredCertificate(t *testing.T) {
	f := newTLSFixture(t, nil)
	f.settle()
	data := f.secret().Data
	// A replica that starts late finds an expired certificate: it serves
	// nothing and is not ready until the leader replaced it.
	late := newTLSFixture(t, data)
	late.now = f.now.Add(31 * time.Hour)
	late.s.load(late.secret())
	if err := late.s.Ready(nil); err == nil || !strings.Contains(err.Error(), "no valid serving certificate") {
		t.Fatalf("ready with an expired certificate: %v", err)
	}
	late.settle()
	if late.trusted().NotAfter.Before(late.now) {
		t.Fatal("expired certificate served")
	}
	if late.issued("serving", "expired") != 1 {
		t.Errorf("serving/expired = %v", late.issued("serving", "expired"))
	}
}

func TestAuthorityPutsBackAResetCABundle(t *testing.T) {
	f := newTLSFixture(t, nil)
	f.settle()
	var mut admissionregistrationv1.MutatingWebhookConfiguration
	if err := f.c.Get(context.Background(), types.NamespacedName{Name: "promenroll"}, &mut); err != nil {
		t.Fatal(err)
	}
	mut.Webhooks[1].ClientConfig.CABundle = nil // a GitOps sync of the shipped manifest
	if err := f.c.Update(context.Background(), &mut); err != nil {
		t.Fatal(err)
	}
	f.settle()
	f.trusted()
}
