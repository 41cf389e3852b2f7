// Package server wires `promenroll serve`: the controller-runtime manager,
// the webhook server and its TLS, the caches the decisions read, the
// policy store, the limiter, probes and metrics, and a shutdown that
// drops readiness before it stops serving.
package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/promenroll/promenroll/internal/clusterstate"
	"github.com/promenroll/promenroll/internal/conversion"
	"github.com/promenroll/promenroll/internal/limit"
	"github.com/promenroll/promenroll/internal/policystore"
	"github.com/promenroll/promenroll/internal/promapi"
	"github.com/promenroll/promenroll/internal/reporter"
	"github.com/promenroll/promenroll/internal/selftls"
	"github.com/promenroll/promenroll/policy"
	"github.com/promenroll/promenroll/webhook"
)

// TLS modes: where the serving certificate comes from.
const (
	// TLSSelfManaged: promenroll creates a CA and a serving certificate in
	// its Secret, keeps its webhook configurations' caBundle current and
	// rotates both (package selftls); the certificate is read from the
	// Secret through the API, not from a mounted file.
	TLSSelfManaged = "selfManaged"
	// TLSCertManager: cert-manager issues the Secret, which is mounted in
	// CertDir; cert-manager's cainjector fills the caBundle.
	TLSCertManager = "certManager"
	// TLSExistingSecret: the user provides the Secret (mounted in CertDir)
	// and the caBundle.
	TLSExistingSecret = "existingSecret"
)

// Config is the configuration of `promenroll serve`. Zero values are
// replaced by the defaults documented on each field by SetDefaults.
type Config struct {
	// PolicyPath is the policy file (a mounted ConfigMap in cluster).
	PolicyPath string
	// TLSMode is where the serving certificate comes from: TLSSelfManaged
	// (default) or, for TLSCertManager and TLSExistingSecret, CertDir.
	TLSMode string
	// CertDir holds tls.crt and tls.key (cert-manager's Secret layout);
	// they are reloaded when they change. Not used in TLSSelfManaged.
	CertDir string
	// TLSSecret is the self-managed Secret's name in Namespace. Default
	// "promenroll-tls".
	TLSSecret string
	// TLSService is the Service the API server calls; the certificate is
	// valid for its names. Default "promenroll".
	TLSService string
	// TLSExtraNames are more DNS names or IPs for the certificate.
	TLSExtraNames []string
	// Lease is the leader election Lease in Namespace: its holder rotates
	// the self-managed TLS and reports the status. Default: TLSSecret.
	Lease string
	// WebhookConfiguration names the mutating and validating webhook
	// configurations whose caBundle is kept current. Default "promenroll".
	WebhookConfiguration string
	// CAValidity and CertValidity: self-managed lifetimes (defaults 10
	// years and 1 year; renewed two thirds into their life).
	CAValidity, CertValidity time.Duration
	// TrustSettle: see selftls.Authority.Settle. Default 10s.
	TrustSettle time.Duration
	// ClientCAFile, if set, requires callers (the API server) to present a
	// client certificate signed by one of its CAs.
	ClientCAFile string
	// MaxHeavyValidations and HeavyInFlightBytes bound the requests of at
	// least HeavyBytes in flight (0: GOMAXPROCS, and from GOMEMLIMIT);
	// QueueBudget is how long one may wait before it is refused. See
	// Limiter.
	MaxHeavyValidations int
	HeavyInFlightBytes  int64
	HeavyBytes          int
	QueueBudget         time.Duration
	// Host is the webhook's bind host. Default: all interfaces.
	Host string
	// Port is the webhook's HTTPS port. Default 9443.
	Port int
	// MetricsBindAddress serves /metrics. Default ":8080"; "0" disables.
	MetricsBindAddress string
	// HealthProbeBindAddress serves /healthz and /readyz. Default ":8081".
	HealthProbeBindAddress string
	// Kubeconfig is used outside a cluster; empty means in-cluster config
	// (or $KUBECONFIG).
	Kubeconfig string
	// Namespace is promenroll's own namespace, always excluded. Default:
	// $POD_NAMESPACE.
	Namespace string
	// EnableHTTP2 turns HTTP/2 on. Off by default: HTTP/2 rapid reset
	// (CVE-2023-44487) and no benefit for the API server's short calls.
	EnableHTTP2 bool
	// ShutdownDelay keeps serving, unready, after a stop signal so the
	// Service endpoints drop this pod before the listener closes. Default 5s.
	ShutdownDelay time.Duration
	// GracefulShutdownTimeout bounds waiting for in-flight requests.
	// Default 30s.
	GracefulShutdownTimeout time.Duration
	// CRDCheckInterval is how often the Prometheus and PrometheusAgent CRDs
	// are looked for (informers start when one appears, stop when it goes).
	// Default clusterstate.CRDCheckInterval (30s).
	CRDCheckInterval time.Duration
	// ReportInterval is the monitoring status' interval (reporter; 0:
	// DefaultReportInterval; negative: no reporter). Reports and Events
	// say where its results go besides the metrics; Prometheus overrides
	// how each Prometheus is reached (reporter.ParseEndpoints).
	ReportInterval  time.Duration
	Reports, Events bool
	Prometheus      map[string]promapi.Endpoint
	// Conversion serves the AlertmanagerConfig CRD's v1alpha1 <-> v1beta1
	// conversion at conversion.Path (off by default: the CRD's owner points
	// its spec.conversion here).
	Conversion bool
	// WatchSecrets watches Secrets, metadata only, so the
	// AlertmanagerConfig gate warns about the ones referenced and missing
	// (needs list/watch on Secrets: SECURITY.md).
	WatchSecrets bool
	// Registry receives the metrics. Default: controller-runtime's registry,
	// which the metrics server serves.
	Registry prometheus.Registerer
}

