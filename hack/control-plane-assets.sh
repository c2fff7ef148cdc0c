#!/usr/bin/env bash
# Provides etcd, kube-apiserver, kube-controller-manager and kubectl at the pinned release.
#
# Order of preference:
#   1. $KUBEBUILDER_ASSETS, when it holds all four binaries (the envtest convention);
#   2. the version-keyed cache folder, when an earlier run built them;
#   3. a build from the Go module proxy into that cache folder.
#
# Prints the folder holding the binaries on stdout; progress goes to stderr.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.36.5}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.8}"
CACHE_ROOT="${ACCOUNT_LINKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/account-linker}"
DEST="$CACHE_ROOT/control-plane/k8s-${K8S_VERSION}-etcd-${ETCD_VERSION}"
BINARIES=(etcd kube-apiserver kube-controller-manager kubectl)

log() { echo "control-plane-assets: $*" >&2; }

have_all() {
  local dir="$1" b
  for b in "${BINARIES[@]}"; do [[ -x "$dir/$b" ]] || return 1; done
}

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]] && have_all "$KUBEBUILDER_ASSETS"; then
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi
if have_all "$DEST"; then
  echo "$DEST"
  exit 0
fi

command -v go >/dev/null || { log "Go is required to build the control plane (or set KUBEBUILDER_ASSETS)"; exit 1; }

mkdir -p "$CACHE_ROOT/control-plane"
# Build in a private work folder and move binaries into place only when all succeeded,
# so an interrupted build never leaves a half-filled cache that later runs would trust.
WORK="$(mktemp -d "$CACHE_ROOT/control-plane/build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
export GOFLAGS="-mod=mod -buildvcs=false"
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
export CGO_ENABLED=0
# The checksum database does not answer for k8s.io/kubernetes release modules (404 through the
# proxy); everything else it pulls in is still verified against sum.golang.org.
export GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}k8s.io/kubernetes"

# --- Kubernetes -------------------------------------------------------------------------
# k8s.io/kubernetes points its staging modules at ./staging with replace directives, which a
# consuming module does not inherit; pin each staging module to the matching v0.X.Y instead.
staging_version="v0.${K8S_VERSION#v1.}"
mkdir -p "$WORK/k8s"
cd "$WORK/k8s"
go mod init accountlinker.dev/control-plane-build >/dev/null 2>&1
if ! go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" >"$WORK/k8s-module.json"; then
  log "cannot download k8s.io/kubernetes@${K8S_VERSION}:"; cat "$WORK/k8s-module.json" >&2; exit 1
fi
k8s_mod="$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p' "$WORK/k8s-module.json")"
{
  echo "require k8s.io/kubernetes ${K8S_VERSION}"
  echo "replace ("
  grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$k8s_mod" \
    | awk -v v="$staging_version" '{print "\t" $1 " => " $1 " " v}'
  echo ")"
} >>go.mod
cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
log "resolving Kubernetes ${K8S_VERSION} modules"
go mod tidy >/dev/null 2>&1 || go mod tidy
resolved="$(go list -m -f '{{.Version}}' k8s.io/kubernetes)"
[[ "$resolved" == "$K8S_VERSION" ]] || { log "resolved k8s.io/kubernetes $resolved, wanted $K8S_VERSION"; exit 1; }

build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
version_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  version_ldflags+=" -X ${pkg}.gitVersion=${K8S_VERSION}"
  version_ldflags+=" -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor}"
  version_ldflags+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=${build_date}"
done
mkdir -p "$WORK/bin"
log "building kube-apiserver, kube-controller-manager and kubectl ${K8S_VERSION} (several minutes on a cold cache)"
go build -trimpath -ldflags "-s -w ${version_ldflags}" -o "$WORK/bin/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kubectl

# --- etcd -------------------------------------------------------------------------------
mkdir -p "$WORK/etcd"
cd "$WORK/etcd"
go mod init accountlinker.dev/etcd-build >/dev/null 2>&1
cat >tools.go <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
go get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}" >/dev/null 2>&1
go mod tidy >/dev/null
log "building etcd ${ETCD_VERSION}"
go build -trimpath -ldflags "-s -w" -o "$WORK/bin/etcd" go.etcd.io/etcd/server/v3

mkdir -p "$DEST"
for b in "${BINARIES[@]}"; do mv "$WORK/bin/$b" "$DEST/$b"; done
log "control plane binaries ready in $DEST"
echo "$DEST"
