#!/usr/bin/env bash
# The operator as a process beside the local control plane, for `make run`, the
# e2e tests and the benchmark. It runs under exactly the chart's RBAC: the
# chart's service account, roles and admission policies are installed, and the
# operator talks to the API server with that service account's token, so a
# permission the chart lacks (or a policy that refuses the operator) fails.
#
#   operator.sh start     install the CRDs and the chart's namespaces, RBAC and
#                         admission policies; start the operator (idempotent)
#   operator.sh stop      stop it (SIGTERM, then SIGKILL after 5 s)
#   operator.sh kill      SIGKILL at once: a crash, for restart-safety tests
#   operator.sh restart   stop, then start
#   operator.sh install   only install (and write the operator's kubeconfig)
#
# Environment: CLEANROOM_OPERATOR_BIN (default target/debug/cleanroom), and any
# of the operator's own CLEANROOM_* settings.
#
# Files: e2e/.cluster/operator.kubeconfig (the operator's identity: the API
# server and CA of e2e/.cluster/kubeconfig, the service account's token as
# user), e2e/.cluster/operator-install.yaml (what was installed).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

RUN=$CLUSTER_DIR/run
PIDFILE=$RUN/operator.pid
LOG=$CLUSTER_DIR/logs/operator.log
BIN=${CLEANROOM_OPERATOR_BIN:-$REPO_DIR/target/debug/cleanroom}
# The admin's kubeconfig, for installing; the operator gets its own.
export KUBECONFIG=$CLUSTER_DIR/kubeconfig
OPERATOR_KUBECONFIG=$CLUSTER_DIR/operator.kubeconfig
INSTALLED=$CLUSTER_DIR/operator-install.yaml
# The chart's release: its namespace and service account name the operator.
RELEASE_NAMESPACE=cleanroom-system
SERVICE_ACCOUNT=cleanroom
# How long the operator's token lasts. Minted afresh at every start; the API
# server honours the request (no --service-account-max-token-expiration here),
# and a week outlasts any `make run` session.
TOKEN_DURATION=${CLEANROOM_E2E_TOKEN_DURATION:-168h}
# Health and metrics on any free loopback port (logged), so that the shared
# instance never collides with operators that tests start themselves.
export CLEANROOM_METRICS_ADDR=${CLEANROOM_METRICS_ADDR:-127.0.0.1:0}
# What the chart's Deployment sets: the audit ledger in the release namespace
# (where the chart's audit Role applies).
export CLEANROOM_AUDIT_NAMESPACE=$RELEASE_NAMESPACE
# The audit webhook the API server posts to (cluster.sh picked its port and
# issued its certificates): who entered a workspace.
if [ -f "$CLUSTER_DIR/cluster.env" ]; then
  # shellcheck source=/dev/null
  source "$CLUSTER_DIR/cluster.env"
fi
if [ -n "${SESSIONS_PORT:-}" ]; then
  export CLEANROOM_SESSIONS_ADDR=127.0.0.1:$SESSIONS_PORT
  export CLEANROOM_SESSIONS_TLS_CERT=$CLUSTER_DIR/pki/sessions-server.crt
  export CLEANROOM_SESSIONS_TLS_KEY=$CLUSTER_DIR/pki/sessions-server.key
  export CLEANROOM_SESSIONS_CLIENT_CA=$CLUSTER_DIR/pki/sessions-ca.crt
fi

alive() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

kubectl_() { "$(cat "$CLUSTER_DIR/bin-dir")/kubectl" "$@"; }

# The chart's templates the operator needs beside it: its namespaces, service
# account, RBAC (with the member ClusterRole it binds) and admission policies
# (the actors policy among them: the ledger's actors are the API server's word;
# the images policy: only approved images, and the agent's, in a workspace).
# Not its Deployment (the operator runs here as a process), NetworkPolicies
# (no network plugin enforces them) or Services (sessions.yaml included: the
# API server reaches the operator's webhook on 127.0.0.1 here).
render_chart() {
  local helm
  helm=$("$E2E_DIR/scripts/build-helm.sh")/helm
  ( cd "$REPO_DIR" && "$helm" template cleanroom charts/cleanroom \
      --namespace "$RELEASE_NAMESPACE" \
      --show-only templates/namespaces.yaml --show-only templates/serviceaccount.yaml \
      --show-only templates/rbac.yaml --show-only templates/admission-policies.yaml \
      --show-only templates/admission-airlock.yaml --show-only templates/admission-actors.yaml \
      --show-only templates/admission-images.yaml --show-only templates/rbac-airlock.yaml )
}

