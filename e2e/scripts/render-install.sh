#!/usr/bin/env bash
# Renders manifests/install.yaml from charts/cleanroom with the default values:
# the plain install for those who do not use helm. The chart is the source;
# the chart test fails when the committed file differs from what this writes.
#
#   e2e/scripts/render-install.sh            # rewrite manifests/install.yaml
#   e2e/scripts/render-install.sh --stdout   # print it instead
set -euo pipefail
source "$(dirname "$0")/lib.sh"

helm=$("$E2E_DIR/scripts/build-helm.sh")/helm
out=$REPO_DIR/manifests/install.yaml

render() {
  cat <<'HEADER'
# Generated from charts/cleanroom with its default values by
#   e2e/scripts/render-install.sh
# (helm template cleanroom charts/cleanroom --namespace cleanroom-system --include-crds).
# Do not edit by hand: change the chart and rerun the script (the chart test fails on drift).
# Install: kubectl apply --server-side -f manifests/install.yaml
HEADER
  # Relative to the repository, so the output never names this machine's paths.
  ( cd "$REPO_DIR" && "$helm" template cleanroom charts/cleanroom \
      --namespace cleanroom-system --include-crds )
}

if [ "${1:-}" = --stdout ]; then
  render
else
  render >"$out.tmp"
  mv "$out.tmp" "$out"
  say "wrote ${out#"$REPO_DIR"/}"
fi