// Defaults of the Config fields that serve's flags also show.
const (
	DefaultPort                   = 9443
	DefaultMetricsBindAddress     = ":8080"
	DefaultHealthProbeBindAddress = ":8081"
	// DefaultTLSSecret names the self-managed Secret and the leader
	// election Lease.
	DefaultTLSSecret            = "promenroll-tls" //nolint:gosec // G101: the name of a Secret, not a credential
	DefaultTLSService           = "promenroll"
	DefaultWebhookConfiguration = "promenroll"
	// DefaultShutdownDelay outlasts the endpoint removal reaching the API
	// servers after readiness drops.
	DefaultShutdownDelay = 5 * time.Second
	// DefaultGracefulShutdownTimeout bounds in-flight requests at stop.
	DefaultGracefulShutdownTimeout = 30 * time.Second
	// DefaultReportInterval is the monitoring status' interval.
	DefaultReportInterval = reporter.DefaultInterval
)

// SetDefaults fills in zero values.
func (c *Config) SetDefaults() {
	c.Port = cmp.Or(c.Port, DefaultPort)
	c.MetricsBindAddress = cmp.Or(c.MetricsBindAddress, DefaultMetricsBindAddress)
	c.HealthProbeBindAddress = cmp.Or(c.HealthProbeBindAddress, DefaultHealthProbeBindAddress)
	c.Namespace = cmp.Or(c.Namespace, os.Getenv("POD_NAMESPACE"))
	c.ShutdownDelay = cmp.Or(c.ShutdownDelay, DefaultShutdownDelay)
	c.GracefulShutdownTimeout = cmp.Or(c.GracefulShutdownTimeout, DefaultGracefulShutdownTimeout)
	c.CRDCheckInterval = cmp.Or(c.CRDCheckInterval, clusterstate.CRDCheckInterval)
	c.ReportInterval = cmp.Or(c.ReportInterval, DefaultReportInterval)
	if c.Registry == nil {
		c.Registry = ctrlmetrics.Registry
	}
	c.TLSMode = cmp.Or(c.TLSMode, TLSSelfManaged)
	c.TLSSecret = cmp.Or(c.TLSSecret, DefaultTLSSecret)
	c.Lease = cmp.Or(c.Lease, c.TLSSecret)
	c.TLSService = cmp.Or(c.TLSService, DefaultTLSService)
	c.WebhookConfiguration = cmp.Or(c.WebhookConfiguration, DefaultWebhookConfiguration)
}

