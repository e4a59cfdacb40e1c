#!/usr/bin/env bash
# `make run`: the operator against the local control plane, with the worked
# examples, until Ctrl-C. With CLEANROOM_RUN_ONCE=1 it returns as soon as the
# example scenarios are Ready (used by the tests).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

export KUBECONFIG=$CLUSTER_DIR/kubeconfig
kubectl_() { "$(cat "$CLUSTER_DIR/bin-dir")/kubectl" "$@"; }

"$E2E_DIR/scripts/operator.sh" start
# The raw data first: on a real cluster the data provider puts the file on
# the vault's claim; here the e2e node's volumes are directories on this
# machine, so the synthetic sample is copied in before any scenario asks.
say "putting the synthetic population register on its raw claim in the vault"
kubectl_ apply -f "$REPO_DIR/manifests/examples/00-vault-raw-population.yaml"
kubectl_ -n cleanroom-vault wait --for=jsonpath='{.status.phase}'=Bound \
  pvc/raw-population --timeout=60s >/dev/null
volume=$(kubectl_ -n cleanroom-vault get pvc raw-population -o jsonpath='{.spec.volumeName}')
raw_dir=$(kubectl_ get pv "$volume" -o jsonpath='{.spec.hostPath.path}')
[ -d "$raw_dir" ] || die "the raw claim's volume $volume has no directory on this machine"
install -d -m 0755 "$raw_dir/population"
install -m 0644 "$E2E_DIR/fixtures/population-2024.csv" "$raw_dir/population/2024.csv"

say "applying the worked examples (manifests/examples/)"
kubectl_ apply -f "$REPO_DIR/manifests/examples/"
say "waiting for the example scenarios to be Ready"
kubectl_ wait --for=condition=Ready scenarios.cleanroom.io --all --timeout=120s
kubectl_ get datasets.cleanroom.io,authorizations.cleanroom.io,scenarios.cleanroom.io
kubectl_ get namespaces -l app.kubernetes.io/managed-by=cleanroom
cat >&2 <<HELP

cleanroom is running. In another terminal:
  export KUBECONFIG=$KUBECONFIG
  alias kubectl="$(cat "$CLUSTER_DIR/bin-dir")/kubectl"
  kubectl get scn -w                                   # watch the scenarios
  kubectl patch scn elderly-care-demand --type merge \\
    -p '{"spec":{"state":"Suspended","reason":"audit"}}' # seal one
  kubectl patch scn district-income-report --type merge \\
    -p '{"spec":{"state":"Revoked","reason":"done"}}'  # tear one down, wiped
Ctrl-C stops the operator; the cluster stays up until 'make cluster-down'.

HELP
if [ "${CLEANROOM_RUN_ONCE:-}" = 1 ]; then exit 0; fi

trap '"$E2E_DIR/scripts/operator.sh" stop; exit 0' INT TERM
tail -n 0 -f "$CLUSTER_DIR/logs/operator.log" &
wait
