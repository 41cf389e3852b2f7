#!/usr/bin/env bash
# build.sh builds the container runtime of the real-node tests from the Go
# modules pinned in this folder's go.mod into $1 (default bin/node under the
# repository root): containerd, containerd-shim-runc-v2 and ctr (pure Go),
# the CNI plugins of the pod network (bridge, host-local, loopback: pure
# Go, into $1/cni), and runc (cgo, with seccomp: libseccomp-dev from Debian, installed here
# when missing and running as root; without it runc is not built and the
# node tests skip, saying why). It rebuilds only when go.mod/go.sum change.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../../../bin/node}
mkdir -p "$out"
out=$(cd "$out" && pwd)
stamp=$( (cat "$here/go.mod" "$here/go.sum" "$here/build.sh"; go version) | sha256sum | cut -d' ' -f1)
if [[ -f "$out/.stamp" && "$(cat "$out/.stamp")" == "$stamp" ]]; then
  echo "node-bins: up to date in $out"
  exit 0
fi
cd "$here"
for cmd in containerd containerd-shim-runc-v2 ctr; do
  echo "node-bins: building $cmd"
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/$cmd" "github.com/containerd/containerd/v2/cmd/$cmd"
done
mkdir -p "$out/cni"
for plugin in main/bridge main/loopback ipam/host-local; do
  echo "node-bins: building CNI plugin ${plugin#*/}"
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/cni/${plugin#*/}" "github.com/containernetworking/plugins/plugins/$plugin"
done
if ! pkg-config --exists libseccomp 2>/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "node-bins: installing libseccomp-dev and pkg-config (apt-get) for runc"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q libseccomp-dev pkg-config >/dev/null || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q libseccomp-dev pkg-config >/dev/null; }
  fi
fi
if pkg-config --exists libseccomp 2>/dev/null; then
  echo "node-bins: building runc (cgo, seccomp)"
  CGO_ENABLED=1 go build -trimpath -tags "seccomp urfave_cli_no_docs" -ldflags "-s -w" -o "$out/runc" github.com/opencontainers/runc
else
  echo "node-bins: runc not built: libseccomp-dev is missing (apt-get install libseccomp-dev as root); the node tests will skip"
  rm -f "$out/runc"
fi
echo "$stamp" > "$out/.stamp"
echo "node-bins: done: $out"
