// Command image assembles a container image from a static binary, with no
// Docker engine and no registry, and writes it as an OCI archive (an OCI
// image layout in a tar, which `ctr images import` reads, as kind's node
// images are loaded).
//
// With --dockerfile, the image is the Dockerfile's final stage: the
// binary at the path its COPY names, and its USER, ENTRYPOINT and CMD, read
// from the Dockerfile itself so the two cannot drift. The final stage's
// base (distroless static) adds no file a static binary needs to run.
// Without it, --path, --user, --entrypoint and --cmd say the same.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

func main() {
	var o options
	flag.StringVar(&o.dockerfile, "dockerfile", "", "take the final stage's binary path, USER, ENTRYPOINT and CMD from this Dockerfile")
	flag.StringVar(&o.binary, "binary", "", "the static binary (required)")
	flag.StringVar(&o.path, "path", "", "where the binary goes in the image (without --dockerfile)")
	flag.StringVar(&o.user, "user", "65532:65532", "the image's user (without --dockerfile)")
	flag.StringVar(&o.entrypoint, "entrypoint", "", "comma-separated ENTRYPOINT (without --dockerfile; default: --path)")
	flag.StringVar(&o.cmd, "cmd", "", "comma-separated CMD (without --dockerfile)")
	flag.StringVar(&o.name, "name", "", "the image's name, as ctr images import names it (required)")
	flag.StringVar(&o.out, "out", "", "the OCI archive to write (required)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

type options struct {
	dockerfile, binary, path, user, entrypoint, cmd, name, out string
}

func run(o options) error {
	if o.binary == "" || o.out == "" || o.name == "" {
		return fmt.Errorf("--binary, --name and --out are required")
	}
	var spec Spec
	if o.dockerfile != "" {
		data, err := os.ReadFile(o.dockerfile)
		if err != nil {
			return err
		}
		if spec, err = FinalStage(string(data)); err != nil {
			return fmt.Errorf("%s: %w", o.dockerfile, err)
		}
	} else {
		spec = Spec{Path: o.path, User: o.user, Entrypoint: split(o.entrypoint), Cmd: split(o.cmd)}
		if spec.Path == "" {
			return fmt.Errorf("--path is required without --dockerfile")
		}
		if len(spec.Entrypoint) == 0 {
			spec.Entrypoint = []string{spec.Path}
		}
	}
	img, err := Assemble(o.binary, spec)
	if err != nil {
		return err
	}
	if err := WriteArchive(o.out, o.name, img); err != nil {
		return err
	}
	fmt.Printf("image: %s (%s, user %s, entrypoint %v, cmd %v) written to %s\n", o.name, spec.Path, spec.User, spec.Entrypoint, spec.Cmd, o.out)
	return nil
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}
