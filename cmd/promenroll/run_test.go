package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunVersionAndUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"version"}, &out, &errOut); err != nil || !strings.HasPrefix(out.String(), "promenroll ") {
		t.Errorf("version: %v %q", err, out.String())
	}
	err := run(t.Context(), []string{"frobnicate"}, &out, &errOut)
	if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), `unknown command "frobnicate"`) {
		t.Errorf("unknown command: err %v code %d", err, exitCode(err))
	}
	out.Reset()
	if err := run(t.Context(), []string{"--help"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"serve", "check", "audit", "version", "completion"} {
		if !strings.Contains(out.String(), "  "+cmd+" ") {
			t.Errorf("--help does not list %s:\n%s", cmd, out.String())
		}
	}
	out.Reset()
	if err := run(t.Context(), []string{"completion", "bash"}, &out, &errOut); err != nil || !strings.Contains(out.String(), "__start_promenroll") {
		t.Errorf("completion bash: %v", err)
	}
}

func TestServeRefusesAnInvalidPolicyNamingTheField(t *testing.T) {
	dir := t.TempDir()
	certDir := filepath.Join(dir, "tls")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"tls.crt", "tls.key"} {
		if err := os.WriteFile(filepath.Join(certDir, f), []byte("placeholder"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	policyPath := filepath.Join(dir, "policy.yaml")
	bad := "apiVersion: promenroll.io/v1alpha1\nkind: Policy\nenroll:\n- name: web\n  kinds: [Pod]\n  labels: {a: b}\n"
	if err := os.WriteFile(policyPath, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"serve", "--tls-mode", "existingSecret", "--policy", policyPath, "--cert-dir", certDir, "--metrics-bind-address", "0", "--health-probe-bind-address", "127.0.0.1:0"}, &out, &errOut)
	if err == nil {
		t.Fatal("serve started with an invalid policy")
	}
	for _, want := range []string{policyPath + ":5: enroll[0].kinds[0]", `Invalid value: "Pod": supported kinds: CronJob`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if exitCode(err) != 2 {
		t.Errorf("exit code %d, want 2 (a configuration error)", exitCode(err))
	}
}

func TestServeRefusesAMissingCertDir(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(t.Context(), []string{"serve", "--tls-mode", "certManager", "--policy", "/nonexistent/policy.yaml", "--cert-dir", "/nonexistent/tls"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "--cert-dir /nonexistent/tls") {
		t.Errorf("err = %v", err)
	}
}

func TestServeRejectsBadFlags(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(t.Context(), []string{"serve", "--log-level", "loud", "--policy", "x", "--cert-dir", "y"}, &out, &errOut)
	if err == nil || exitCode(err) != 2 {
		t.Errorf("err = %v (code %d)", err, exitCode(err))
	}
}
