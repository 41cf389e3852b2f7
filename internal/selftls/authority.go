// Package selftls serves the webhook's certificate from one Secret that
// promenroll itself keeps: a CA and a serving certificate it creates,
// rotates and puts in its webhook configurations' caBundle, with no
// certificate controller in the cluster.
package selftls

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// Defaults of the self-managed certificates: a CA for ten years and a
// serving certificate for one, each renewed two thirds into its life.
const (
	DefaultCAValidity   = 10 * 365 * 24 * time.Hour
	DefaultCertValidity = 365 * 24 * time.Hour
	// DefaultTrustSettle is how long a new CA is in the webhook
	// configurations' caBundle before a certificate it signed is served,
	// so the API server trusts it before it meets it.
	DefaultTrustSettle = 10 * time.Second
)

// Authority serves the certificate held in one Secret and, on the
// leader only, keeps that Secret and the caBundle of the two webhook
// configurations valid.
//
// Every replica reads the Secret through an informer restricted to its
// name (so RBAC can name it in resourceNames) and serves its certificate
// as soon as it changes, without waiting for a kubelet volume refresh. The
// leader repairs what is missing, unparseable, expired, mismatched or due
// for renewal. A new CA is added to the caBundle next to the old one, and
// certificates it signs are served only once the caBundle has carried it
// for Settle, so a rotation never presents a certificate the API server
// does not trust yet.
type Authority struct {
	Secret types.NamespacedName
	// Names the API server calls the webhook by: DNS names or IPs. The
	// first is the certificate's common name.
	Names []string
	// WebhookConfiguration names the MutatingWebhookConfiguration and the
	// ValidatingWebhookConfiguration whose caBundle is kept.
	WebhookConfiguration string
	CAValidity           time.Duration
	CertValidity         time.Duration
	Settle               time.Duration

	Cache   cache.Cache   // informers restricted by CacheOptions
	Reader  client.Reader // the leader's reads: the same cache
	Client  client.Writer // the leader's writes
	Metrics *Metrics
	Log     logr.Logger
	Now     func() time.Time

	serving atomic.Pointer[tls.Certificate]
	wake    chan struct{}

	// leader's state
	trustedBundle string
	trustedSince  time.Time
}

// SetDefaults fills zero durations and the clock.
func (s *Authority) SetDefaults() {
	if s.CAValidity == 0 {
		s.CAValidity = DefaultCAValidity
	}
	if s.CertValidity == 0 {
		s.CertValidity = DefaultCertValidity
	}
	if s.Settle == 0 {
		s.Settle = DefaultTrustSettle
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	s.wake = make(chan struct{}, 1)
}

// clusterstate.CacheOptions restricts the informers the rotation needs to the one
// Secret and the two webhook configurations, by field selector: nothing
// else is listed or held, and RBAC can grant list/watch by resourceNames.
func (s *Authority) CacheOptions() map[client.Object]cache.ByObject {
	byName := func(name string) fields.Selector { return fields.OneTermEqualSelector("metadata.name", name) }
	return map[client.Object]cache.ByObject{
		&corev1.Secret{}: {
			Namespaces: map[string]cache.Config{s.Secret.Namespace: {}},
			Field:      byName(s.Secret.Name),
		},
		&admissionregistrationv1.MutatingWebhookConfiguration{}:   {Field: byName(s.WebhookConfiguration)},
		&admissionregistrationv1.ValidatingWebhookConfiguration{}: {Field: byName(s.WebhookConfiguration)},
	}
}

// Watch registers the informers: the Secret's changes are served at once
// by every replica and wake the leader's rotation, as do changes to the
// webhook configurations (a caBundle reset by a GitOps sync is put back).
func (s *Authority) Watch(ctx context.Context) error {
	secrets, err := s.Cache.GetInformer(ctx, &corev1.Secret{})
	if err != nil {
		return fmt.Errorf("secret informer: %w", err)
	}
	onSecret := func(obj any) {
		if sec, ok := obj.(*corev1.Secret); ok && sec.Name == s.Secret.Name && sec.Namespace == s.Secret.Namespace {
			s.load(sec)
		}
		s.poke()
	}
	if _, err := secrets.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    onSecret,
		UpdateFunc: func(_, obj any) { onSecret(obj) },
		DeleteFunc: func(any) { s.poke() },
	}); err != nil {
		return err
	}
	for _, obj := range []client.Object{&admissionregistrationv1.MutatingWebhookConfiguration{}, &admissionregistrationv1.ValidatingWebhookConfiguration{}} {
		inf, err := s.Cache.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("%T informer: %w", obj, err)
		}
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { s.poke() },
			UpdateFunc: func(any, any) { s.poke() },
			DeleteFunc: func(any) { s.poke() },
		}); err != nil {
			return err
		}
	}
	return nil
}

