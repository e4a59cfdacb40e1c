# Shared helpers for the e2e scripts. Sourced, never run.

# Paths every script agrees on. The checkout is never written outside e2e/.cluster/.
E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO_DIR=$(cd "$E2E_DIR/.." && pwd)
CLUSTER_DIR=${CLEANROOM_CLUSTER_DIR:-$E2E_DIR/.cluster}
# Built binaries live outside the checkout, keyed by what they are built from,
# so a fresh clone (CI) reuses a warm build.
CACHE_DIR=${CLEANROOM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cleanroom}

say() { printf '%s\n' "cleanroom-e2e: $*" >&2; }
die() { say "error: $*"; exit 1; }

# need TOOL [HINT]: a missing tool is one line naming it, not a stack of errors later.
need() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' is not installed${2:+ ($2)}"
}
