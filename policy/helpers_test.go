package policy

import "testing"

const minimalPolicy = `apiVersion: promenroll.io/v1alpha1
kind: Policy
`

func mustParse(tb testing.TB, doc string) *Policy {
	tb.Helper()
	p, err := Parse("policy.yaml", []byte(doc), Options{OwnNamespace: "promenroll-system"})
	if err != nil {
		tb.Fatal(err)
	}
	return p
}