// Validate checks the configuration before anything starts.
func (c *Config) Validate() error {
	var errs []error
	if c.PolicyPath == "" {
		errs = append(errs, errors.New("--policy is required: the path of the policy file"))
	}
	switch c.TLSMode {
	case TLSSelfManaged:
		if c.Namespace == "" {
			errs = append(errs, errors.New("--tls-mode=selfManaged needs promenroll's namespace (--namespace or $POD_NAMESPACE) for its Secret and leader election"))
		}
		if c.CAValidity < 0 || c.CertValidity < 0 || (c.CAValidity > 0 && c.CertValidity > c.CAValidity) {
			errs = append(errs, errors.New("--tls-cert-validity must be positive and not longer than --tls-ca-validity"))
		}
		errs = append(errs, selftls.ValidateNames(c.TLSExtraNames))
	case TLSCertManager, TLSExistingSecret:
		if c.CertDir == "" {
			errs = append(errs, fmt.Errorf("--tls-mode=%s needs --cert-dir: the folder holding tls.crt and tls.key", c.TLSMode))
		}
		for _, f := range []string{"tls.crt", "tls.key"} {
			if _, err := os.Stat(filepath.Join(c.CertDir, f)); c.CertDir != "" && err != nil {
				errs = append(errs, fmt.Errorf("--cert-dir %s: %w (the mounted Secret must hold tls.crt and tls.key; see deploy/)", c.CertDir, err))
			}
		}
	default:
		errs = append(errs, fmt.Errorf("--tls-mode %q: use selfManaged, certManager or existingSecret", c.TLSMode))
	}
	if c.ClientCAFile != "" {
		if _, err := selftls.LoadCertPool("--client-ca", c.ClientCAFile); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Port <= 0 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("--port %d is not a TCP port", c.Port))
	}
	if c.ShutdownDelay < 0 || c.GracefulShutdownTimeout < 0 {
		errs = append(errs, errors.New("shutdown durations must not be negative"))
	}
	if c.CRDCheckInterval < 0 {
		errs = append(errs, errors.New("--crd-check-interval must not be negative"))
	}
	return errors.Join(errs...)
}

