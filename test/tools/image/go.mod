// Module image assembles container images from static binaries
// (go-containerregistry), with no Docker engine and no registry: a
// test-only tool, separate so the product's go.mod stays lean.
module github.com/promenroll/promenroll/test/tools/image

go 1.26.0

require github.com/google/go-containerregistry v0.22.1

require (
	github.com/klauspost/compress v1.19.2 // indirect
	github.com/opencontainers/go-digest v1.0.0 // indirect
	github.com/opencontainers/image-spec v1.1.1 // indirect
	golang.org/x/sync v0.22.0 // indirect
)
