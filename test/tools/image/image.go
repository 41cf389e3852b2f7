package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Spec is what the image holds besides the binary's bytes.
type Spec struct {
	// Path is the binary's path in the image.
	Path       string
	User       string
	Entrypoint []string
	Cmd        []string
}

// FinalStage reads the final stage of a Dockerfile: the destination of
// its COPY (one file, the binary), USER, ENTRYPOINT and CMD in their JSON
// form. Anything else in the final stage is an error: the assembly could
// not reproduce it.
func FinalStage(dockerfile string) (Spec, error) {
	var s Spec
	var stage []string
	for _, l := range strings.Split(dockerfile, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(strings.ToUpper(l), "FROM ") {
			stage = nil
		}
		stage = append(stage, l)
	}
	if len(stage) == 0 {
		return s, errors.New("no FROM")
	}
	for _, l := range stage[1:] {
		word, rest, _ := strings.Cut(l, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(word) {
		case "COPY":
			f := strings.Fields(rest)
			if len(f) != 3 || !strings.HasPrefix(f[0], "--from=") {
				return s, fmt.Errorf("final stage: %q: want COPY --from=<stage> <binary> <path>", l)
			}
			s.Path = f[2]
		case "USER":
			s.User = rest
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &s.Entrypoint); err != nil {
				return s, fmt.Errorf("final stage: ENTRYPOINT %s: want the JSON form: %w", rest, err)
			}
		case "CMD":
			if err := json.Unmarshal([]byte(rest), &s.Cmd); err != nil {
				return s, fmt.Errorf("final stage: CMD %s: want the JSON form: %w", rest, err)
			}
		default:
			return s, fmt.Errorf("final stage: %q: the assembly reproduces COPY, USER, ENTRYPOINT and CMD only", l)
		}
	}
	if s.Path == "" || s.User == "" || len(s.Entrypoint) == 0 {
		return s, errors.New("final stage: want a COPY of the binary, USER and ENTRYPOINT")
	}
	return s, nil
}

// Static says why the ELF file at path would not run alone in an image
// without libraries, or "" when it would: no interpreter, no shared
// library needed.
func Static(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "it names a dynamic loader (PT_INTERP): build it with CGO_ENABLED=0", nil
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return "", err
	}
	if len(libs) > 0 {
		return fmt.Sprintf("it needs shared libraries %v: build it with CGO_ENABLED=0", libs), nil
	}
	return "", nil
}

// Assemble is the image: one layer holding the binary (root-owned, mode
// 0755) at spec.Path, and spec's user, entrypoint and cmd.
func Assemble(binary string, spec Spec) (v1.Image, error) {
	why, err := Static(binary)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", binary, err)
	}
	if why != "" {
		return nil, fmt.Errorf("%s is not static: %s", binary, why)
	}
	data, err := os.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	name := strings.TrimPrefix(spec.Path, "/")
	if dir := filepath.Dir(name); dir != "." {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o755, Size: int64(len(data)), Format: tar.FormatPAX}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil }, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", goarch()
	cf.Config.User = spec.User
	cf.Config.Entrypoint = spec.Entrypoint
	cf.Config.Cmd = spec.Cmd
	cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	return mutate.ConfigFile(img, cf)
}

// WriteArchive writes img as an OCI archive: an image layout whose index
// names it (io.containerd.image.name, org.opencontainers.image.ref.name),
// in a tar.
func WriteArchive(out, name string, img v1.Image) error {
	dir, err := os.MkdirTemp("", "image-layout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	ref := name
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		ref = name[i+1:]
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"io.containerd.image.name": name, "org.opencontainers.image.ref.name": ref})); err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	err = filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		h, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		h.Name, h.ModTime, h.Uid, h.Gid, h.Uname, h.Gname = filepath.ToSlash(rel), zeroTime, 0, 0, "", ""
		if info.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if info.IsDir() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	})
	if cerr := tw.Close(); err == nil {
		err = cerr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// zeroTime is every archive entry's time: the same binary gives the same
// archive.
var zeroTime = time.Unix(0, 0)

func goarch() string { return runtime.GOARCH }
