#!/usr/bin/env bash
# `make run`: the operator against the local control plane, with the worked
# examples, until Ctrl-C. With CLEANROOM_RUN_ONCE=1 it returns as soon as the
# example scenarios are Ready (used by the tests).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

export KUBECONFIG=$CLUSTER_DIR/kubeconfig
kubectl_() { "$(cat "$CLUSTER_DIR/bin-dir")/kubectl" "$@"; }

"$E2E_DIR/scripts/operator.sh" start
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
