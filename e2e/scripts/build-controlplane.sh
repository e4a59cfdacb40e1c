#!/usr/bin/env bash
# Builds the local control plane from upstream Go modules (no binary download):
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kubectl from
# e2e/controlplane, kwok from e2e/kwok. Prints the directory holding them.
#
# The output directory is keyed by the hash of both modules' go.mod/go.sum and of
# this script (which carries the build flags), so a changed pin rebuilds and an
# unchanged one is reused from the cache, whichever checkout asks.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

need go "the Go toolchain builds the control plane from its modules"

cp_mod=$E2E_DIR/controlplane
kwok_mod=$E2E_DIR/kwok
key=$(cat "$cp_mod/go.mod" "$cp_mod/go.sum" "$kwok_mod/go.mod" "$kwok_mod/go.sum" "$0" \
  | sha256sum | cut -c1-16)
out=$CACHE_DIR/controlplane-$key
binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok)

complete() {
  local b
  for b in "${binaries[@]}"; do [ -x "$out/$b" ] || return 1; done
}

if complete; then
  echo "$out"
  exit 0
fi

# The Kubernetes version comes from the pin itself, so --version never lies.
k8s_version=$(awk '$1 == "require" { $0 = substr($0, 9) } $1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2 }' "$cp_mod/go.mod")
[ -n "$k8s_version" ] || die "cannot read the k8s.io/kubernetes version from $cp_mod/go.mod"
minor=${k8s_version#v1.}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

mkdir -p "$CACHE_DIR"
tmp=$(mktemp -d "$CACHE_DIR/.build-XXXXXX")
log=$tmp/build.log
trap 'rm -rf "$tmp"' EXIT

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false -trimpath"
say "building the control plane ($k8s_version) from Go modules into the cache"
say "a cold build takes a while on a small machine; later runs reuse it"
start=$(date +%s)

build() {
  ( cd "$cp_mod" && go build -ldflags "$ldflags" -o "$tmp/" \
      k8s.io/kubernetes/cmd/kube-apiserver \
      k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler \
      k8s.io/kubernetes/cmd/kubectl \
    && go build -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3 ) \
  && ( cd "$kwok_mod" && go build -ldflags "-s -w" -o "$tmp/kwok" sigs.k8s.io/kwok/cmd/kwok )
}

# Progress while the first build runs, so nobody thinks it hangs.
build >"$log" 2>&1 &
pid=$!
while kill -0 "$pid" 2>/dev/null; do
  sleep 5
  elapsed=$(( $(date +%s) - start ))
  if (( elapsed % 30 < 5 )); then say "still building ... ${elapsed}s"; fi
done
if ! wait "$pid"; then
  tail -n 30 "$log" >&2
  die "control plane build failed (log above)"
fi

for b in "${binaries[@]}"; do mv "$tmp/$b" "$tmp/.$b.ready" 2>/dev/null || die "build produced no $b"; done
mkdir -p "$out.new"
for b in "${binaries[@]}"; do mv "$tmp/.$b.ready" "$out.new/$b"; done
# Publish atomically: a killed build never leaves a half-filled cache entry.
rm -rf "$out"
mv "$out.new" "$out"
say "control plane built in $(( $(date +%s) - start ))s: $out"
echo "$out"
