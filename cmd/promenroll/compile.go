package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/promenroll/promenroll/policy"
)

// newCompileCommand prints the policy's enroll rules as native admission
// policies.
func newCompileCommand() *cobra.Command {
	var policyPath, namespace, name string
	var forChart, warnings bool
	c := &cobra.Command{
		Use:   "compile --policy POLICY",
		Short: "Print the enroll rules as MutatingAdmissionPolicies the API server applies itself",
		Long: `compile prints, as multi-document YAML, the MutatingAdmissionPolicies and
their bindings (admissionregistration.k8s.io/v1, Kubernetes 1.36 and later)
that do what the webhook's enrollment does: the same labels, pod template
labels and scrape annotations, add-only, first rule first, with the same
substitutions, exclusions and opt-out, applied by the API server without
calling promenroll; and ValidatingAdmissionPolicies, bound to warn only,
that give its warnings (--warnings=false leaves them out). The output depends on the policy only: the same policy
gives the same bytes, so it can be committed and diffed (the chart and
kustomize ship it for their shipped policy). Apply it with the rights to
create admission policies; promenroll itself needs none.

POLICY is a policy file, or a manifest holding promenroll's policy
ConfigMap (what helm template renders), or - for standard input. With
--chart, the output is for the chart's webhook.enroll.nativePolicies value
(helm install --set-file): the chart names the objects after the release
and excludes its namespace, and refuses a compile whose enrollment
generation is not its own policy's (so render the ConfigMap to compile
with engine webhook: the engine is not part of that generation).`,
		Example: `  promenroll compile --policy policy.yaml > native-enrollment.yaml
  promenroll compile --policy policy.yaml | kubectl apply -f -

  # The chart, with your values' policy:
  helm template promenroll charts/promenroll -f values.yaml --set policy.enrollment.engine=webhook \
    -s templates/configmap.yaml | promenroll compile --chart --policy - > native.yaml
  helm upgrade --install promenroll charts/promenroll -f values.yaml --set-file webhook.enroll.nativePolicies=native.yaml`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if policyPath == "" {
				return usageError{fmt.Errorf("--policy is required (run '%s --help')", c.CommandPath())}
			}
			source, data, err := readPolicy(policyPath, c.InOrStdin())
			if err != nil {
				return err
			}
			if forChart {
				name, namespace = policy.ChartNameToken, policy.ChartNamespaceToken
			}
			p, err := policy.Parse(source, data, policy.Options{OwnNamespace: namespace})
			if err != nil {
				return err
			}
			return writeNative(c.OutOrStdout(), p, policy.NativeOptions{Name: name, NoWarnings: !warnings})
		},
	}
	fs := c.Flags()
	fs.StringVar(&policyPath, "policy", "", "policy file (required)")
	fs.StringVar(&namespace, "namespace", "promenroll-system", "promenroll's namespace, excluded like the webhook's own")
	fs.StringVar(&name, "name", "promenroll", "prefix of the generated objects' names")
	fs.BoolVar(&warnings, "warnings", true, "also print the ValidatingAdmissionPolicies (Warn only) that give the webhook's enrollment warnings at kubectl apply; they cost the API server more than the mutations (BENCHMARKS.md)")
	fs.BoolVar(&forChart, "chart", false, "print for the chart's webhook.enroll.nativePolicies value: names and namespace are the release's (overrides --name and --namespace)")
	return c
}

// readPolicy reads the policy document at path (- for in): a policy file,
// or the data["policy.yaml"] of the ConfigMap among a manifest's
// documents. source names it in errors.
func readPolicy(path string, in io.Reader) (source string, data []byte, err error) {
	if path == "-" {
		path = "standard input"
		data, err = io.ReadAll(in)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return "", nil, fmt.Errorf("read policy %s: %w", path, err)
	}
	if i, name, text, ok := policyConfigMap(data); ok {
		return fmt.Sprintf("%s (document %d, ConfigMap %s, data[policy.yaml])", path, i, name), []byte(text), nil
	}
	return path, data, nil
}

// policyConfigMap finds, among data's YAML documents, the first ConfigMap
// with a policy.yaml key: its document number (from 1), name and policy.
// Input that is not a manifest has none: it is a policy file.
func policyConfigMap(data []byte) (index int, name, doc string, ok bool) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for i := 1; ; i++ {
		raw, err := r.Read()
		if err != nil {
			return 0, "", "", false
		}
		var cm corev1.ConfigMap
		if yaml.Unmarshal(raw, &cm) != nil || cm.Kind != "ConfigMap" {
			continue
		}
		if text, found := cm.Data["policy.yaml"]; found {
			return i, cm.Name, text, true
		}
	}
}

// writeNative writes p's native policies as YAML documents.
func writeNative(w io.Writer, p *policy.Policy, opts policy.NativeOptions) error {
	doc, err := p.NativeYAML(opts)
	if err != nil {
		return err
	}
	_, err = w.Write(doc)
	return err
}
