// Command workload is the test workload the real-node tests run from an
// image: it serves Prometheus metrics on :8080/metrics (a request counter
// and an up gauge, in the text format, by hand: the image holds one static
// binary and nothing else) and answers /healthz.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("listen", ":8080", "address to serve /metrics and /healthz on")
	flag.Parse()
	var scrapes atomic.Int64
	start := time.Now()
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		n := scrapes.Add(1)
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# HELP workload_scrapes_total Scrapes of this endpoint.\n# TYPE workload_scrapes_total counter\nworkload_scrapes_total %d\n", n)
		fmt.Fprintf(w, "# HELP workload_start_time_seconds When the workload started.\n# TYPE workload_start_time_seconds gauge\nworkload_start_time_seconds %d\n", start.Unix())
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Printf("workload: serving /metrics on %s", *addr)
	log.Fatal(srv.ListenAndServe())
}
