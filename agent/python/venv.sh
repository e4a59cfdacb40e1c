#!/usr/bin/env bash
# Create target/pyvenv with the pinned tools of requirements.txt (ACRO for the
# parity test, DuckDB and pandas for the benchmarks). Idempotent: nothing is
# done when the venv already holds these pins. Without Python, or when the
# package index cannot be reached, it says so and exits 0: the tests that need
# these tools then skip with a printed reason. Any other failure is an error.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=target/pyvenv
req=agent/python/requirements.txt
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$req" | cut -d' ' -f1)

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
if ! command -v python3 >/dev/null 2>&1; then
  echo "python tools: python3 not found; the ACRO parity test and DuckDB benchmark will be skipped"
  exit 0
fi
mkdir -p target
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" >"$log" 2>&1; then
  echo "$want" >"$stamp"
  echo "python tools: installed $(grep -E '^[a-z]' "$req" | tr '\n' ' ')into $venv"
  exit 0
fi
# Tell an unreachable index (soft) from a broken install (hard).
if ! timeout 60 "$venv/bin/python" -m pip download --quiet --no-deps --disable-pip-version-check \
    -d "$(mktemp -d)" "$(grep -E '^acro==' "$req")" >/dev/null 2>&1; then
  echo "python tools: the package index cannot be reached; the ACRO parity test and DuckDB benchmark will be skipped"
  exit 0
fi
cat "$log" >&2
echo "python tools: pip install -r $req failed" >&2
exit 1
