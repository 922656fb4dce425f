#!/usr/bin/env bash
# Builds kube-apiserver from the Go module proxy for the tests on a real API
# server (test/kube) and prints the folder that holds it. The binary is built
# once per version (the one hack/kube-apiserver/go.mod requires) into a cache
# folder outside git; later runs only print the folder. etcd comes from Debian
# (`apt-get install etcd-server`) and is linked beside kube-apiserver.
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces its staging
# modules (k8s.io/api, k8s.io/apiserver, …) by local folders. The throwaway
# module hack/kube-apiserver requires it and replaces each staging module by
# the published one of the same release.
#
#   KUBE_CACHE_DIR   cache root (default /var/cache/bulkhead)
set -euo pipefail
cd "$(dirname "$0")/kube-apiserver"
ver=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' go.mod)
[[ $ver =~ ^v1\.([0-9]+)\.[0-9]+$ ]] || { echo "kube-apiserver.sh: bad version '$ver'" >&2; exit 1; }
minor=${BASH_REMATCH[1]}
dir=${KUBE_CACHE_DIR:-/var/cache/bulkhead}/kube-apiserver-$ver
if [[ ! -x $dir/kube-apiserver ]]; then
  mkdir -p "$dir"
  echo "kube-apiserver.sh: building kube-apiserver $ver into $dir (5-15 minutes, once)" >&2
  start=$SECONDS
  pkg=k8s.io/component-base/version
  nice -n 10 go build -trimpath -o "$dir/kube-apiserver.tmp" \
    -ldflags "-s -w -X $pkg.gitVersion=$ver -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean" \
    k8s.io/kubernetes/cmd/kube-apiserver
  mv "$dir/kube-apiserver.tmp" "$dir/kube-apiserver"
  echo "kube-apiserver.sh: built in $((SECONDS - start))s" >&2
fi
if etcd=$(command -v etcd); then
  ln -sf "$etcd" "$dir/etcd"
fi
echo "$dir"
