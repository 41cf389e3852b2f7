// Package promapitest writes Prometheus API answers shaped as a real
// Prometheus writes them for Kubernetes targets (every discovered label
// the pod and endpointslice roles give), for tests and benchmarks.
package promapitest

import (
	"encoding/json"
	"fmt"
	"io"
)

// Target describes one active or dropped target of a pod.
type Target struct {
	Pool                 string
	Namespace, Pod, IP   string
	ControllerKind, Name string // the pod's controller (a ReplicaSet: Name-Hash)
	Hash                 string
	Service, Port        string
	Health, LastError    string
}

// discovered is what Prometheus' Kubernetes discovery gives a pod target:
// the labels the status reads among some thirty others.
func (t Target) discovered() map[string]string {
	ctrl := t.Name
	if t.ControllerKind == "ReplicaSet" {
		ctrl = t.Name + "-" + t.Hash
	}
	l := map[string]string{
		"__address__": t.IP + ":8080", "__meta_kubernetes_namespace": t.Namespace,
		"__meta_kubernetes_pod_name": t.Pod, "__meta_kubernetes_pod_ip": t.IP, "__meta_kubernetes_pod_node_name": "node-1",
		"__meta_kubernetes_pod_host_ip": "10.0.0.1", "__meta_kubernetes_pod_uid": "0b4d4c2e-8f0a-4b6e-9d55-1a2b3c4d5e6f",
		"__meta_kubernetes_pod_phase": "Running", "__meta_kubernetes_pod_ready": "true",
		"__meta_kubernetes_pod_controller_kind": t.ControllerKind, "__meta_kubernetes_pod_controller_name": ctrl,
		"__meta_kubernetes_pod_container_name": "app", "__meta_kubernetes_pod_container_image": "registry.example/app:1.2.3",
		"__meta_kubernetes_pod_container_id": "containerd://5f1c0e4b8a", "__meta_kubernetes_pod_container_init": "false",
		"__meta_kubernetes_pod_container_port_name": t.Port, "__meta_kubernetes_pod_container_port_number": "8080",
		"__meta_kubernetes_pod_container_port_protocol":      "TCP",
		"__meta_kubernetes_pod_label_app_kubernetes_io_name": t.Name, "__meta_kubernetes_pod_labelpresent_app_kubernetes_io_name": "true",
		"__meta_kubernetes_pod_label_monitoring_promenroll_io_scrape": "true", "__meta_kubernetes_pod_labelpresent_monitoring_promenroll_io_scrape": "true",
		"__meta_kubernetes_pod_annotation_kubectl_kubernetes_io_restartedAt":        "2026-11-30T10:00:00Z",
		"__meta_kubernetes_pod_annotationpresent_kubectl_kubernetes_io_restartedAt": "true",
		"__metrics_path__": "/metrics", "__scheme__": "http", "__scrape_interval__": "30s", "__scrape_timeout__": "10s",
		"job": t.Pool,
	}
	if t.Hash != "" {
		l["__meta_kubernetes_pod_label_pod_template_hash"] = t.Hash
		l["__meta_kubernetes_pod_labelpresent_pod_template_hash"] = "true"
	}
	if t.Service != "" {
		l["__meta_kubernetes_service_name"] = t.Service
		l["__meta_kubernetes_endpointslice_name"] = t.Service + "-x7k2p"
		l["__meta_kubernetes_endpointslice_port_name"] = t.Port
		l["__meta_kubernetes_endpointslice_port_protocol"] = "TCP"
		l["__meta_kubernetes_endpointslice_endpoint_conditions_ready"] = "true"
		l["__meta_kubernetes_service_label_app_kubernetes_io_name"] = t.Service
	}
	return l
}

// WriteTargets writes an /api/v1/targets answer.
func WriteTargets(w io.Writer, active, dropped []Target) error {
	type activeJSON struct {
		Discovered map[string]string `json:"discoveredLabels"`
		Labels     map[string]string `json:"labels"`
		ScrapePool string            `json:"scrapePool"`
		ScrapeURL  string            `json:"scrapeUrl"`
		GlobalURL  string            `json:"globalUrl"`
		LastError  string            `json:"lastError"`
		LastScrape string            `json:"lastScrape"`
		Duration   float64           `json:"lastScrapeDuration"`
		Health     string            `json:"health"`
		Interval   string            `json:"scrapeInterval"`
		Timeout    string            `json:"scrapeTimeout"`
	}
	type droppedJSON struct {
		Discovered map[string]string `json:"discoveredLabels"`
		ScrapePool string            `json:"scrapePool"`
	}
	if _, err := io.WriteString(w, `{"status":"success","data":{"activeTargets":[`); err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	for i, t := range active {
		if i > 0 {
			if _, err := io.WriteString(w, ","); err != nil {
				return err
			}
		}
		url := fmt.Sprintf("http://%s:8080/metrics", t.IP)
		if err := enc.Encode(activeJSON{Discovered: t.discovered(),
			Labels:     map[string]string{"container": "app", "endpoint": t.Port, "instance": t.IP + ":8080", "job": t.Namespace + "/" + t.Name, "namespace": t.Namespace, "pod": t.Pod},
			ScrapePool: t.Pool, ScrapeURL: url, GlobalURL: url, LastError: t.LastError, LastScrape: "2026-12-03T10:00:00.123456789Z",
			Duration: 0.0031, Health: t.Health, Interval: "30s", Timeout: "10s"}); err != nil {
			return err
		}
	}
	if _, err := io.WriteString(w, `],"droppedTargets":[`); err != nil {
		return err
	}
	for i, t := range dropped {
		if i > 0 {
			if _, err := io.WriteString(w, ","); err != nil {
				return err
			}
		}
		if err := enc.Encode(droppedJSON{Discovered: t.discovered(), ScrapePool: t.Pool}); err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, `],"droppedTargetCounts":{}}}`)
	return err
}

// Rule is one rule of a group in an /api/v1/rules answer.
type Rule struct {
	Name, Type, Health, LastError string
}

// Group is a rule group in an /api/v1/rules answer.
type Group struct {
	Name, File string
	Rules      []Rule
}

// WriteRules writes an /api/v1/rules answer.
func WriteRules(w io.Writer, groups []Group) error {
	type ruleJSON struct {
		Name      string            `json:"name"`
		Query     string            `json:"query"`
		Health    string            `json:"health"`
		LastError string            `json:"lastError,omitempty"`
		Type      string            `json:"type"`
		Labels    map[string]string `json:"labels"`
		Eval      string            `json:"lastEvaluation"`
	}
	type groupJSON struct {
		Name     string     `json:"name"`
		File     string     `json:"file"`
		Rules    []ruleJSON `json:"rules"`
		Interval float64    `json:"interval"`
		Limit    int        `json:"limit"`
	}
	out := struct {
		Status string `json:"status"`
		Data   struct {
			Groups []groupJSON `json:"groups"`
		} `json:"data"`
	}{Status: "success"}
	for _, g := range groups {
		gj := groupJSON{Name: g.Name, File: g.File, Interval: 30}
		for _, r := range g.Rules {
			gj.Rules = append(gj.Rules, ruleJSON{Name: r.Name, Query: "up", Health: r.Health, LastError: r.LastError, Type: r.Type, Labels: map[string]string{}, Eval: "2026-12-03T10:00:00Z"})
		}
		out.Data.Groups = append(out.Data.Groups, gj)
	}
	return json.NewEncoder(w).Encode(out)
}
