# The verbs of the project. `make run` and `make test` are the two a newcomer needs.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
CLUSTER := e2e/scripts/cluster.sh
export KUBECONFIG_E2E := $(CURDIR)/e2e/.cluster/kubeconfig

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

.PHONY: build
build: ## build every Rust binary (operator CLI, agent, e2e node)
	$(CARGO) build --workspace --bins

.PHONY: controlplane
controlplane: ## build etcd, kube-apiserver, controller-manager, scheduler, kubectl, kwok from Go modules (cached)
	e2e/scripts/build-controlplane.sh >/dev/null

.PHONY: cluster-up
cluster-up: controlplane ## start the local control plane on 127.0.0.1 (idempotent)
	$(CARGO) build -p cleanroom-e2e --bin cleanroom-e2e-node -p cleanroom-agent --bin agent
	$(CLUSTER) up

.PHONY: cluster-down
cluster-down: ## stop the local control plane and remove its state
	$(CLUSTER) down

.PHONY: python-tools
python-tools: ## pinned ACRO, DuckDB and pandas in target/pyvenv (ACRO parity test, benchmarks); skipped without Python or the package index
	agent/python/venv.sh

.PHONY: unit
unit: python-tools ## unit and integration tests that need no cluster (every crate but the e2e suite)
	$(CARGO) test --workspace --exclude cleanroom-e2e
	$(CARGO) test -p cleanroom-e2e --lib --bins

.PHONY: run
run: ## the main job: local control plane, operator and the worked examples, until Ctrl-C
	$(MAKE) cluster-up
	$(CARGO) build -p cleanroom --bin cleanroom
	e2e/scripts/run.sh

.PHONY: operator
operator: ## (re)start the operator beside the running local control plane, as the chart's service account
	$(CARGO) build -p cleanroom --bin cleanroom
	e2e/scripts/operator.sh restart

.PHONY: e2e
e2e: ## end-to-end tests against the running local control plane (starts the operator under the chart's RBAC)
	$(CARGO) build -p cleanroom --bin cleanroom
	e2e/scripts/operator.sh restart
	status=0; KUBECONFIG=$(KUBECONFIG_E2E) $(CARGO) test -p cleanroom-e2e --tests -- --test-threads 4 || status=$$?; \
	  e2e/scripts/operator.sh stop; exit $$status

.PHONY: bench
bench: ## figures: the API server's floor, then 300 scenarios at once (SCENARIOS): to Provisioned as a ratio to the floor, to Ready, requests, RSS, CPU, etcd bytes, teardown after expiry; release builds
	$(MAKE) cluster-up
	$(CARGO) build --release -p cleanroom --bin cleanroom -p cleanroom-e2e --bin cleanroom-bench
	CLEANROOM_OPERATOR_BIN=$(CURDIR)/target/release/cleanroom e2e/scripts/operator.sh restart
	KUBECONFIG=$(KUBECONFIG_E2E) target/release/cleanroom-bench --scenarios $${SCENARIOS:-300}
	e2e/scripts/operator.sh stop
	$(MAKE) bench-agent

.PHONY: bench-agent
bench-agent: python-tools ## figures: agent desensitize on a generated CSV (BENCH_MB, default 1024), 1 and 2 threads, beside the csv-crate floor, DuckDB and pandas
	dir=$$(mktemp -d "$(CURDIR)/target/bench-agent.XXXXXX"); \
	  trap 'rm -rf "$$dir"' EXIT; \
	  py=python3; [ -x target/pyvenv/bin/python ] && py=target/pyvenv/bin/python; \
	  $(CARGO) run -q -p cleanroom-agent --release --example bench_desensitize -- $${BENCH_MB:-1024} "$$dir" && \
	  if ! $$py -c 'import duckdb' 2>/dev/null; then \
	    echo "duckdb: not installed, its comparison skipped (make python-tools)"; \
	  elif [ -x /usr/bin/time ]; then \
	    /usr/bin/time -f 'duckdb, 1 and 2 threads together: %e s wall, %U s user, %S s sys (CPU seconds: the steadier measure on a shared machine)' \
	      $$py e2e/bench/desensitize_duckdb.py "$$dir"; \
	  else $$py e2e/bench/desensitize_duckdb.py "$$dir"; fi && \
	  if ! $$py -c 'import pandas' 2>/dev/null; then \
	    echo "pandas: not installed, its comparison skipped (make python-tools)"; \
	  elif [ -x /usr/bin/time ]; then \
	    /usr/bin/time -f 'pandas: %e s wall, %U s user, %S s sys, %M KiB peak RSS' \
	      $$py e2e/bench/desensitize_pandas.py "$$dir/input.csv" "$$dir/pandas.csv"; \
	  else time $$py e2e/bench/desensitize_pandas.py "$$dir/input.csv" "$$dir/pandas.csv"; fi

