#!/usr/bin/env bash
# Test tools, pinned here and only here, built or fetched (Go module proxy, crates.io) once into a
# version-keyed cache outside the repository. Prints the path of the requested tool on stdout.
#
#   hack/tools.sh helm              helm binary
#   hack/tools.sh prometheus-crds   folder with the prometheus-operator CRDs (ServiceMonitor, ...)
#   hack/tools.sh healthcheck       hack/healthcheck binary (Argo CD Lua + kstatus evaluator)
#   hack/tools.sh cargo-deny        cargo-deny binary, built from crates.io (deny.toml)
set -euo pipefail

HELM_VERSION=v3.22.0
PROMETHEUS_OPERATOR_VERSION=v0.85.0
CARGO_DENY_VERSION=0.20.2

CACHE_ROOT="${ACCOUNT_LINKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/account-linker}/tools"
HERE="$(cd "$(dirname "$0")" && pwd)"
log() { echo "tools: $*" >&2; }
need_go() { command -v go >/dev/null || { log "Go is required to build $1"; exit 1; }; }

# Installs into a private folder and renames it into place, so an interrupted build never
# leaves a half-filled cache entry that later runs would trust.
install_atomically() {
  local dest="$1"; shift
  local work
  mkdir -p "$CACHE_ROOT"
  work="$(mktemp -d "$CACHE_ROOT/build.XXXXXX")"
  trap 'rm -rf "$work"' RETURN
  "$@" "$work"
  mv -T "$work" "$dest" 2>/dev/null || rm -rf "$work"  # a concurrent run won: keep its copy
}

build_helm() { GOBIN="$1" GOFLAGS=-p=1 nice go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2; }

fetch_prometheus_crds() {
  local dir
  dir="$(cd "$1" && GOFLAGS=-mod=mod go mod download -json \
    "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  cp "$dir"/example/prometheus-operator-crd/monitoring.coreos.com_{servicemonitors,prometheusrules}.yaml "$1/"
  chmod u+w "$1"/*.yaml
}

# cargo-deny's release profile asks for fat LTO and one codegen unit: several extra minutes of
# build for a tool that runs for seconds. Its own lock file (--locked), a build folder of its own
# (never the project's target/), removed once the binary is in place.
build_cargo_deny() {
  CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_TARGET_DIR="$1/build" \
    nice cargo install --locked --quiet --root "$1" --version "$CARGO_DENY_VERSION" cargo-deny >&2
  rm -rf "$1/build" "$1/.crates.toml" "$1/.crates2.json"
}

build_healthcheck() { (cd "$HERE/healthcheck" && GOFLAGS=-p=1 nice go build -o "$1/healthcheck" .) >&2; }

case "${1:-}" in
  helm)
    dest="$CACHE_ROOT/helm-$HELM_VERSION"
    [[ -x "$dest/helm" ]] || { need_go helm; log "building helm $HELM_VERSION (once)"; install_atomically "$dest" build_helm; }
    echo "$dest/helm" ;;
  prometheus-crds)
    dest="$CACHE_ROOT/prometheus-operator-crds-$PROMETHEUS_OPERATOR_VERSION"
    [[ -f "$dest/monitoring.coreos.com_prometheusrules.yaml" ]] || { need_go prometheus-crds; install_atomically "$dest" fetch_prometheus_crds; }
    echo "$dest" ;;
  healthcheck)
    # Keyed by the content of its sources, so editing hack/healthcheck rebuilds it.
    key="$(cat "$HERE"/healthcheck/go.mod "$HERE"/healthcheck/go.sum "$HERE"/healthcheck/*.go | sha256sum | cut -c1-16)"
    dest="$CACHE_ROOT/healthcheck-$key"
    [[ -x "$dest/healthcheck" ]] || { need_go healthcheck; log "building hack/healthcheck (once)"; install_atomically "$dest" build_healthcheck; }
    echo "$dest/healthcheck" ;;
  cargo-deny)
    dest="$CACHE_ROOT/cargo-deny-$CARGO_DENY_VERSION"
    [[ -x "$dest/bin/cargo-deny" ]] || { log "building cargo-deny $CARGO_DENY_VERSION (once, a few minutes)"; install_atomically "$dest" build_cargo_deny; }
    echo "$dest/bin/cargo-deny" ;;
  *) echo "usage: $0 helm|prometheus-crds|healthcheck|cargo-deny" >&2; exit 2 ;;
esac