func (s *Authority) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// load serves the Secret's certificate if it is valid now, for every
// name, and signed by a CA of ca.crt; otherwise the certificate served so
// far stays (the leader replaces the Secret's).
func (s *Authority) load(sec *corev1.Secret) {
	now := s.Now()
	roots, err := parseCerts(sec.Data[SecretCACert])
	if err != nil {
		s.Log.Info("not serving the Secret's certificate: its ca.crt is unusable; the leader replaces it", "secret", s.Secret.String(), "problem", err.Error())
		return
	}
	served, _, problem := checkServing(sec.Data, roots, s.Names, now)
	if served == nil {
		s.Log.Info("not serving the Secret's certificate; the leader replaces it", "secret", s.Secret.String(), "problem", problem)
		return
	}
	if cur := s.serving.Load(); cur != nil && bytes.Equal(cur.Certificate[0], served.Certificate[0]) {
		return
	}
	s.serving.Store(served)
	s.Metrics.Expiry.Set(float64(served.Leaf.NotAfter.Unix()))
	s.Log.Info("serving certificate loaded", "secret", s.Secret.String(), "serial", served.Leaf.SerialNumber.Text(16), "notAfter", served.Leaf.NotAfter.UTC().Format(time.RFC3339))
}

// GetCertificate is the webhook server's tls.Config.GetCertificate.
func (s *Authority) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := s.serving.Load(); c != nil {
		return c, nil
	}
	return nil, fmt.Errorf("no valid serving certificate in Secret %s yet", s.Secret)
}

// Ready fails until a certificate valid now is served.
func (s *Authority) Ready(*http.Request) error {
	c := s.serving.Load()
	if c == nil {
		return fmt.Errorf("no valid serving certificate in Secret %s yet", s.Secret)
	}
	if s.Now().After(c.Leaf.NotAfter) {
		return fmt.Errorf("the serving certificate expired at %s and the Secret %s holds no newer one", c.Leaf.NotAfter.UTC().Format(time.RFC3339), s.Secret)
	}
	return nil
}

// Rotation is the leader-only half, for the manager: it needs leader
// election, so with two replicas exactly one writes.
func (s *Authority) Rotation() manager.Runnable { return rotation{s} }

// rotation keeps the Secret and the caBundles valid; see Authority.
type rotation struct{ s *Authority }

// NeedLeaderElection: only the leader writes.
func (rotation) NeedLeaderElection() bool { return true }

