// Package promapi asks a Prometheus for its targets (/api/v1/targets) and
// rules (/api/v1/rules), for the status. Answers are decoded as they
// stream in, bounded in size and time, keeping of each target only the
// few discovered labels the status reads: an answer with 10,000 targets
// costs what those fields cost, not the tens of labels per target
// Prometheus sends.
package promapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/promenroll/promenroll/policy"
)

// Defaults of a Client.
const (
	// DefaultTimeout bounds one call, well inside the report interval.
	DefaultTimeout = 15 * time.Second
	// DefaultMaxBytes bounds one answer: 10,000 active targets with
	// Kubernetes' discovered labels are about 30 MiB of JSON.
	DefaultMaxBytes = 128 << 20
)

// Endpoint is how to reach one Prometheus' HTTP API.
type Endpoint struct {
	// URL is the API's base: scheme, host and route prefix
	// (http://prometheus-operated.monitoring.svc:9090).
	URL string
	// CAFile, if set, verifies an https URL; BearerTokenFile, if set, is
	// read at every call (a projected token rotates) and sent as
	// Authorization: Bearer.
	CAFile, BearerTokenFile string
}

// Client asks one Prometheus.
type Client struct {
	endpoint Endpoint
	base     *url.URL
	http     *http.Client
	// Timeout and MaxBytes bound each call (zero: the defaults).
	Timeout  time.Duration
	MaxBytes int64
}