// Run serves the webhooks until ctx ends, in phases: load the policy,
// connect to the API server, set up the manager (webhook server, namespace
// cache, probes, metrics, policy watcher), start; on stop, report unready,
// wait ShutdownDelay, then let in-flight requests finish.
func Run(ctx context.Context, cfg Config, log logr.Logger) error {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.ReportInterval > 0 && cfg.Namespace == "" {
		log.Info("monitoring status off: it needs promenroll's namespace (--namespace or $POD_NAMESPACE) for leader election")
		cfg.ReportInterval = -1
	}
	metrics := webhook.NewMetrics(cfg.Registry)
	store, err := policystore.New(cfg.PolicyPath, policy.Options{OwnNamespace: cfg.Namespace}, policystore.NewMetrics(cfg.Registry))
	if err != nil {
		return fmt.Errorf("load policy: %w", err)
	}
	p := store.Policy()
	log.Info("policy loaded", "path", cfg.PolicyPath, "generation", p.Generation, "mode", p.Source.Mode, "enrollRules", len(p.Source.Enroll))

	restCfg, err := clusterstate.RESTConfig(cfg.Kubeconfig, "promenroll")
	if err != nil {
		return fmt.Errorf("kubernetes client config: %w", err)
	}
	var selfTLS *selftls.Authority
	if cfg.TLSMode == TLSSelfManaged {
		selfTLS = &selftls.Authority{
			Secret:               types.NamespacedName{Namespace: cfg.Namespace, Name: cfg.TLSSecret},
			Names:                selftls.ServingNames(cfg.TLSService, cfg.Namespace, cfg.TLSExtraNames),
			WebhookConfiguration: cfg.WebhookConfiguration,
			CAValidity:           cfg.CAValidity,
			CertValidity:         cfg.CertValidity,
			Settle:               cfg.TrustSettle,
		}
		selfTLS.SetDefaults()
	}
	mgr, err := newManager(restCfg, cfg, selfTLS, log)
	if err != nil {
		return fmt.Errorf("set up manager: %w", err)
	}
	if selfTLS != nil {
		selfTLS.Cache, selfTLS.Reader, selfTLS.Client, selfTLS.Metrics, selfTLS.Log = mgr.GetCache(), mgr.GetCache(), mgr.GetClient(), selftls.NewMetrics(cfg.Registry), log.WithName("tls")
		if err := selfTLS.Watch(ctx); err != nil {
			return err
		}
		if err := mgr.Add(selfTLS.Rotation()); err != nil {
			return err
		}
		if err := mgr.AddReadyzCheck("tls", selfTLS.Ready); err != nil {
			return err
		}
	}
	namespaces := clusterstate.CachedNamespaces{Cache: mgr.GetCache(), Live: mgr.GetAPIReader()}
	// Register the informer now so the cache lists namespaces at start and
	// readiness waits for it.
	if _, err := mgr.GetCache().GetInformer(ctx, clusterstate.NamespaceMeta()); err != nil {
		return fmt.Errorf("namespace informer: %w", err)
	}
	// Prometheus and PrometheusAgent informers follow their CRDs: started
	// now if served, later when they appear, removed when they go.
	dc, err := discovery.NewDiscoveryClientForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("discovery client: %w", err)
	}
	prometheuses := clusterstate.NewDynamicPrometheuses(mgr.GetCache(), dc, log.WithName("crds"))
	prometheuses.Interval = cfg.CRDCheckInterval
	if cfg.ReportInterval > 0 {
		prometheuses.FollowStatusKinds()
	}
	if err := prometheuses.Sync(ctx); err != nil {
		return fmt.Errorf("check the Prometheus CRDs: %w", err)
	}
	if err := mgr.Add(everyReplica{prometheuses}); err != nil {
		return err
	}
	srv := mgr.GetWebhookServer()
	// Large requests are bounded before their bodies are read, on both paths.
	limiter := limit.New(limit.Config{MaxInFlight: cfg.MaxHeavyValidations, InFlightBytes: cfg.HeavyInFlightBytes, HeavyBytes: cfg.HeavyBytes, Budget: cfg.QueueBudget}, metrics.Shed)
	srv.Register(webhook.MutatePath, webhook.Endpoint("mutate", &webhook.Mutator{Policies: store, Namespaces: namespaces, Prometheuses: prometheuses, Metrics: metrics}, limiter))
	// Services: the monitor gate's warnings (a port no Service declares).
	if _, err := mgr.GetCache().GetInformer(ctx, &corev1.Service{}); err != nil {
		return fmt.Errorf("service informer: %w", err)
	}
	services := clusterstate.CachedServices{Cache: mgr.GetCache()}
	// Workloads' pod templates: the PodMonitor checks (a port no Pod declares).
	for _, obj := range clusterstate.PodOwners() {
		if _, err := mgr.GetCache().GetInformer(ctx, obj); err != nil {
			return fmt.Errorf("%T informer: %w", obj, err)
		}
	}
	workloads := clusterstate.CachedWorkloads{Cache: mgr.GetCache()}
	validator := &webhook.Validator{Policies: store, Namespaces: namespaces, Services: services, Workloads: workloads, Prometheuses: prometheuses, Metrics: metrics}
	if cfg.WatchSecrets {
		secrets, err := clusterstate.NewSecretCache(restCfg, mgr.GetScheme(), mgr.GetRESTMapper())
		if err != nil {
			return fmt.Errorf("secret cache: %w", err)
		}
		if _, err := secrets.GetInformer(ctx, clusterstate.SecretMeta()); err != nil {
			return fmt.Errorf("secret informer (metadata only): %w", err)
		}
		// Every replica admits, so every replica watches.
		if err := mgr.Add(everyReplica{secrets}); err != nil {
			return err
		}
		validator.Secrets = clusterstate.CachedSecrets{Cache: secrets}
	}
	srv.Register(webhook.ValidatePath, webhook.Endpoint("validate", validator, limiter))
	if cfg.Conversion {
		// Not through the limiter: shedding a conversion fails the API
		// server's read of every AlertmanagerConfig in v1beta1.
		h, err := conversion.Handler()
		if err != nil {
			return err
		}
		srv.Register(conversion.Path, h)
	}

	if cfg.ReportInterval > 0 {
		if err := mgr.Add(&reporter.Reporter{
			Config:   reporter.Config{Interval: cfg.ReportInterval, Endpoints: cfg.Prometheus, Reports: cfg.Reports, Events: cfg.Events},
			Policies: store, Kinds: prometheuses, Cache: mgr.GetCache(), Client: mgr.GetClient(),
			Recorder: mgr.GetEventRecorder("promenroll"), Metrics: reporter.NewMetrics(cfg.Registry), Log: log.WithName("status"),
		}); err != nil {
			return err
		}
	}

	var stopping atomic.Bool
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	for name, check := range map[string]healthz.Checker{
		"webhook": srv.StartedChecker(),
		"namespace-cache": func(*http.Request) error {
			syncCtx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			if !mgr.GetCache().WaitForCacheSync(syncCtx) {
				return errors.New("namespace cache not synced")
			}
			return nil
		},
		"shutdown": func(*http.Request) error {
			if stopping.Load() {
				return errors.New("shutting down")
			}
			return nil
		},
	} {
		if err := mgr.AddReadyzCheck(name, check); err != nil {
			return err
		}
	}
	if err := mgr.Add(everyReplica{manager.RunnableFunc(func(ctx context.Context) error {
		return store.Watch(ctx, log.WithName("policy"))
	})}); err != nil {
		return err
	}

	// The manager runs on its own context so that a stop signal first
	// drops readiness and only then stops serving.
	mgrCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	go func() {
		select {
		case <-ctx.Done():
			stopping.Store(true)
			log.Info("stop requested: readiness off, still serving", "delay", cfg.ShutdownDelay.String())
			select {
			case <-time.After(cfg.ShutdownDelay):
			case <-mgrCtx.Done():
			}
			stop()
		case <-mgrCtx.Done():
		}
	}()
	log.Info("serving", "port", cfg.Port, "tlsMode", cfg.TLSMode, "certDir", cfg.CertDir, "metrics", cfg.MetricsBindAddress, "probes", cfg.HealthProbeBindAddress)
	if err := mgr.Start(mgrCtx); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("stopped")
	return nil
}

