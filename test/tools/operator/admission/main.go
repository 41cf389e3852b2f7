// Command admission serves prometheus-operator's own admission webhook
// (pkg/admission: /admission-prometheusrules/validate and /mutate) over
// HTTPS on 127.0.0.1, as the operator's admission-webhook binary does, so
// the load harness (test/load) can send it the very bodies it sends
// promenroll and report the ratio. It prints the address once serving and
// runs until stdin closes or it is killed.
package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"

	"github.com/prometheus-operator/prometheus-operator/pkg/admission"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
)

func main() {
	mux := http.NewServeMux()
	// Logging off, as the harness measures the handler, not its log sink.
	admission.New(slog.New(slog.NewTextHandler(io.Discard, nil)), model.UTF8Validation, parser.Options{}).Register(mux)
	// On 127.0.0.1 with a throw-away certificate, as the harness serves
	// promenroll's handlers.
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	srv.StartTLS()
	defer srv.Close()
	fmt.Println(srv.Listener.Addr().String())
	_, _ = io.Copy(io.Discard, os.Stdin)
}