// New returns a Client for e, or an error naming what in e is wrong.
func New(e Endpoint) (*Client, error) {
	u, err := url.Parse(e.URL)
	if err != nil || u.Host == "" || u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("the Prometheus URL %q: want http(s)://host[:port][/prefix]", e.URL)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if e.CAFile != "" {
		pem, err := os.ReadFile(e.CAFile)
		if err != nil {
			return nil, fmt.Errorf("the Prometheus CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("the Prometheus CA %s: no PEM certificate in it", e.CAFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &Client{endpoint: e, base: u, http: &http.Client{Transport: tr}}, nil
}

// NewThrough returns a Client that reaches base with hc: the API server's
// service proxy (base .../api/v1/namespaces/NS/services/SCHEME:NAME:web/proxy,
// hc authenticated as the kubeconfig's user), as `promenroll status` does.
func NewThrough(base string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("the Prometheus URL %q: %w", base, err)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("the Prometheus URL %q has no host", base)
	}
	return &Client{endpoint: Endpoint{URL: base}, base: u, http: hc}, nil
}

// Close drops the idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// State asks for the targets and, unless agent (an agent evaluates no
// rules), the rules. A failure is the state's Err, never a panic.
func (c *Client) State(ctx context.Context, agent bool) policy.PrometheusState {
	var st policy.PrometheusState
	err := c.get(ctx, "/api/v1/targets", func(r io.Reader) error {
		var err error
		st.Active, st.Dropped, err = DecodeTargets(r)
		return err
	})
	if err == nil && !agent {
		err = c.get(ctx, "/api/v1/rules", func(r io.Reader) error {
			var err error
			st.Groups, err = DecodeRules(r)
			return err
		})
		if st.Groups == nil && err == nil {
			st.Groups = []policy.RuleGroupStatus{}
		}
	}
	if err != nil {
		return policy.PrometheusState{Err: err.Error()}
	}
	return st
}

// get calls path and decodes the answer's body with decode, within the
// timeout and the size bound.
func (c *Client) get(ctx context.Context, path string, decode func(io.Reader) error) error {
	timeout, max := c.Timeout, c.MaxBytes
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if max <= 0 {
		max = DefaultMaxBytes
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	u := c.base.JoinPath(path)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if c.endpoint.BearerTokenFile != "" {
		tok, err := os.ReadFile(c.endpoint.BearerTokenFile)
		if err != nil {
			return fmt.Errorf("bearer token for %s: %w", c.base.Host, err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("GET %s: no answer within %s", u.Redacted(), timeout)
		}
		return fmt.Errorf("GET %s: %w", u.Redacted(), err)
	}
	defer resp.Body.Close()
	body := &limited{r: resp.Body, left: max}
	if ct := resp.Header.Get("Content-Type"); strings.HasPrefix(ct, "text/html") {
		head, _ := io.ReadAll(io.LimitReader(resp.Body, 120))
		return fmt.Errorf("GET %s: HTTP %d, %s, not Prometheus' JSON (is this Prometheus' API?): %q", u.Redacted(), resp.StatusCode, ct, head)
	}
	if err := decode(body); err != nil {
		switch {
		case body.over:
			return fmt.Errorf("GET %s: the answer is larger than %d MiB, the most promenroll reads: shard the Prometheus and give each shard its URL", u.Redacted(), max>>20)
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			return fmt.Errorf("GET %s: the answer did not end within %s", u.Redacted(), timeout)
		case resp.StatusCode != http.StatusOK:
			return fmt.Errorf("GET %s: HTTP %d: %w", u.Redacted(), resp.StatusCode, err)
		}
		return fmt.Errorf("GET %s: %w", u.Redacted(), err)
	}
	return nil
}

// limited reads at most left bytes and then fails, noting it went over.
type limited struct {
	r    io.Reader
	left int64
	over bool
}

func (l *limited) Read(p []byte) (int, error) {
	if l.left <= 0 {
		l.over = true
		return 0, errors.New("answer too large")
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

// discovered are the discovered labels the status reads; encoding/json
// skips every other key without keeping it.
type discovered struct {
	Job            string `json:"job"`
	Namespace      string `json:"__meta_kubernetes_namespace"`
	Pod            string `json:"__meta_kubernetes_pod_name"`
	ControllerKind string `json:"__meta_kubernetes_pod_controller_kind"`
	ControllerName string `json:"__meta_kubernetes_pod_controller_name"`
	TemplateHash   string `json:"__meta_kubernetes_pod_label_pod_template_hash"`
	Service        string `json:"__meta_kubernetes_service_name"`
	PodPort        string `json:"__meta_kubernetes_pod_container_port_name"`
	EndpointPort   string `json:"__meta_kubernetes_endpoint_port_name"`
	SlicePort      string `json:"__meta_kubernetes_endpointslice_port_name"`
}

type target struct {
	Discovered discovered `json:"discoveredLabels"`
	ScrapePool string     `json:"scrapePool"`
	ScrapeURL  string     `json:"scrapeUrl"`
	Health     string     `json:"health"`
	LastError  string     `json:"lastError"`
}

func (t *target) status() policy.ScrapeTarget {
	d := t.Discovered
	port := d.PodPort
	for _, p := range []string{d.EndpointPort, d.SlicePort} {
		if p != "" {
			port = p
		}
	}
	pool := t.ScrapePool
	if pool == "" {
		pool = d.Job
	}
	return policy.ScrapeTarget{Pool: pool, URL: t.ScrapeURL, Health: t.Health, LastError: t.LastError,
		Namespace: d.Namespace, Pod: d.Pod, ControllerKind: d.ControllerKind, ControllerName: d.ControllerName,
		TemplateHash: d.TemplateHash, Service: d.Service, Port: port}
}

// DecodeTargets decodes an /api/v1/targets answer, one target at a time.
func DecodeTargets(r io.Reader) (active, dropped []policy.ScrapeTarget, err error) {
	err = decodeEnvelope(r, func(dec *json.Decoder, key string) error {
		var into *[]policy.ScrapeTarget
		switch key {
		case "activeTargets":
			into = &active
		case "droppedTargets":
			into = &dropped
		default:
			return skip(dec)
		}
		return eachElement(dec, key, func() error {
			var t target
			if err := dec.Decode(&t); err != nil {
				return err
			}
			*into = append(*into, t.status())
			return nil
		})
	})
	return active, dropped, err
}

type ruleGroup struct {
	Name  string `json:"name"`
	File  string `json:"file"`
	Rules []struct {
		Name      string `json:"name"`
		Health    string `json:"health"`
		LastError string `json:"lastError"`
	} `json:"rules"`
}

// DecodeRules decodes an /api/v1/rules answer, one group at a time.
func DecodeRules(r io.Reader) ([]policy.RuleGroupStatus, error) {
	var out []policy.RuleGroupStatus
	err := decodeEnvelope(r, func(dec *json.Decoder, key string) error {
		if key != "groups" {
			return skip(dec)
		}
		return eachElement(dec, key, func() error {
			var g ruleGroup
			if err := dec.Decode(&g); err != nil {
				return err
			}
			rg := policy.RuleGroupStatus{Name: g.Name, File: g.File, Rules: make([]policy.RuleHealth, 0, len(g.Rules))}
			for _, r := range g.Rules {
				rg.Rules = append(rg.Rules, policy.RuleHealth{Name: r.Name, Health: r.Health, LastError: r.LastError})
			}
			out = append(out, rg)
			return nil
		})
	})
	return out, err
}

// decodeEnvelope walks Prometheus' {"status", "data": {...}, "error"}
// envelope and hands each key of data to field, positioned at its value.
// A "status" other than success is an error with Prometheus' own message.
func decodeEnvelope(r io.Reader, field func(dec *json.Decoder, key string) error) error {
	dec := json.NewDecoder(r)
	if err := delim(dec, '{', "the answer"); err != nil {
		return err
	}
	var status, errType, errMsg string
	sawData := false
	for dec.More() {
		key, err := stringToken(dec)
		if err != nil {
			return err
		}
		switch key {
		case "status", "errorType", "error":
			var v string
			if err := dec.Decode(&v); err != nil {
				return fmt.Errorf("the answer's %s: %w", key, err)
			}
			switch key {
			case "status":
				status = v
			case "errorType":
				errType = v
			default:
				errMsg = v
			}
		case "data":
			sawData = true
			if status != "" && status != "success" {
				if err := skip(dec); err != nil {
					return err
				}
				continue
			}
			if err := delim(dec, '{', "data"); err != nil {
				return err
			}
			for dec.More() {
				k, err := stringToken(dec)
				if err != nil {
					return err
				}
				if err := field(dec, k); err != nil {
					return err
				}
			}
			if err := delim(dec, '}', "data"); err != nil {
				return err
			}
		default:
			if err := skip(dec); err != nil {
				return err
			}
		}
	}
	if err := delim(dec, '}', "the answer"); err != nil {
		return err
	}
	switch {
	case status == "error":
		return fmt.Errorf("the Prometheus answered with an error: %s: %s", errType, errMsg)
	case status != "success":
		return fmt.Errorf("the answer's status is %q, not success", status)
	case !sawData:
		return errors.New("the answer has no data")
	}
	return nil
}

// eachElement calls one for every element of the array dec is at (none
// for null).
func eachElement(dec *json.Decoder, what string, one func() error) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("%s: %w (a truncated answer?)", what, io.ErrUnexpectedEOF)
	}
	if tok == nil {
		return nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return fmt.Errorf("%s: want \"[\", found %v: not Prometheus' answer", what, tok)
	}
	for dec.More() {
		if err := one(); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("%s: the answer is truncated: %w", what, io.ErrUnexpectedEOF)
			}
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	return delim(dec, ']', what)
}

func delim(dec *json.Decoder, want json.Delim, what string) error {
	tok, err := dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("%s: %w (a truncated answer?)", what, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("%s: want %q, found %v: not Prometheus' answer", what, want, tok)
	}
	return nil
}

func stringToken(dec *json.Decoder) (string, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", fmt.Errorf("the answer: %w", err)
	}
	s, ok := tok.(string)
	if !ok {
		return "", fmt.Errorf("the answer: want a key, found %v", tok)
	}
	return s, nil
}

// skip reads past the value dec is at.
func skip(dec *json.Decoder) error {
	var raw json.RawMessage
	return dec.Decode(&raw)
}