// everyReplica marks a runnable that runs on every replica, not only on
// the leader (controller-runtime's default for plain runnables).
type everyReplica struct{ manager.Runnable }

func (everyReplica) NeedLeaderElection() bool { return false }

func newManager(restCfg *rest.Config, cfg Config, selfTLS *selftls.Authority, log logr.Logger) (manager.Manager, error) {
	scheme, err := clusterstate.Scheme()
	if err != nil {
		return nil, err
	}
	tlsOpts := []func(*tls.Config){func(c *tls.Config) {
		c.MinVersion = tls.VersionTLS12
		if !cfg.EnableHTTP2 {
			c.NextProtos = []string{"http/1.1"}
		}
	}}
	if selfTLS != nil {
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.GetCertificate = selfTLS.GetCertificate })
	}
	if cfg.ClientCAFile != "" {
		pool, err := selftls.LoadCertPool("--client-ca", cfg.ClientCAFile)
		if err != nil {
			return nil, err
		}
		tlsOpts = append(tlsOpts, func(c *tls.Config) {
			c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
		})
	}
	cacheOpts := clusterstate.CacheOptions()
	// One Lease elects the replica that rotates the self-managed TLS and
	// the one that reports the status: both are cluster-wide singletons
	// with the same failover, and controller-runtime runs one election.
	leaderElection := cfg.ReportInterval > 0
	if cfg.ReportInterval > 0 {
		clusterstate.StatusCacheOptions(cacheOpts)
	}
	if selfTLS != nil {
		for obj, by := range selfTLS.CacheOptions() {
			cacheOpts.ByObject[obj] = by
		}
		leaderElection = true
	}
	return manager.New(restCfg, manager.Options{
		Scheme: scheme,
		Logger: log,
		WebhookServer: ctrlwebhook.NewServer(ctrlwebhook.Options{
			Host:    cfg.Host,
			Port:    cfg.Port,
			CertDir: cfg.CertDir,
			TLSOpts: tlsOpts,
		}),
		Cache: cacheOpts,
		// Exactly one replica writes the Secret and the caBundle, and
		// reports; the lease is released on a clean stop so the other
		// replica takes over at once.
		LeaderElection:                leaderElection,
		LeaderElectionID:              cfg.Lease,
		LeaderElectionNamespace:       cfg.Namespace,
		LeaderElectionResourceLock:    "leases",
		LeaderElectionReleaseOnCancel: true,
		Metrics:                       metricsserver.Options{BindAddress: cfg.MetricsBindAddress},
		HealthProbeBindAddress:        cfg.HealthProbeBindAddress,
		GracefulShutdownTimeout:       &cfg.GracefulShutdownTimeout,
	})
}
