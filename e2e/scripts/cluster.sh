#!/usr/bin/env bash
# The local control plane: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, KWOK fake nodes and the e2e node (volume provisioner and agent
# pod runner), all on 127.0.0.1, all state under e2e/.cluster/.
#
#   cluster.sh up       start it (idempotent: a healthy cluster is left as it is)
#   cluster.sh down     stop it and remove its state (success when nothing runs)
#   cluster.sh status   exit 0 when it is up and healthy
#
# Environment:
#   CLEANROOM_BIN_DIR       control plane binaries (default: build-controlplane.sh)
#   CLEANROOM_E2E_NODE      the e2e node binary (default: target/debug/cleanroom-e2e-node)
#   CLEANROOM_AGENT_BIN     the agent binary the runner executes (default: target/debug/agent)
#   CLEANROOM_NODES         number of fake nodes (default 3)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PKI=$CLUSTER_DIR/pki
LOGS=$CLUSTER_DIR/logs
RUN=$CLUSTER_DIR/run
STATE=$CLUSTER_DIR/cluster.env
KUBECONFIG_FILE=$CLUSTER_DIR/kubeconfig
# Start order; down stops them in reverse.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok e2e-node)
STARTUP_TIMEOUT=${CLEANROOM_STARTUP_TIMEOUT:-90}

# --- processes --------------------------------------------------------------

pid_of() { cat "$RUN/$1.pid" 2>/dev/null || true; }

