package testdiff

import (
	"strings"
	"testing"
)

func TestDiff(t *testing.T) {
	if d := Diff(map[string]string{"a": "1"}, map[string]string{"a": "1"}); d != "" {
		t.Errorf("equal maps: %q", d)
	}
	if d := Diff(map[string]string{"a": "1"}, map[string]string{"a": "2"}); !strings.Contains(d, `- "a": "1"`) || !strings.Contains(d, `+ "a": "2"`) {
		t.Errorf("different maps: a diff naming both values expected, got %q", d)
	}
	// Equal JSON, different values: still a difference.
	if d := Diff([]string{}, []string(nil)); d == "" {
		t.Error("an empty and a nil slice compared equal")
	}
}
