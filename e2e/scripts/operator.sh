#!/usr/bin/env bash
# The operator as a process beside the local control plane, for `make run`, the
# e2e tests and the benchmark.
#
#   operator.sh start     install the CRDs, the vault and the audit namespaces, start the operator (idempotent)
#   operator.sh stop      stop it (SIGTERM, then SIGKILL after 5 s)
#   operator.sh kill      SIGKILL at once: a crash, for restart-safety tests
#   operator.sh restart   stop, then start
#
# Environment: CLEANROOM_OPERATOR_BIN (default target/debug/cleanroom), and any
# of the operator's own CLEANROOM_* settings.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

RUN=$CLUSTER_DIR/run
PIDFILE=$RUN/operator.pid
LOG=$CLUSTER_DIR/logs/operator.log
BIN=${CLEANROOM_OPERATOR_BIN:-$REPO_DIR/target/debug/cleanroom}
export KUBECONFIG=$CLUSTER_DIR/kubeconfig
# Health and metrics on any free loopback port (logged), so that the shared
# instance never collides with operators that tests start themselves.
export CLEANROOM_METRICS_ADDR=${CLEANROOM_METRICS_ADDR:-127.0.0.1:0}

alive() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

start() {
  [ -f "$KUBECONFIG" ] || die "the local control plane is not up (make cluster-up)"
  [ -x "$BIN" ] || die "no operator binary at $BIN (cargo build -p cleanroom)"
  if alive; then say "operator already running (pid $(cat "$PIDFILE"))"; return 0; fi
  local kubectl
  kubectl="$(cat "$CLUSTER_DIR/bin-dir")/kubectl"
  "$kubectl" apply --server-side --force-conflicts \
    -f "$REPO_DIR/crds/" -f "$E2E_DIR/manifests/vault.yaml" >/dev/null
  # The audit ledger's namespace (the chart creates it on a real cluster).
  local ns=${CLEANROOM_AUDIT_NAMESPACE:-cleanroom-system}
  "$kubectl" get namespace "$ns" >/dev/null 2>&1 \
    || "$kubectl" create namespace "$ns" >/dev/null
  mkdir -p "$RUN" "$(dirname "$LOG")"
  echo "----- operator started $(date -u +%FT%TZ)" >>"$LOG"
  # Only this run's lines count: a quick restart still has the previous
  # run's "controllers started" near the end of the log.
  local from
  from=$(( $(stat -c %s "$LOG") + 1 ))
  setsid "$BIN" run >>"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  local deadline=$(( $(date +%s) + 20 ))
  until grep -q "controllers started" < <(tail -c "+$from" "$LOG"); do
    alive || { tail -n 20 "$LOG" >&2; die "the operator exited during start-up"; }
    (( $(date +%s) < deadline )) || die "the operator did not start within 20 s (see $LOG)"
    sleep 0.1
  done
  say "operator running (pid $(cat "$PIDFILE")), log: $LOG"
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
  *) echo "usage: $0 start|stop|kill|restart" >&2; exit 2 ;;
esac
