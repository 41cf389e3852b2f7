package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/promenroll/promenroll/policy"
)

// errCheckFailed is returned when check found a problem the webhook would
// deny; the details are already printed.
var errCheckFailed = errors.New("check failed")

// check runs the webhook's engine offline over a policy and manifests (files,
// folders, or - for stdin), for CI and GitOps pipelines: the policy must
// load, and every PrometheusRule must pass the rule gate as the webhook
// would judge it. Lint findings at warn are printed and do not fail.
func check(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	policyPath := fs.String("policy", "", "policy file (required)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: promenroll check --policy policy.yaml [manifest.yaml | folder | -]...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err}
	}
	if *policyPath == "" {
		fs.Usage()
		return usageError{errors.New("check needs --policy")}
	}
	p, err := policy.Load(*policyPath, policy.Options{})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: policy valid (generation %s, mode %s, %d enrollment rules)\n", *policyPath, p.Generation, p.Source.Mode, len(p.Source.Enroll))

	failed := false
	for _, arg := range fs.Args() {
		err := eachManifest(arg, func(name string, doc []byte) error {
			bad, err := checkDocument(p, name, doc, stdout)
			failed = failed || bad
			return err
		})
		if err != nil {
			return err
		}
	}
	if failed {
		return errCheckFailed
	}
	return nil
}

// eachManifest calls fn for every YAML document of a file, of every
// .yaml/.yml/.json file under a folder, or of stdin ("-").
func eachManifest(arg string, fn func(name string, doc []byte) error) error {
	split := func(name string, data []byte) error {
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for i := 1; ; i++ {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("%s: read YAML document %d: %w", name, i, err)
			}
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			if err := fn(fmt.Sprintf("%s#%d", name, i), doc); err != nil {
				return err
			}
		}
	}
	if arg == "-" {
		data, err := io.ReadAll(os.Stdin)
		if err != nil {
			return err
		}
		return split("stdin", data)
	}
	return filepath.WalkDir(arg, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		ext := strings.ToLower(filepath.Ext(path))
		if d.IsDir() || (path != arg && ext != ".yaml" && ext != ".yml" && ext != ".json") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return split(path, data)
	})
}

// checkDocument judges one document. It reports whether the webhook would
// deny it; an error is a document that is not YAML.
func checkDocument(p *policy.Policy, name string, doc []byte, out io.Writer) (bool, error) {
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return false, fmt.Errorf("%s: not YAML: %w", name, err)
	}
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(js, &head); err != nil || head.Kind != "PrometheusRule" || !strings.HasPrefix(head.APIVersion, "monitoring.coreos.com/") {
		return false, nil
	}
	var pr monv1.PrometheusRule
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(js, &pr); err != nil {
		fmt.Fprintf(out, "%s: PrometheusRule cannot be decoded: %v\n", name, err)
		return true, nil
	}
	rep := p.CheckPrometheusRule(&pr, len(js), policy.Namespace{Name: pr.Namespace})
	id := fmt.Sprintf("%s: PrometheusRule %s", name, pr.Name)
	if pr.Namespace != "" {
		id = fmt.Sprintf("%s: PrometheusRule %s/%s", name, pr.Namespace, pr.Name)
	}
	for _, e := range rep.Warnings() {
		fmt.Fprintf(out, "%s: warning: %s\n", id, e)
	}
	denials := rep.Denials()
	for _, e := range denials {
		fmt.Fprintf(out, "%s: %s\n", id, e)
	}
	if len(denials) > 0 && rep.Mode == policy.ModeEnforce {
		return true, nil
	}
	switch {
	case rep.Reason != "":
		fmt.Fprintf(out, "%s: not checked: %s\n", id, rep.Reason)
	case len(denials) > 0:
		fmt.Fprintf(out, "%s: would be denied, but the rule gate is in dry-run\n", id)
	default:
		fmt.Fprintf(out, "%s: %d rules valid\n", id, rep.Checked)
	}
	return false, nil
}
