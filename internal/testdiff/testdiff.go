// Package testdiff compares what a test got with what it wants, with the
// libraries the binary already links (no test-only module in go.mod).
package testdiff

import (
	"fmt"
	"reflect"

	"k8s.io/apimachinery/pkg/util/diff"
)

// Diff is "" when want and got are deeply equal (reflect.DeepEqual: a nil
// and an empty slice or map differ), else a unified diff of their
// indented JSON (apimachinery's diff.Diff), or both values in Go syntax
// when their JSON is the same.
func Diff(want, got any) string {
	if reflect.DeepEqual(want, got) {
		return ""
	}
	if d := diff.Diff(want, got); d != "" {
		return "--- want\n+++ got\n" + d
	}
	return fmt.Sprintf("want %#v\n got %#v", want, got)
}
