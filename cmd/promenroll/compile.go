package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/promenroll/promenroll/policy"
)

// newCompileCommand prints the policy's enroll rules as native admission
// policies.
func newCompileCommand() *cobra.Command {
	var policyPath, namespace, name string
	c := &cobra.Command{
		Use:   "compile --policy POLICY",
		Short: "Print the enroll rules as MutatingAdmissionPolicies the API server applies itself",
		Long: `compile prints, as multi-document YAML, the MutatingAdmissionPolicies and
their bindings (admissionregistration.k8s.io/v1, Kubernetes 1.36 and later)
that do what the webhook's enrollment does: the same labels, pod template
labels and scrape annotations, add-only, first rule first, with the same
substitutions, exclusions and opt-out, applied by the API server without
calling promenroll. The output depends on the policy only: the same policy
gives the same bytes, so it can be committed and diffed (the chart and
kustomize ship it for their shipped policy). Apply it with the rights to
create admission policies; promenroll itself needs none.`,
		Example: `  promenroll compile --policy policy.yaml > native-enrollment.yaml
  promenroll compile --policy policy.yaml | kubectl apply -f -`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if policyPath == "" {
				return usageError{fmt.Errorf("--policy is required (run '%s --help')", c.CommandPath())}
			}
			p, err := policy.Load(policyPath, policy.Options{OwnNamespace: namespace})
			if err != nil {
				return err
			}
			return writeNative(c.OutOrStdout(), p, name)
		},
	}
	fs := c.Flags()
	fs.StringVar(&policyPath, "policy", "", "policy file (required)")
	fs.StringVar(&namespace, "namespace", "promenroll-system", "promenroll's namespace, excluded like the webhook's own")
	fs.StringVar(&name, "name", "promenroll", "prefix of the generated objects' names")
	return c
}

// writeNative writes p's native policies as YAML documents.
func writeNative(w io.Writer, p *policy.Policy, name string) error {
	doc, err := p.NativeYAML(policy.NativeOptions{Name: name})
	if err != nil {
		return err
	}
	_, err = w.Write(doc)
	return err
}
