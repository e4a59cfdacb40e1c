#!/usr/bin/env bash
# Builds helm from its Go module in e2e/helm (no binary download), for `helm lint`
# and `helm template` in the chart tests and render-install.sh. Prints the
# directory holding it.
#
# Keyed like build-controlplane.sh: the hash of e2e/helm/go.mod, go.sum and this
# script (which carries the build flags), so a changed pin rebuilds and an
# unchanged one is reused from the cache.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

need go "the Go toolchain builds helm from its module"

mod=$E2E_DIR/helm
key=$(cat "$mod/go.mod" "$mod/go.sum" "$0" | sha256sum | cut -c1-16)
out=$CACHE_DIR/helm-$key

if [ -x "$out/helm" ]; then
  echo "$out"
  exit 0
fi

# The version comes from the pin itself, so `helm version` never lies.
version=$(awk '$1 == "require" { $0 = substr($0, 9) } $1 == "helm.sh/helm/v3" && $2 ~ /^v/ { print $2 }' "$mod/go.mod")
[ -n "$version" ] || die "cannot read the helm.sh/helm/v3 version from $mod/go.mod"
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$version -X helm.sh/helm/v3/internal/version.gitTreeState=clean"

mkdir -p "$CACHE_DIR"
tmp=$(mktemp -d "$CACHE_DIR/.build-helm-XXXXXX")
log=$tmp/build.log
trap 'rm -rf "$tmp"' EXIT

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false -trimpath"
say "building helm $version from its Go module into the cache"
start=$(date +%s)

( cd "$mod" && go build -ldflags "$ldflags" -o "$tmp/helm" helm.sh/helm/v3/cmd/helm ) >"$log" 2>&1 &
pid=$!
# Progress while the first build runs, so nobody thinks it hangs.
while kill -0 "$pid" 2>/dev/null; do
  sleep 5
  elapsed=$(( $(date +%s) - start ))
  if (( elapsed % 30 < 5 )); then say "still building helm ... ${elapsed}s"; fi
done
if ! wait "$pid"; then
  tail -n 30 "$log" >&2
  die "helm build failed (log above)"
fi

# Publish atomically: a killed build never leaves a half-filled cache entry.
mkdir -p "$out.new"
mv "$tmp/helm" "$out.new/helm"
rm -rf "$out"
mv "$out.new" "$out"
say "helm built in $(( $(date +%s) - start ))s: $out"
echo "$out"
