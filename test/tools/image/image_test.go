package main

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// root is the repository's root.
func root(t *testing.T) string {
	t.Helper()
	r, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// build builds a package of the repository with CGO_ENABLED as given.
func build(t *testing.T, dir, pkg string, cgo bool) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if cgo {
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// TestTheDockerfileAndTheManifestsAgree: the Dockerfile's final stage is
// what the assembly reproduces (the binary at /promenroll, user 65532,
// ENTRYPOINT and CMD in JSON form), and the user it runs as is the one
// deploy/base and the chart run it as, with a read-only root filesystem.
func TestTheDockerfileAndTheManifestsAgree(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := FinalStage(string(data))
	if err != nil {
		t.Fatal(err)
	}
	want := Spec{Path: "/promenroll", User: "65532:65532", Entrypoint: []string{"/promenroll"}, Cmd: []string{"serve"}}
	if spec.Path != want.Path || spec.User != want.User || !slices.Equal(spec.Entrypoint, want.Entrypoint) || !slices.Equal(spec.Cmd, want.Cmd) {
		t.Errorf("the Dockerfile's final stage is %+v, want %+v", spec, want)
	}
	uid := strings.Split(spec.User, ":")[0]
	for _, f := range []string{"deploy/base/deployment.yaml", "charts/promenroll/values.yaml"} {
		text, err := os.ReadFile(filepath.Join(root(t), f))
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`(?m)^\s*runAsUser: ` + uid + `$`).Match(text) {
			t.Errorf("%s does not run as user %s, the image's", f, uid)
		}
		if !regexp.MustCompile(`(?m)^\s*readOnlyRootFilesystem: true$`).Match(text) {
			t.Errorf("%s does not set readOnlyRootFilesystem", f)
		}
	}
}

// TestFinalStageRefusesWhatItCannotReproduce: a RUN, a shell-form
// ENTRYPOINT or a COPY of a directory in the final stage is an error, not
// an image that differs from the Dockerfile's.
func TestFinalStageRefusesWhatItCannotReproduce(t *testing.T) {
	for name, df := range map[string]string{
		"RUN":                 "FROM b AS build\nFROM s\nCOPY --from=build /out/p /p\nRUN chmod 755 /p\nUSER 1\nENTRYPOINT [\"/p\"]\n",
		"shell ENTRYPOINT":    "FROM s\nCOPY --from=build /out/p /p\nUSER 1\nENTRYPOINT /p serve\n",
		"COPY of the context": "FROM s\nCOPY . /\nUSER 1\nENTRYPOINT [\"/p\"]\n",
		"no USER":             "FROM s\nCOPY --from=build /out/p /p\nENTRYPOINT [\"/p\"]\n",
	} {
		if _, err := FinalStage(df); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestAssembledImages: the promenroll image assembled from the Dockerfile
// and the workload image hold one static binary each and nothing else (no
// shell), run as 65532 with the Dockerfile's entrypoint and cmd, and are
// named in their archive as ctr images import names them.
func TestAssembledImages(t *testing.T) {
	r := root(t)
	data, err := os.ReadFile(filepath.Join(r, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := FinalStage(string(data))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, binary string
		spec         Spec
	}{
		{"docker.io/promenroll/promenroll:test", build(t, r, "./cmd/promenroll", false), spec},
		{"docker.io/promenroll/workload:test", build(t, ".", "./workload", false), Spec{Path: "/workload", User: "65532:65532", Entrypoint: []string{"/workload"}}},
	} {
		img, err := Assemble(c.binary, c.spec)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "image.tar")
		if err := WriteArchive(out, c.name, img); err != nil {
			t.Fatal(err)
		}
		got, annotations := readArchive(t, out)
		if annotations["io.containerd.image.name"] != c.name {
			t.Errorf("%s: the archive names it %q", c.name, annotations["io.containerd.image.name"])
		}
		cf, err := got.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Config.User != "65532:65532" || !slices.Equal(cf.Config.Entrypoint, c.spec.Entrypoint) || !slices.Equal(cf.Config.Cmd, c.spec.Cmd) || cf.OS != "linux" {
			t.Errorf("%s: config user %q entrypoint %v cmd %v os %s", c.name, cf.Config.User, cf.Config.Entrypoint, cf.Config.Cmd, cf.OS)
		}
		files := layerFiles(t, got)
		if !slices.Equal(files, []string{strings.TrimPrefix(c.spec.Path, "/")}) {
			t.Errorf("%s: the image holds %v, want its binary only (no shell, nothing to write to)", c.name, files)
		}
	}
}

// TestAssembleRefusesADynamicBinary: a binary that needs a loader and
// libc would not start in an image that has neither.
func TestAssembleRefusesADynamicBinary(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no C compiler to build a dynamic binary with")
	}
	dyn := build(t, ".", "./workload", true)
	if _, err := Assemble(dyn, Spec{Path: "/workload", User: "65532:65532", Entrypoint: []string{"/workload"}}); err == nil || !strings.Contains(err.Error(), "is not static") {
		t.Errorf("a cgo build: %v", err)
	}
}

// readArchive reads an OCI archive's one image and its index annotations.
func readArchive(t *testing.T, archive string) (v1.Image, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	eachEntry(t, f, func(h *tar.Header, r io.Reader) {
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if h.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			return
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	})
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 1 {
		t.Fatalf("%d images in the archive, want 1", len(m.Manifests))
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return img, m.Manifests[0].Annotations
}

// layerFiles lists the regular files of an image's layers.
func layerFiles(t *testing.T, img v1.Image) []string {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		eachEntry(t, rc, func(h *tar.Header, _ io.Reader) {
			if h.Typeflag != tar.TypeDir {
				files = append(files, h.Name)
			}
		})
		rc.Close()
	}
	return files
}

// eachEntry calls fn with each entry of the tar stream r.
func eachEntry(t *testing.T, r io.Reader, fn func(*tar.Header, io.Reader)) {
	t.Helper()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		fn(h, tr)
	}
}
