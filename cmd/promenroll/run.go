package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"strings"

	"github.com/go-logr/logr"
	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/promenroll/promenroll/webhook"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

const usage = `promenroll: Prometheus enrollment and the PrometheusRule and monitor gates for Kubernetes.

Usage:
  promenroll serve   [flags]                        run the admission webhook server
  promenroll check   --policy FILE [PATH | -]...    check a policy, PrometheusRules and monitors offline
  promenroll audit   --policy FILE [--kubeconfig F]   scan a live cluster, read-only, with the same engine
  promenroll version                                 print the version

Run 'promenroll <command> -h' for a command's flags.
`

// usageError is a command-line mistake: exit code 2.
type usageError struct{ error }

func exitCode(err error) int {
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

// run is main without the process: tests call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{errors.New("no command given")}
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stderr)
	case "check":
		return check(args[1:], stdout, stderr)
	case "audit":
		return audit(ctx, args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "promenroll", buildVersion())
		return nil
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return usageError{fmt.Errorf("unknown command %q", args[0])}
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

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	var cfg webhook.Config
	var logLevel string
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.PolicyPath, "policy", "/etc/promenroll/policy.yaml", "policy file; reloaded when it changes")
	fs.StringVar(&cfg.TLSMode, "tls-mode", webhook.TLSSelfManaged, "where the serving certificate comes from: selfManaged (promenroll keeps a CA and certificate in --tls-secret and the caBundle of --webhook-configuration), certManager or existingSecret (both read --cert-dir)")
	fs.StringVar(&cfg.CertDir, "cert-dir", "/etc/promenroll/tls", "certManager and existingSecret: folder with tls.crt and tls.key; reloaded when they change")
	fs.StringVar(&cfg.TLSSecret, "tls-secret", "promenroll-tls", "selfManaged: the Secret in promenroll's namespace that holds the CA and the serving certificate")
	fs.StringVar(&cfg.TLSService, "tls-service", "promenroll", "selfManaged: the Service the API server calls; the certificate is valid for its DNS names")
	fs.Func("tls-extra-names", "selfManaged: more DNS names or IPs for the certificate, comma-separated", func(v string) error {
		cfg.TLSExtraNames = append(cfg.TLSExtraNames, strings.Split(v, ",")...)
		return nil
	})
	fs.StringVar(&cfg.WebhookConfiguration, "webhook-configuration", "promenroll", "selfManaged: the mutating and validating webhook configurations whose caBundle is kept current")
	fs.DurationVar(&cfg.CAValidity, "tls-ca-validity", webhook.DefaultCAValidity, "selfManaged: lifetime of a new CA (renewed two thirds into it)")
	fs.DurationVar(&cfg.CertValidity, "tls-cert-validity", webhook.DefaultCertValidity, "selfManaged: lifetime of a new serving certificate (renewed two thirds into it)")
	fs.DurationVar(&cfg.TrustSettle, "tls-trust-settle", webhook.DefaultTrustSettle, "selfManaged: how long a new CA is in the caBundle before a certificate it signed is served")
	fs.StringVar(&cfg.ClientCAFile, "client-ca", "", "PEM CA bundle: require callers (the API server) to present a client certificate it signed")
	fs.IntVar(&cfg.Port, "port", 9443, "webhook HTTPS port")
	fs.StringVar(&cfg.Host, "bind-host", "", "webhook bind host (default: all interfaces)")
	fs.StringVar(&cfg.MetricsBindAddress, "metrics-bind-address", ":8080", "metrics address; \"0\" disables")
	fs.StringVar(&cfg.HealthProbeBindAddress, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "kubeconfig outside a cluster (default: in-cluster config, then $KUBECONFIG)")
	fs.StringVar(&cfg.Namespace, "namespace", "", "promenroll's own namespace, always excluded (default: $POD_NAMESPACE)")
	fs.BoolVar(&cfg.EnableHTTP2, "enable-http2", false, "serve HTTP/2 (off: CVE-2023-44487)")
	fs.DurationVar(&cfg.ShutdownDelay, "shutdown-delay", 0, "keep serving, unready, this long after a stop signal (default 5s)")
	fs.DurationVar(&cfg.CRDCheckInterval, "crd-check-interval", 0, "how often to look whether the Prometheus and PrometheusAgent CRDs appeared or went (default 30s)")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("serve takes no arguments, got %q", strings.Join(fs.Args(), " "))}
	}
	log, err := newLogger(logLevel, stderr)
	if err != nil {
		return usageError{err}
	}
	log.Info("starting", "version", buildVersion())
	return webhook.Run(ctx, cfg, log)
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
