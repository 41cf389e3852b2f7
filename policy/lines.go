package policy

import (
	"strconv"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
)

// lineIndex finds the line of a field path (as printed by field.Path, e.g.
// "enroll[0].labels[team]") in a YAML document, so policy errors point at
// the line to fix.
type lineIndex struct {
	root *yamlv3.Node
}

func newLineIndex(data []byte) lineIndex {
	var n yamlv3.Node
	if err := yamlv3.Unmarshal(data, &n); err != nil || len(n.Content) == 0 {
		return lineIndex{}
	}
	return lineIndex{root: n.Content[0]}
}

// lineOf returns the line of the deepest node of path that exists, or 0.
func (li lineIndex) lineOf(path string) int { return FieldLine(li.root, path) }

// FieldLine returns the line, in the document n was parsed from, of the
// deepest node of a field path (as field.Path prints it, e.g.
// "spec.groups[0].rules[1].expr") that exists under n, or 0.
func FieldLine(n *yamlv3.Node, path string) int {
	if n == nil {
		return 0
	}
	line := 0
	for _, seg := range splitFieldPath(path) {
		next := child(n, seg)
		if next == nil {
			break
		}
		n = next
		line = n.Line
	}
	return line
}

func child(n *yamlv3.Node, seg string) *yamlv3.Node {
	switch n.Kind {
	case yamlv3.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == seg {
				if v := n.Content[i+1]; v.Kind == yamlv3.ScalarNode {
					return n.Content[i] // the key's line reads best
				}
				return n.Content[i+1]
			}
		}
	case yamlv3.SequenceNode:
		if i, err := strconv.Atoi(seg); err == nil && i >= 0 && i < len(n.Content) {
			return n.Content[i]
		}
	}
	return nil
}

// splitFieldPath splits "a.b[0].c[x.y/z]" into a, b, 0, c, x.y/z.
func splitFieldPath(path string) []string {
	var segs []string
	for path != "" {
		switch path[0] {
		case '.':
			path = path[1:]
		case '[':
			end := strings.IndexByte(path, ']')
			if end < 0 {
				return append(segs, path[1:])
			}
			segs = append(segs, path[1:end])
			path = path[end+1:]
		default:
			end := strings.IndexAny(path, ".[")
			if end < 0 {
				return append(segs, path)
			}
			segs = append(segs, path[:end])
			path = path[end:]
		}
	}
	return segs
}