# A kubeconfig for the operator's service account: a fresh token, the same
# server and CA as the admin's.
write_operator_kubeconfig() {
  local server ca token
  server=$(kubectl_ config view --raw -o jsonpath='{.clusters[0].cluster.server}')
  ca=$(kubectl_ config view --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
  token=$(kubectl_ create token "$SERVICE_ACCOUNT" -n "$RELEASE_NAMESPACE" --duration="$TOKEN_DURATION")
  [ -n "$server" ] && [ -n "$ca" ] && [ -n "$token" ] || die "cannot write the operator's kubeconfig"
  local tmp
  tmp=$(mktemp "$OPERATOR_KUBECONFIG.XXXXXX")
  chmod 600 "$tmp"
  cat >"$tmp" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: cleanroom-e2e
  cluster:
    server: $server
    certificate-authority-data: $ca
users:
- name: system:serviceaccount:$RELEASE_NAMESPACE:$SERVICE_ACCOUNT
  user:
    token: $token
contexts:
- name: cleanroom-operator
  context:
    cluster: cleanroom-e2e
    user: system:serviceaccount:$RELEASE_NAMESPACE:$SERVICE_ACCOUNT
current-context: cleanroom-operator
KUBECONFIG
  mv "$tmp" "$OPERATOR_KUBECONFIG"
}

install() {
  [ -f "$KUBECONFIG" ] || die "the local control plane is not up (make cluster-up)"
  kubectl_ apply --server-side --force-conflicts -f "$REPO_DIR/crds/" >/dev/null
  render_chart >"$INSTALLED.tmp"
  mv "$INSTALLED.tmp" "$INSTALLED"
  kubectl_ apply --server-side --force-conflicts --field-manager cleanroom-e2e \
    -f "$INSTALLED" >/dev/null
  write_operator_kubeconfig
}

start() {
  [ -f "$KUBECONFIG" ] || die "the local control plane is not up (make cluster-up)"
  [ -x "$BIN" ] || die "no operator binary at $BIN (cargo build -p cleanroom)"
  if alive; then say "operator already running (pid $(cat "$PIDFILE"))"; return 0; fi
  install
  mkdir -p "$RUN" "$(dirname "$LOG")"
  echo "----- operator started $(date -u +%FT%TZ)" >>"$LOG"
  # Only this run's lines count: a quick restart still has the previous
  # run's "controllers started" near the end of the log.
  local from
  from=$(( $(stat -c %s "$LOG") + 1 ))
  KUBECONFIG=$OPERATOR_KUBECONFIG setsid "$BIN" run >>"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  local deadline=$(( $(date +%s) + 20 ))
  until grep -q "controllers started" < <(tail -c "+$from" "$LOG"); do
    alive || { tail -n 20 "$LOG" >&2; die "the operator exited during start-up"; }
    (( $(date +%s) < deadline )) || die "the operator did not start within 20 s (see $LOG)"
    sleep 0.1
  done
  say "operator running as system:serviceaccount:$RELEASE_NAMESPACE:$SERVICE_ACCOUNT (pid $(cat "$PIDFILE")), log: $LOG"
}

stop() {
  local signal=$1 grace=$2
  alive || { rm -f "$PIDFILE"; return 0; }
  local pid
  pid=$(cat "$PIDFILE")
  kill "-$signal" "$pid" 2>/dev/null || true
  local deadline=$(( $(date +%s) + grace ))
  while kill -0 "$pid" 2>/dev/null && (( $(date +%s) < deadline )); do sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  rm -f "$PIDFILE"
}

case "${1:-}" in
  start) start ;;
  stop) stop TERM 5; say "operator stopped" ;;
  kill) stop KILL 0 ;;
  restart) stop TERM 5; start ;;
  install) install; say "installed the chart's RBAC and policies; the operator's kubeconfig: $OPERATOR_KUBECONFIG" ;;
  *) echo "usage: $0 start|stop|kill|restart|install" >&2; exit 2 ;;
esac