.PHONY: bench-scan
bench-scan: python-tools ## figures: agent scan of a generated 1 GB CSV (BENCH_MB) against 1 M raw rows, k-anonymity on 1 M rows, table checks beside ACRO
	dir=$$(mktemp -d "$(CURDIR)/target/bench-scan.XXXXXX"); \
	  trap 'rm -rf "$$dir"' EXIT; \
	  py=python3; [ -x target/pyvenv/bin/python ] && py=target/pyvenv/bin/python; \
	  $(CARGO) run -q -p cleanroom-agent --release --example bench_scan -- $${BENCH_MB:-1024} "$$dir" && \
	  if ! $$py -c 'import acro' 2>/dev/null; then \
	    echo "acro: not installed, its comparison skipped (make python-tools)"; \
	  else $$py e2e/bench/tables_acro.py "$$dir"; fi

.PHONY: bench-airlock
bench-airlock: ## figures of the airlock: Submitted to checked for a 100 MB table (MB) and for 10 files, release throughput
	$(MAKE) cluster-up
	$(CARGO) build --release -p cleanroom --bin cleanroom -p cleanroom-e2e --bin cleanroom-airlock-bench
	CLEANROOM_OPERATOR_BIN=$(CURDIR)/target/release/cleanroom e2e/scripts/operator.sh restart
	KUBECONFIG=$(KUBECONFIG_E2E) target/release/cleanroom-airlock-bench --mb $${MB:-100}
	e2e/scripts/operator.sh stop

.PHONY: bench-audit
bench-audit: ## figures of the audit ledger: etcd bytes written per record, records/s, bytes per record, verify time for 100,000 records
	$(MAKE) cluster-up
	$(CARGO) build --release -p cleanroom --bin cleanroom -p cleanroom-e2e --bin cleanroom-audit-bench
	KUBECONFIG=$(KUBECONFIG_E2E) target/release/cleanroom-audit-bench --verify-records $${RECORDS:-100000}

.PHONY: static
static: ## both images' binaries, built static as their Dockerfiles do, and checked (CLEANROOM_STATIC_TARGET=gnu: fallback)
	e2e/scripts/static-build.sh

.PHONY: helm
helm: ## build helm from its Go module (cached)
	e2e/scripts/build-helm.sh >/dev/null

.PHONY: install-yaml
install-yaml: ## re-render manifests/install.yaml from charts/cleanroom (CI fails on drift)
	e2e/scripts/render-install.sh

.PHONY: crds
crds: ## regenerate crds/ from the Rust types, with the chart's copy and install.yaml
	$(CARGO) run -q -p cleanroom --bin cleanroom -- crd --out-dir crds
	cp crds/*.yaml charts/cleanroom/crds/
	e2e/scripts/render-install.sh

.PHONY: test
test: ## what CI runs: unit tests, then cluster up, e2e, cluster down (even on failure)
	$(MAKE) unit
	$(MAKE) cluster-up
	status=0; $(MAKE) e2e || status=$$?; $(MAKE) cluster-down; exit $$status

.PHONY: lint
lint: ## rustfmt, clippy with warnings as errors, shell syntax
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	bash -n e2e/scripts/*.sh
	"$$(e2e/scripts/build-helm.sh)/helm" lint --strict charts/cleanroom
