// Package chart tests charts/promenroll with Helm's own SDK: lint with the
// values schema, client-side renders of every ci/*-values.yaml checked by
// the same safety checker as the kustomize install (test/manifests),
// server-side dry-run applies into the local control plane, and the
// self-managed TLS install run end to end. It is its own module so that
// Helm's dependencies stay out of promenroll's go.mod.
package chart