alive() {
  local pid
  pid=$(pid_of "$1")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# start NAME CMD...: own session (Ctrl-C on a later command does not reach it),
# no stdin, output to logs/NAME.log.
start() {
  local name=$1
  shift
  setsid "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}

# A component that dies while we wait fails the start at once, with its log.
fail_with_log() {
  local name=$1
  say "$name failed to start; last lines of $LOGS/$name.log:"
  tail -n 25 "$LOGS/$name.log" >&2 || true
  stop_all >/dev/null 2>&1 || true
  die "$name did not come up"
}

# wait_until NAME DESCRIPTION CHECK...: poll CHECK until it passes, NAME dies, or time runs out.
wait_until() {
  local name=$1 what=$2
  shift 2
  local deadline=$(( $(date +%s) + STARTUP_TIMEOUT ))
  until "$@" >/dev/null 2>&1; do
    alive "$name" || fail_with_log "$name"
    if (( $(date +%s) > deadline )); then
      say "timed out after ${STARTUP_TIMEOUT}s waiting for $what"
      fail_with_log "$name"
    fi
    sleep 0.2
  done
}

stop_all() {
  local i name pid
  # The operator (operator.sh) runs beside the cluster and goes with it.
  local all=("${COMPONENTS[@]}" operator)
  for (( i=${#all[@]}-1; i>=0; i-- )); do
    name=${all[i]}
    pid=$(pid_of "$name")
    [ -n "$pid" ] || continue
    # Each component leads its own process group: signal the group so that
    # children (agent processes under the runner) go too.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done
  # A short grace for clean logs; the state is thrown away, so no more is owed.
  local deadline=$(( $(date +%s) + 3 ))
  for name in "${all[@]}"; do
    pid=$(pid_of "$name")
    [ -n "$pid" ] || continue
    while kill -0 "$pid" 2>/dev/null && (( $(date +%s) < deadline )); do sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    rm -f "$RUN/$name.pid"
  done
  # Anything still holding this cluster's files (a lost pid file, a child that
  # left its group) is ours too.
  pkill -KILL -f -- "$CLUSTER_DIR/" 2>/dev/null || true
}

# --- ports ------------------------------------------------------------------

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pick_ports N: N distinct ports nobody listens on, from a random base so two
# clusters (or anything else on the machine) do not collide.
pick_ports() {
  local want=$1 port=$(( 20000 + RANDOM % 20000 )) got=()
  while (( ${#got[@]} < want )); do
    if ! listening "$port" && ! ss -Htan "sport = :$port" 2>/dev/null | grep -q .; then
      got+=("$port")
    fi
    port=$(( port + 1 ))
  done
  echo "${got[@]}"
}

# --- certificates -----------------------------------------------------------

# issue NAME SUBJECT EXTENSIONS [CA]: an EC key and a certificate signed by the
# cluster CA (or by CA: its .crt and .key in the PKI directory).
issue() {
  local name=$1 subject=$2 ext=$3 ca=${4:-ca}
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$PKI/$name.key" -subj "$subject" -out "$PKI/$name.csr" 2>/dev/null
  printf '%s\n' "$ext" >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 3650 -extfile "$PKI/$name.ext" \
    -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

make_pki() {
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$PKI/ca.key" -subj "/CN=cleanroom-e2e-ca" -days 3650 -out "$PKI/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
  local client="keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
  issue apiserver "/CN=kube-apiserver" "keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  issue admin "/O=system:masters/CN=cleanroom-e2e-admin" "$client"
  issue kube-controller-manager "/CN=system:kube-controller-manager" "$client"
  issue kube-scheduler "/CN=system:kube-scheduler" "$client"
  # Test infrastructure standing in for kubelets: it writes node and pod status
  # for every fake node, so it gets cluster admin rather than per-node identities.
  issue kwok "/O=system:masters/CN=cleanroom-e2e-kwok" "$client"
  issue e2e-node "/O=system:masters/CN=cleanroom-e2e-node" "$client"
  # The audit webhook (who entered a workspace): its own CA, trusted by the
  # operator for clients and by the API server for the operator's serving
  # certificate. It signs only these two, so no cluster user's certificate
  # (the admin's included) can post audit events to the operator.
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$PKI/sessions-ca.key" -subj "/CN=cleanroom-e2e-sessions-ca" -days 3650 \
    -out "$PKI/sessions-ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
  issue sessions-server "/CN=cleanroom-sessions" "keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost" sessions-ca
  issue apiserver-audit "/CN=kube-apiserver-audit-webhook" "$client" sessions-ca
  # Service account tokens: signed by the API server, checked with the public half.
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key" 2>/dev/null
  openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
}

# kubeconfig FILE USER: a kubeconfig for USER's certificate against this API server.
kubeconfig() {
  local file=$1 user=$2
  cat >"$file" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: cleanroom-e2e
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 <"$PKI/$user.crt")
    client-key-data: $(base64 -w0 <"$PKI/$user.key")
contexts:
- name: cleanroom-e2e
  context:
    cluster: cleanroom-e2e
    user: $user
current-context: cleanroom-e2e
KUBECONFIG
  chmod 600 "$file"
}

# audit_webhook_kubeconfig FILE: where the API server sends audit events: the
# operator's webhook (operator.sh starts it on SESSIONS_PORT), trusted through
# the sessions CA, the API server known by its own client certificate.
audit_webhook_kubeconfig() {
  local file=$1
  cat >"$file" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: cleanroom-sessions
  cluster:
    server: https://127.0.0.1:$SESSIONS_PORT/audit
    certificate-authority-data: $(base64 -w0 <"$PKI/sessions-ca.crt")
users:
- name: kube-apiserver
  user:
    client-certificate-data: $(base64 -w0 <"$PKI/apiserver-audit.crt")
    client-key-data: $(base64 -w0 <"$PKI/apiserver-audit.key")
contexts:
- name: cleanroom-sessions
  context:
    cluster: cleanroom-sessions
    user: kube-apiserver
current-context: cleanroom-sessions
KUBECONFIG
  chmod 600 "$file"
}

# --- health -----------------------------------------------------------------

api_ready() {
  curl -fsS --max-time 2 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://127.0.0.1:$API_PORT/readyz" | grep -qx ok
}
etcd_healthy() { curl -fsS --max-time 2 "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }
# /healthz is on the always-allowed paths of both components' secure ports.
serving_ok() { curl -fsS --max-time 2 -k "https://127.0.0.1:$1/healthz" | grep -qx ok; }

kubectl_() { "$BIN_DIR/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

nodes_ready() {
  local ready
  ready=$(kubectl_ get nodes -l type=kwok \
    -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' \
    | grep -c True || true)
  [ "$ready" -ge "$NODES" ]
}

healthy() {
  [ -f "$STATE" ] || return 1
  # shellcheck source=/dev/null
  source "$STATE"
  local c
  for c in "${COMPONENTS[@]}"; do alive "$c" || return 1; done
  api_ready
}

# --- up / down --------------------------------------------------------------

fake_nodes() {
  local i
  for (( i=0; i<NODES; i++ )); do
    cat <<NODE
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    node-role.kubernetes.io/agent: ""
status:
  allocatable: {cpu: "64", memory: 256Gi, pods: "1000", ephemeral-storage: 1Ti}
  capacity: {cpu: "64", memory: 256Gi, pods: "1000", ephemeral-storage: 1Ti}
NODE
  done
}

up() {
  if healthy; then
    say "cluster already up: export KUBECONFIG=$KUBECONFIG_FILE"
    return 0
  fi
  # Half a cluster (a crash, a killed run) is cleared before a fresh start.
  [ -d "$RUN" ] && stop_all
  need openssl "it generates the cluster's CA and certificates"
  need curl "it probes the components' health endpoints"
  need setsid
  local started
  started=$(date +%s)

  BIN_DIR=${CLEANROOM_BIN_DIR:-$("$E2E_DIR/scripts/build-controlplane.sh")}
  E2E_NODE=${CLEANROOM_E2E_NODE:-$REPO_DIR/target/debug/cleanroom-e2e-node}
  AGENT_BIN=${CLEANROOM_AGENT_BIN:-$REPO_DIR/target/debug/agent}
  NODES=${CLEANROOM_NODES:-3}
  local b
  for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok; do
    [ -x "$BIN_DIR/$b" ] || die "no $b in $BIN_DIR (run e2e/scripts/build-controlplane.sh)"
  done
  [ -x "$E2E_NODE" ] || die "no e2e node binary at $E2E_NODE (cargo build -p cleanroom-e2e)"
  [ -x "$AGENT_BIN" ] || die "no agent binary at $AGENT_BIN (cargo build -p cleanroom-agent)"

  rm -rf "$CLUSTER_DIR/etcd" "$CLUSTER_DIR/volumes" "$CLUSTER_DIR/pods" "$RUN"
  mkdir -p "$LOGS" "$RUN" "$CLUSTER_DIR/volumes" "$CLUSTER_DIR/pods"
  read -r ETCD_PORT ETCD_PEER_PORT API_PORT KCM_PORT SCHED_PORT KWOK_PORT SESSIONS_PORT \
    <<<"$(pick_ports 7)"
  make_pki
  audit_webhook_kubeconfig "$CLUSTER_DIR/audit-webhook.kubeconfig"
  cat >"$STATE" <<STATE
BIN_DIR=$BIN_DIR
NODES=$NODES
ETCD_PORT=$ETCD_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
API_PORT=$API_PORT
KCM_PORT=$KCM_PORT
SCHED_PORT=$SCHED_PORT
KWOK_PORT=$KWOK_PORT
SESSIONS_PORT=$SESSIONS_PORT
STATE
  echo "$BIN_DIR" >"$CLUSTER_DIR/bin-dir"

  say "starting etcd on 127.0.0.1:$ETCD_PORT"
  # fsync off: this is a throwaway test cluster and the disk is shared.
  start etcd "$BIN_DIR/etcd" --name e2e --data-dir "$CLUSTER_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "e2e=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --log-level warn
  wait_until etcd "etcd health" etcd_healthy

  say "starting kube-apiserver on https://127.0.0.1:$API_PORT"
  # Audit: who entered a pod goes to the operator's webhook (manifests/audit/).
  # blocking-strict: the API server refuses such a request when the operator
  # cannot take its first event (the operator down, not leading, the ledger
  # unwritable), so nobody enters a workspace unrecorded; other requests send
  # no event and never wait on the operator. Failed deliveries after the
  # first stage are retried from 1 s (5 tries), without refusing the request.
  start kube-apiserver "$BIN_DIR/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
    --cert-dir "$PKI" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --authorization-mode RBAC \
    --enable-admission-plugins NamespaceLifecycle,LimitRanger,ServiceAccount,PodSecurity,ResourceQuota,DefaultStorageClass,StorageObjectInUseProtection \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" \
    --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range 10.0.0.0/24 \
    --endpoint-reconciler-type none \
    --allow-privileged=false \
    --audit-policy-file "$REPO_DIR/manifests/audit/policy.yaml" \
    --audit-webhook-config-file "$CLUSTER_DIR/audit-webhook.kubeconfig" \
    --audit-webhook-mode blocking-strict \
    --audit-webhook-initial-backoff 1s \
    --profiling=false
  wait_until kube-apiserver "kube-apiserver /readyz" api_ready
  kubeconfig "$KUBECONFIG_FILE" admin
  kubeconfig "$CLUSTER_DIR/kube-controller-manager.kubeconfig" kube-controller-manager
  kubeconfig "$CLUSTER_DIR/kube-scheduler.kubeconfig" kube-scheduler
  kubeconfig "$CLUSTER_DIR/kwok.kubeconfig" kwok
  kubeconfig "$CLUSTER_DIR/e2e-node.kubeconfig" e2e-node

  say "starting kube-controller-manager and kube-scheduler"
  local kcm=$CLUSTER_DIR/kube-controller-manager.kubeconfig
  # Each controller runs with its own service account token, so RBAC and token
  # issuance are exercised the way a real cluster does.
  start kube-controller-manager "$BIN_DIR/kube-controller-manager" \
    --kubeconfig "$kcm" --authentication-kubeconfig "$kcm" --authorization-kubeconfig "$kcm" \
    --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --cert-dir "$PKI/kcm" \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --use-service-account-credentials \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --leader-elect=false --kube-api-qps 200 --kube-api-burst 400 \
    --concurrent-namespace-syncs 20 --concurrent-gc-syncs 40 --profiling=false
  local sched=$CLUSTER_DIR/kube-scheduler.kubeconfig
  start kube-scheduler "$BIN_DIR/kube-scheduler" \
    --kubeconfig "$sched" --authentication-kubeconfig "$sched" --authorization-kubeconfig "$sched" \
    --bind-address 127.0.0.1 --secure-port "$SCHED_PORT" --cert-dir "$PKI/scheduler" \
    --leader-elect=false --profiling=false
  wait_until kube-controller-manager "kube-controller-manager /healthz" serving_ok "$KCM_PORT"
  wait_until kube-scheduler "kube-scheduler /healthz" serving_ok "$SCHED_PORT"

  say "starting kwok with $NODES fake nodes, and the e2e node"
  start kwok "$BIN_DIR/kwok" --kubeconfig "$CLUSTER_DIR/kwok.kubeconfig" \
    --config "$E2E_DIR/kwok/stages.yaml" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --node-lease-duration-seconds 40 --cidr 10.244.0.0/16 --node-ip 127.0.0.1 \
    --server-address "127.0.0.1:$KWOK_PORT"
  start e2e-node "$E2E_NODE" --kubeconfig "$CLUSTER_DIR/e2e-node.kubeconfig" \
    --root "$CLUSTER_DIR" --agent-bin "$AGENT_BIN"
  wait_until kube-apiserver "the default namespace" kubectl_ get namespace default
  fake_nodes | kubectl_ apply -f - >/dev/null
  kubectl_ apply -f "$E2E_DIR/manifests/storageclass.yaml" >/dev/null
  wait_until kwok "$NODES Ready fake nodes" nodes_ready
  alive e2e-node || fail_with_log e2e-node

  say "cluster up in $(( $(date +%s) - started ))s: export KUBECONFIG=$KUBECONFIG_FILE"
}

down() {
  if [ ! -d "$RUN" ] && ! pgrep -f -- "$CLUSTER_DIR/" >/dev/null 2>&1; then
    say "cluster not running"
    return 0
  fi
  local ports=()
  if [ -f "$STATE" ]; then
    # shellcheck source=/dev/null
    source "$STATE"
    ports=("$ETCD_PORT" "$ETCD_PEER_PORT" "$API_PORT" "$KCM_PORT" "$SCHED_PORT" "$KWOK_PORT")
    # The operator's webhook goes with the operator (stop_all stops it).
    if [ -n "${SESSIONS_PORT:-}" ]; then ports+=("$SESSIONS_PORT"); fi
  fi
  stop_all
  local port deadline=$(( $(date +%s) + 10 ))
  for port in "${ports[@]}"; do
    while listening "$port"; do
      (( $(date +%s) < deadline )) || die "port $port still listening after cluster-down"
      sleep 0.1
    done
  done
  rm -rf "$RUN" "$STATE" "$CLUSTER_DIR/etcd" "$CLUSTER_DIR/volumes" "$CLUSTER_DIR/pods" \
    "$CLUSTER_DIR/bin-dir" "$KUBECONFIG_FILE" "$CLUSTER_DIR"/*.kubeconfig "$PKI"
  say "cluster down (logs kept in $LOGS)"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status)
    if healthy; then say "up: export KUBECONFIG=$KUBECONFIG_FILE"; else say "not running"; exit 1; fi ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
