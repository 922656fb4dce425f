#!/usr/bin/env bash
# Builds helm from the Go module proxy for the tests of the Helm chart
# (deploy/helm, `helm template` and `helm lint`) and prints the folder that
# holds it. Built once per version (the one hack/helm/go.mod requires) into
# a cache folder outside git; later runs only print the folder.
#
#   HELM_CACHE_DIR   cache root (default /var/cache/bulkhead)
set -euo pipefail
cd "$(dirname "$0")/helm"
ver=$(awk '$1 == "require" && $2 == "helm.sh/helm/v3" {print $3}' go.mod)
[[ $ver =~ ^v3\.[0-9]+\.[0-9]+$ ]] || { echo "helm.sh: bad version '$ver'" >&2; exit 1; }
dir=${HELM_CACHE_DIR:-/var/cache/bulkhead}/helm-$ver
if [[ ! -x $dir/helm ]]; then
  mkdir -p "$dir"
  echo "helm.sh: building helm $ver into $dir (a few minutes, once)" >&2
  start=$SECONDS
  nice -n 10 go build -trimpath -o "$dir/helm.tmp" \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$ver" \
    helm.sh/helm/v3/cmd/helm
  mv "$dir/helm.tmp" "$dir/helm"
  echo "helm.sh: built in $((SECONDS - start))s" >&2
fi
echo "$dir"
