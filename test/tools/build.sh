#!/usr/bin/env bash
# build.sh builds kube-apiserver, kube-controller-manager, kubectl, etcd and
# the node's kube-scheduler and kubelet from the Go modules pinned in
# this folder's go.mod into $1 (default bin/k8s under the repository root).
# It rebuilds only when go.mod/go.sum (the pinned versions) change: the digest
# of both is kept in $1/.stamp.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../../bin/k8s}
mkdir -p "$out"
out=$(cd "$out" && pwd)

k8s_version=$(awk '$1=="k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$here/go.mod")
stamp=$( (cat "$here/go.mod" "$here/go.sum" "$here/build.sh"; go version) | sha256sum | cut -d' ' -f1)

if [[ -f "$out/.stamp" && "$(cat "$out/.stamp")" == "$stamp" \
   && -x "$out/kube-apiserver" && -x "$out/kube-controller-manager" && -x "$out/kubectl" && -x "$out/etcd" \
   && -x "$out/kube-scheduler" && -x "$out/kubelet" ]]; then
  echo "test-bins: kube-apiserver, kube-controller-manager, kubectl, etcd, kube-scheduler, kubelet up to date in $out (kubernetes $k8s_version)"
  exit 0
fi

major=${k8s_version#v}; major=${major%%.*}
minor=${k8s_version#v*.}; minor=${minor%%.*}
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"

cd "$here"
export CGO_ENABLED=0
for cmd in kube-apiserver kube-controller-manager kubectl kube-scheduler kubelet; do
  echo "test-bins: building $cmd $k8s_version (first build takes several minutes)"
  go build -trimpath -ldflags "$ldflags" -o "$out/$cmd" "k8s.io/kubernetes/cmd/$cmd"
done
echo "test-bins: building etcd"
go build -trimpath -ldflags "-s -w" -o "$out/etcd" ./etcd
echo "$stamp" > "$out/.stamp"
echo "test-bins: done: $out"