// Start reconciles whenever the Secret or a webhook configuration changes,
// when a certificate reaches its renewal point, and after errors (with
// backoff up to 30s).
func (r rotation) Start(ctx context.Context) error {
	s := r.s
	if s.Cache != nil && !s.Cache.WaitForCacheSync(ctx) {
		return ctx.Err()
	}
	s.Log.Info("leading: keeping the serving certificate and the caBundle current", "secret", s.Secret.String())
	backoff := time.Second
	for {
		next, err := s.reconcile(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil //nolint:nilerr // the manager is stopping: the failed step is not an error of the run
			}
			s.Metrics.Errors.Inc()
			s.Log.Error(err, "certificate rotation", "retryIn", backoff.String())
			next = backoff
			backoff = min(backoff*2, 30*time.Second)
		} else {
			backoff = time.Second
		}
		timer := time.NewTimer(next)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-s.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// reconcile makes one step towards a valid Secret and caBundles and
// returns when to look again.
func (s *Authority) reconcile(ctx context.Context) (time.Duration, error) {
	now := s.Now()
	var sec corev1.Secret
	if err := s.Reader.Get(ctx, s.Secret, &sec); err != nil {
		if apierrors.IsNotFound(err) {
			return 0, fmt.Errorf("the Secret %s is not found: the install ships it (empty) and promenroll fills it; re-apply the manifests or run helm upgrade", s.Secret)
		}
		return 0, err
	}
	data := map[string][]byte{}
	for k, v := range sec.Data {
		data[k] = v
	}

	ca, older, caProblem := loadCA(data, now)
	if caProblem != "" {
		return time.Second, s.renewCA(ctx, &sec, data, ca, older, caProblem, now)
	}

	bundle := data[SecretCACert]
	changed, err := s.ensureBundle(ctx, bundle)
	if err != nil {
		return 0, err
	}
	if changed || s.trustedBundle != string(bundle) {
		s.trustedBundle, s.trustedSince = string(bundle), now
	}
	settled := s.trustedSince.Add(s.Settle)

	served, signer, problem := checkServing(data, append([]*x509.Certificate{ca.Cert}, older...), s.Names, now)
	switch {
	case served == nil:
		// Nothing valid to serve: a new certificate cannot make it worse.
		return time.Second, s.issue(ctx, &sec, data, ca, problem, now)
	case !signer.Equal(ca.Cert) || problem != "":
		if problem == "" {
			problem = "signed by the previous CA"
		}
		if now.Before(settled) {
			return settled.Sub(now), nil
		}
		return time.Second, s.issue(ctx, &sec, data, ca, problem, now)
	}

	// Older CAs leave the bundle once no served certificate needs them.
	pruneAt := served.Leaf.NotBefore.Add(clockSkew + s.Settle)
	if len(older) > 0 && !now.Before(pruneAt) {
		data[SecretCACert] = ca.CertPEM
		s.Log.Info("previous CA removed from the bundle", "secret", s.Secret.String())
		return time.Second, s.write(ctx, &sec, data)
	}
	next := earliest(now, renewAt(served.Leaf), renewAt(ca.Cert))
	if len(older) > 0 {
		next = earliest(now, next, pruneAt)
	}
	return min(max(next.Sub(now), time.Second), 10*time.Minute), nil
}

func earliest(now time.Time, ts ...time.Time) time.Time {
	out := now.Add(10 * time.Minute)
	for _, t := range ts {
		if t.Before(out) {
			out = t
		}
	}
	return out
}

// renewCA creates a new CA and writes it first in ca.crt, followed by the
// CA the served certificate chains to while that one is still valid (from
// the Secret, or from the caBundle the API server trusts when the Secret
// was garbage). The serving certificate is replaced at once only when
// nothing valid is left to serve.
func (s *Authority) renewCA(ctx context.Context, sec *corev1.Secret, data map[string][]byte, ca *keyPair, older []*x509.Certificate, problem string, now time.Time) error {
	trusted := older
	if ca != nil { // due for renewal: still valid
		trusted = append([]*x509.Certificate{ca.Cert}, older...)
	}
	if len(trusted) == 0 {
		trusted = s.trustedByAPIServer(ctx)
	}
	// Older CAs stay trusted while they are valid: one signed the
	// certificate the replicas serve (at most three, should repairs fail
	// and repeat).
	var keep []*x509.Certificate
	for _, c := range trusted {
		if now.Before(c.NotAfter) && c.IsCA && len(keep) < 3 {
			keep = append(keep, c)
		}
	}
	next, err := newCA(s.Secret.Name, now, s.CAValidity)
	if err != nil {
		return err
	}
	s.Metrics.Issued.WithLabelValues("ca", reasonLabel(problem)).Inc()
	s.Log.Info("new CA", "secret", s.Secret.String(), "reason", problem, "notAfter", next.Cert.NotAfter.UTC().Format(time.RFC3339))
	bundle := append(append([]byte{}, next.CertPEM...), encodeCerts(keep)...)
	if served, _, _ := checkServing(data, keep, s.Names, now); served == nil {
		// The Secret holds nothing servable (replicas keep serving the
		// last good certificate from memory). The new CA's certificate
		// goes in at once, so the API server must trust the new CA
		// before the replicas can load it.
		if _, err := s.ensureBundle(ctx, bundle); err != nil {
			return err
		}
		leaf, err := newServing(next, s.Names, now, s.CertValidity)
		if err != nil {
			return err
		}
		data[SecretCert], data[SecretKey] = leaf.CertPEM, leaf.KeyPEM
		s.Metrics.Issued.WithLabelValues("serving", "new-ca").Inc()
	}
	data[SecretCACert] = bundle
	data[SecretCAKey] = next.KeyPEM
	return s.write(ctx, sec, data)
}

// trustedByAPIServer returns the CAs in the mutating configuration's
// caBundle (empty if there are none or they do not parse).
func (s *Authority) trustedByAPIServer(ctx context.Context) []*x509.Certificate {
	var mut admissionregistrationv1.MutatingWebhookConfiguration
	if err := s.Reader.Get(ctx, types.NamespacedName{Name: s.WebhookConfiguration}, &mut); err != nil || len(mut.Webhooks) == 0 {
		return nil
	}
	certs, _ := parseCerts(mut.Webhooks[0].ClientConfig.CABundle)
	return certs
}

func (s *Authority) issue(ctx context.Context, sec *corev1.Secret, data map[string][]byte, ca *keyPair, problem string, now time.Time) error {
	leaf, err := newServing(ca, s.Names, now, s.CertValidity)
	if err != nil {
		return err
	}
	data[SecretCert], data[SecretKey] = leaf.CertPEM, leaf.KeyPEM
	s.Metrics.Issued.WithLabelValues("serving", reasonLabel(problem)).Inc()
	s.Log.Info("new serving certificate", "secret", s.Secret.String(), "reason", problem, "serial", leaf.Cert.SerialNumber.Text(16), "notAfter", leaf.Cert.NotAfter.UTC().Format(time.RFC3339))
	return s.write(ctx, sec, data)
}

// write updates the Secret; the resourceVersion it was read at makes a
// concurrent writer's change a conflict, never a lost update.
func (s *Authority) write(ctx context.Context, sec *corev1.Secret, data map[string][]byte) error {
	upd := sec.DeepCopy()
	upd.Data = data
	if upd.Type == "" {
		upd.Type = corev1.SecretTypeOpaque
	}
	if err := s.Client.Update(ctx, upd, client.FieldOwner("promenroll")); err != nil {
		return fmt.Errorf("update Secret %s: %w", s.Secret, err)
	}
	return nil
}

// ensureBundle sets every webhook's caBundle in both configurations to
// bundle and reports whether it changed anything.
func (s *Authority) ensureBundle(ctx context.Context, bundle []byte) (bool, error) {
	changed := false
	key := types.NamespacedName{Name: s.WebhookConfiguration}
	var mut admissionregistrationv1.MutatingWebhookConfiguration
	if err := s.Reader.Get(ctx, key, &mut); err != nil {
		return false, fmt.Errorf("MutatingWebhookConfiguration %s: %w", s.WebhookConfiguration, err)
	}
	if setBundle(mut.Webhooks, func(w *admissionregistrationv1.MutatingWebhook) *[]byte { return &w.ClientConfig.CABundle }, bundle) {
		if err := s.Client.Update(ctx, &mut, client.FieldOwner("promenroll")); err != nil {
			return false, fmt.Errorf("update the caBundle of MutatingWebhookConfiguration %s: %w", s.WebhookConfiguration, err)
		}
		changed = true
	}
	var val admissionregistrationv1.ValidatingWebhookConfiguration
	if err := s.Reader.Get(ctx, key, &val); err != nil {
		return false, fmt.Errorf("ValidatingWebhookConfiguration %s: %w", s.WebhookConfiguration, err)
	}
	if setBundle(val.Webhooks, func(w *admissionregistrationv1.ValidatingWebhook) *[]byte { return &w.ClientConfig.CABundle }, bundle) {
		if err := s.Client.Update(ctx, &val, client.FieldOwner("promenroll")); err != nil {
			return false, fmt.Errorf("update the caBundle of ValidatingWebhookConfiguration %s: %w", s.WebhookConfiguration, err)
		}
		changed = true
	}
	if changed {
		s.Log.Info("caBundle updated", "webhookConfiguration", s.WebhookConfiguration)
	}
	return changed, nil
}

func setBundle[W any](hooks []W, field func(*W) *[]byte, bundle []byte) bool {
	changed := false
	for i := range hooks {
		if f := field(&hooks[i]); !bytes.Equal(*f, bundle) {
			*f = bundle
			changed = true
		}
	}
	return changed
}

// reasonLabel maps a problem to a bounded metric label value.
func reasonLabel(problem string) string {
	switch {
	case problem == "missing", problem == "expired", problem == "not yet valid":
		return strings.ReplaceAll(problem, " ", "-")
	case problem == "due for renewal":
		return "renewal"
	case problem == "signed by the previous CA":
		return "new-ca"
	case strings.HasPrefix(problem, "not valid for"):
		return "wrong-name"
	case problem == "not signed by a trusted CA":
		return "untrusted"
	}
	return "unusable"
}

// ServingNames are the names the API server calls a Service by, plus
// extra names or IPs.
func ServingNames(service, namespace string, extra []string) []string {
	names := []string{service + "." + namespace + ".svc", service + "." + namespace + ".svc.cluster.local", service + "." + namespace, service}
	return append(names, extra...)
}

// ValidateNames checks extra names: DNS names or IP addresses.
func ValidateNames(names []string) error {
	var errs []error
	for _, n := range names {
		if net.ParseIP(n) == nil && (n == "" || strings.ContainsAny(n, " /:")) {
			errs = append(errs, fmt.Errorf("--tls-extra-names: %q is neither a DNS name nor an IP address", n))
		}
	}
	return errors.Join(errs...)
}
