package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"

	"github.com/go-logr/logr"
	"github.com/go-logr/zapr"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/promenroll/promenroll/internal/clusterstate"
	"github.com/promenroll/promenroll/internal/limit"
	"github.com/promenroll/promenroll/internal/reporter"
	"github.com/promenroll/promenroll/internal/selftls"
	"github.com/promenroll/promenroll/internal/server"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

// Exit codes, as the CI tools of this ecosystem use them: 0 nothing would
// be denied, 1 something would be denied, 2 the run itself failed (usage,
// I/O, an unparseable document, an invalid policy).
const (
	exitDenied = 1
	exitError  = 2
)

// usageError is a command-line mistake: exit code 2.
type usageError struct{ error }

func exitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errCheckFailed):
		return exitDenied
	}
	return exitError
}

// run is main without the process: tests call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := newRootCommand(stdout, stderr)
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "promenroll",
		Short: "Prometheus enrollment and the PrometheusRule and monitor gates for Kubernetes",
		Long: `promenroll labels new workloads so the Prometheus Operator scrapes them,
ships the monitors that select them, and refuses PrometheusRules and monitors
that Prometheus or the operator would drop. The same engine runs as an
admission webhook (serve), offline over manifests (check) and against a live
cluster (audit).

Exit codes of check and audit: 0 nothing would be denied, 1 something would
be denied, 2 usage, I/O, parse or policy error.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w (run '%s --help')", err, c.CommandPath())}
	})
	root.AddCommand(newServeCommand(), newCheckCommand(), newAuditCommand(), newStatusCommand(), newCompileCommand(), &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(c *cobra.Command, _ []string) {
			fmt.Fprintln(c.OutOrStdout(), "promenroll", buildVersion())
		},
	})
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		usageArgs(c)
	}
	return root
}

// usageArgs makes argument errors (unknown command, stray arguments) usage
// errors: exit code 2.
func usageArgs(c *cobra.Command) {
	if c.Args == nil {
		return
	}
	args := c.Args
	c.Args = func(cmd *cobra.Command, a []string) error {
		if err := args(cmd, a); err != nil {
			return usageError{fmt.Errorf("%w (run '%s --help')", err, cmd.CommandPath())}
		}
		return nil
	}
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

func newServeCommand() *cobra.Command {
	var cfg server.Config
	var logLevel string
	var promURLs, promCAs, promTokens []string
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run the admission webhook server",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel, c.ErrOrStderr())
			if err != nil {
				return usageError{err}
			}
			if cfg.Prometheus, err = reporter.ParseEndpoints(promURLs, promCAs, promTokens); err != nil {
				return usageError{err}
			}
			log.Info("starting", "version", buildVersion())
			return server.Run(c.Context(), cfg, log)
		},
	}
	fs := c.Flags()
	fs.StringVar(&cfg.PolicyPath, "policy", "/etc/promenroll/policy.yaml", "policy file; reloaded when it changes")
	fs.StringVar(&cfg.TLSMode, "tls-mode", server.TLSSelfManaged, "where the serving certificate comes from: selfManaged (promenroll keeps a CA and certificate in --tls-secret and the caBundle of --webhook-configuration), certManager or existingSecret (both read --cert-dir)")
	fs.StringVar(&cfg.CertDir, "cert-dir", "/etc/promenroll/tls", "certManager and existingSecret: folder with tls.crt and tls.key; reloaded when they change")
	fs.StringVar(&cfg.TLSSecret, "tls-secret", server.DefaultTLSSecret, "selfManaged: the Secret in promenroll's namespace (also the default --lease)")
	fs.StringVar(&cfg.TLSService, "tls-service", server.DefaultTLSService, "selfManaged: the Service the API server calls; the certificate is valid for its DNS names")
	fs.StringSliceVar(&cfg.TLSExtraNames, "tls-extra-names", nil, "selfManaged: more DNS names or IPs for the certificate")
	fs.StringVar(&cfg.WebhookConfiguration, "webhook-configuration", server.DefaultWebhookConfiguration, "selfManaged: the mutating and validating webhook configurations whose caBundle is kept current")
	fs.DurationVar(&cfg.CAValidity, "tls-ca-validity", selftls.DefaultCAValidity, "selfManaged: lifetime of a new CA (renewed two thirds into it)")
	fs.DurationVar(&cfg.CertValidity, "tls-cert-validity", selftls.DefaultCertValidity, "selfManaged: lifetime of a new serving certificate (renewed two thirds into it)")
	fs.DurationVar(&cfg.TrustSettle, "tls-trust-settle", selftls.DefaultTrustSettle, "selfManaged: how long a new CA is in the caBundle before a certificate it signed is served")
	fs.StringVar(&cfg.ClientCAFile, "client-ca", "", "PEM CA bundle: require callers (the API server) to present a client certificate it signed")
	fs.IntVar(&cfg.MaxHeavyValidations, "max-heavy-validations", 0, "requests of --heavy-bytes or more decoded and judged at once (default: GOMAXPROCS); beyond, a request waits --queue-budget, then is refused with HTTP 429")
	fs.Int64Var(&cfg.HeavyInFlightBytes, "heavy-inflight-bytes", 0, "bytes of such requests' bodies in flight at once (default: GOMEMLIMIT / 32, so their heap stays within half the memory limit; unbounded without GOMEMLIMIT)")
	fs.IntVar(&cfg.HeavyBytes, "heavy-bytes", limit.DefaultHeavyBytes, "request bodies this large or larger are heavy")
	fs.DurationVar(&cfg.QueueBudget, "queue-budget", limit.DefaultQueueBudget, "how long a heavy request may wait to start (at most half the API server's timeout for the call)")
	fs.IntVar(&cfg.Port, "port", server.DefaultPort, "webhook HTTPS port")
	fs.StringVar(&cfg.Host, "bind-host", "", "webhook bind host (default: all interfaces)")
	fs.StringVar(&cfg.MetricsBindAddress, "metrics-bind-address", server.DefaultMetricsBindAddress, "metrics address; \"0\" disables")
	fs.StringVar(&cfg.HealthProbeBindAddress, "health-probe-bind-address", server.DefaultHealthProbeBindAddress, "address of /healthz and /readyz")
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "kubeconfig outside a cluster (default: in-cluster config, then $KUBECONFIG)")
	fs.StringVar(&cfg.Namespace, "namespace", "", "promenroll's own namespace, always excluded (default: $POD_NAMESPACE)")
	fs.BoolVar(&cfg.EnableHTTP2, "enable-http2", false, "serve HTTP/2 (off: CVE-2023-44487)")
	fs.DurationVar(&cfg.ShutdownDelay, "shutdown-delay", server.DefaultShutdownDelay, "keep serving, unready, this long after a stop signal")
	fs.DurationVar(&cfg.CRDCheckInterval, "crd-check-interval", clusterstate.CRDCheckInterval, "how often to look whether the Prometheus and PrometheusAgent CRDs appeared or went")
	fs.StringVar(&cfg.Lease, "lease", "", "the leader election Lease in promenroll's namespace: its holder rotates the self-managed TLS and reports the status (default: the --tls-secret name)")
	fs.DurationVar(&cfg.ReportInterval, "report-interval", server.DefaultReportInterval, "monitoring status: how often the leader asks each Prometheus for its targets and rules and reports (negative: no status)")
	fs.BoolVar(&cfg.Reports, "report-openreports", true, "monitoring status: write one OpenReports Report per namespace (when the CRD is served)")
	fs.BoolVar(&cfg.Events, "report-events", true, "monitoring status: tell each change of an object's status as an Event on it")
	fs.StringArrayVar(&promURLs, "prometheus-url", nil, "monitoring status: NAMESPACE/NAME=URL of a Prometheus' API (default: http://prometheus-operated.NAMESPACE.svc:9090, the operator's governing Service); repeatable")
	fs.StringArrayVar(&promCAs, "prometheus-ca-file", nil, "monitoring status: [NAMESPACE/NAME=]FILE, a PEM CA verifying a Prometheus' https URL (bare: every Prometheus); repeatable")
	fs.StringArrayVar(&promTokens, "prometheus-bearer-token-file", nil, "monitoring status: [NAMESPACE/NAME=]FILE, a bearer token sent to a Prometheus, read at every call (bare: every Prometheus); repeatable")
	fs.BoolVar(&cfg.WatchSecrets, "watch-secrets", false, "watch Secrets, metadata only, to warn about AlertmanagerConfigs referencing missing ones (needs list/watch on Secrets: SECURITY.md)")
	fs.BoolVar(&cfg.Conversion, "serve-conversion", false, "serve the AlertmanagerConfig CRD's v1alpha1/v1beta1 conversion at /convert (point the CRD's spec.conversion here: docs/gates.md)")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info or error")
	return c
}

// newLogger creates the process's one logger: JSON lines through zap,
// handed to controller-runtime and klog through zapr.
func newLogger(level string, w io.Writer) (logr.Logger, error) {
	var lvl zapcore.Level
	switch level {
	case "debug":
		lvl = zapcore.DebugLevel
	case "info":
		lvl = zapcore.InfoLevel
	case "error":
		lvl = zapcore.ErrorLevel
	default:
		return logr.Discard(), fmt.Errorf("--log-level %q: use debug, info or error", level)
	}
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.Lock(zapcore.AddSync(w)), lvl)
	log := zapr.NewLogger(zap.New(core))
	ctrl.SetLogger(log)
	klog.SetLogger(log)
	return log, nil
}
