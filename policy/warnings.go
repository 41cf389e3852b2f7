package policy

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// DryRunPrefix starts every warning that reports what dry-run mode would
// have done.
const DryRunPrefix = "[dry-run] "

// Limits of admission warnings, from k8s.io/apiserver
// pkg/endpoints/filters/warning.go: past 4096 runes in total the API server
// truncates each warning to 256 runes and then drops the rest. promenroll
// keeps within both so nothing it says is silently cut.
const (
	MaxWarningRunes      = 256
	MaxTotalWarningRunes = 4 * 1024
)

// WarningsFor describes a decision on o as admission warnings: what dry-run would
// have added, and every label skipped or kept.
func WarningsFor(o Object, d Decision) []string {
	var ws []string
	for _, c := range d.Changes {
		if c.Mode == ModeDryRun {
			verb := "would add"
			if c.Sticky {
				verb = "would put back"
			}
			ws = append(ws, fmt.Sprintf("%s%s %s %s=%s (rule %s)", DryRunPrefix, verb, o.Field(c.Target), c.Key, c.Value, c.Rule))
		}
	}
	return append(ws, d.Warnings...)
}

// LimitWarnings makes warnings fit the API server's limits: control
// characters become spaces, each warning is cut to MaxWarningRunes, and when
// the total would pass MaxTotalWarningRunes the rest is replaced by one
// "and N more" warning.
func LimitWarnings(ws []string) []string {
	if len(ws) == 0 {
		return nil
	}
	out := make([]string, 0, len(ws))
	total := 0
	const moreReserve = 40 // room for the "and N more" line
	for i, w := range ws {
		w = truncateRunes(sanitize(w), MaxWarningRunes)
		n := utf8.RuneCountInString(w)
		if total+n > MaxTotalWarningRunes-moreReserve && i < len(ws)-1 || total+n > MaxTotalWarningRunes {
			out = append(out, fmt.Sprintf("... and %d more warning(s)", len(ws)-i))
			return out
		}
		total += n
		out = append(out, w)
	}
	return out
}

func sanitize(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "?")
	}
	return strings.Map(func(r rune) rune {
		if !unicode.IsPrint(r) {
			return ' '
		}
		return r
	}, s)
}

func truncateRunes(s string, limit int) string {
	if utf8.RuneCountInString(s) <= limit {
		return s
	}
	r := []rune(s)
	return string(r[:limit-3]) + "..."
}
