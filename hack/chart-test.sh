#!/usr/bin/env bash
# `make chart-test`: lint, render and validate charts/account-linker.
#
#  1. helm lint --strict with the default values and with every optional feature on;
#  2. values.schema.json rejects bad values (each case must make `helm template` fail);
#  3. the rendered manifests (CRDs included) pass `kubectl apply --dry-run=server --validate=strict`
#     against a real kube-apiserver of the pinned release, with the prometheus-operator CRDs
#     installed so ServiceMonitor and PrometheusRule are checked against their schemas too (and
#     ours before the starter LinkPolicy is);
#  4. the generated parts (Artifact Hub annotations in Chart.yaml, the values table of the chart's
#     README) are in sync with crds/, examples/, values.schema.json and values.yaml
#     (hack/chart-docs.py), and NOTES.txt prints the next commands (helm install --dry-run);
#  5. the Argo CD health check (Lua, run by gopher-lua as in Argo CD) and kstatus give the expected
#     verdict for every status fixture in hack/healthcheck/testdata.
set -euo pipefail
cd "$(dirname "$0")/.."

CHART=charts/account-linker
ALL=$CHART/ci/all-features-values.yaml
OUT=target/chart-test
HELM="$(bash hack/tools.sh helm)"
PROM_CRDS="$(bash hack/tools.sh prometheus-crds)"
ASSETS="$(bash hack/control-plane-assets.sh)"
PY="${PY:-$(bash hack/venv.sh)/bin/python}"
KUBE_VERSION="$(basename "$ASSETS" | sed -E 's/^k8s-(v[^-]+)-.*/\1/')"
[[ "$KUBE_VERSION" == v* ]] || KUBE_VERSION=v1.36.5
KUBECTL="$ASSETS/kubectl"
NS=account-linker

log() { echo "chart-test: $*" >&2; }
fail() { echo "chart-test: FAIL: $*" >&2; exit 1; }
rm -rf "$OUT"; mkdir -p "$OUT"

log "generated chart docs in sync (hack/chart-docs.py --check)"
"$PY" hack/chart-docs.py --check || fail "regenerate with: make chart-docs"

log "helm lint --strict"
"$HELM" lint --strict "$CHART" >/dev/null || "$HELM" lint --strict "$CHART"
"$HELM" lint --strict "$CHART" -f "$ALL" >/dev/null || "$HELM" lint --strict "$CHART" -f "$ALL"

render() { "$HELM" template al "$CHART" --namespace "$NS" --kube-version "$KUBE_VERSION" "$@"; }
render --include-crds > "$OUT/default.yaml"
render --include-crds -f "$ALL" > "$OUT/all-features.yaml"
render --set rbac.create=false --set serviceAccount.create=false --set serviceAccount.name=existing \
  --set podDisruptionBudget.enabled=false --set operator.leaderElection.enabled=false > "$OUT/minimal.yaml"

# What the defaults must contain: a test of the rendering, not only of its validity.
expect() { grep -qF -- "$2" "$OUT/$1" || fail "$1 lacks: $2"; }
expect default.yaml "kind: ClusterRole"
expect default.yaml "readOnlyRootFilesystem: true"
expect default.yaml "replicas: 2"
expect default.yaml "path: /readyz"
expect all-features.yaml "kind: ServiceMonitor"
expect all-features.yaml "resource.customizations.health.accountlinker.dev_MemberAccount"
# With watchNamespaces set, the only cluster-wide grant is the read of LinkPolicies and Namespaces.
expect all-features.yaml "$NS-tenancy"
for role in $(awk '/^kind: ClusterRole$/ { getline; getline; print $2 }' "$OUT/all-features.yaml"); do
  [[ "$role" == *-"$NS"-tenancy ]] || fail "watchNamespaces set but ClusterRole $role rendered"
done
if grep -qE "^kind: (Role|ClusterRole)$" "$OUT/minimal.yaml"; then fail "rbac.create=false still rendered RBAC"; fi

# The starter LinkPolicy: off by default; when on, built-in template and hub-only trust, the
# accounts and managed policies of the values and nothing else.
if grep -qE "^kind: LinkPolicy$" "$OUT/default.yaml"; then fail "the starter policy is rendered by default"; fi
render -f "$ALL" --show-only templates/starter-policy.yaml > "$OUT/starter.yaml"
starter_spec="$(sed -n '/^spec:/,$p' "$OUT/starter.yaml" | grep -v '^ *#')"
expected_spec='spec:
  namespaces: ["team-a"]
  accounts:
    ids: ["111122223333"]
    organizationalUnitIds: ["ou-ab12-cdefgh34"]
  bulkRegistrations:
    templateSources: [Builtin]
    trustedPrincipals: []
    managedPolicyArns: ["arn:aws:iam::aws:policy/ReadOnlyAccess"]
    stackSetNamePrefixes: []
    stackSetAdoption: false'
[[ "$starter_spec" == "$expected_spec" ]] || { diff <(echo "$expected_spec") <(echo "$starter_spec") >&2; fail "starter policy spec differs"; }

# Every `account-linker run` flag must be settable through the chart: its env var is rendered
# when every feature is on (a new flag without a chart value fails here).
flags="$(grep -oE 'env = "[A-Z_]+"' src/config.rs | cut -d'"' -f2)"
[[ -n "$flags" ]] || fail "found no flags in src/config.rs"
for var in $flags; do expect all-features.yaml "name: $var"; done

log "values.schema.json rejects bad values"
reject() {
  local what="$1"; shift
  if render "$@" > /dev/null 2> "$OUT/reject.err"; then fail "schema accepted $what"; fi
  grep -qiE "schema|required|values don't meet" "$OUT/reject.err" || { cat "$OUT/reject.err" >&2; fail "$what failed for another reason"; }
}
reject "an unknown top-level key" --set unknownKey=1
reject "an unknown operator flag" --set operator.stsBurst=3
reject "a bad log format" --set operator.logFormat=xml
reject "an unknown tenancy mode" --set operator.tenancy=off
reject "a negative replica count" --set replicaCount=-1
reject "a non-duration verify interval" --set operator.defaultVerifyInterval=often
reject "a zero STS budget" --set operator.stsRequestsPerSecond=0
reject "a cluster id that is not an AWS tag value" --set "operator.clusterId=prod cluster"
reject "an invalid namespace name" --set 'watchNamespaces[0]=Team_A'
reject "a string port" --set-string operator.metricsPort=http
reject "credentials Secret without keys" --set awsCredentials.create=true
reject "a starter policy for no namespace" --set starterPolicy.enabled=true
reject "a starter policy with trusted principals" --set starterPolicy.enabled=true \
  --set 'starterPolicy.namespaces={team-a}' --set 'starterPolicy.trustedPrincipals={*}'
reject "a starter policy account that is not an ID" --set starterPolicy.enabled=true \
  --set 'starterPolicy.namespaces={team-a}' --set-string 'starterPolicy.accounts.ids={1234}'

log "Argo CD health checks (gopher-lua) and kstatus against the status fixtures"
HEALTHCHECK="$(bash hack/tools.sh healthcheck)"
"$HEALTHCHECK" -lua $CHART/health/health.lua -fixtures hack/healthcheck/testdata > "$OUT/health.txt" \
  || { cat "$OUT/health.txt" >&2; fail "health checks disagree with hack/healthcheck/testdata/expected.yaml"; }
# A script that calls everything Healthy must be caught, or the fixtures prove nothing.
echo 'return { status = "Healthy", message = "" }' > "$OUT/always-healthy.lua"
if "$HEALTHCHECK" -lua "$OUT/always-healthy.lua" -fixtures hack/healthcheck/testdata > /dev/null; then
  fail "the fixtures accept a health check that always says Healthy"
fi

log "server-side validation against kube-apiserver $KUBE_VERSION"
STATE="$PWD/$OUT/env"
"$PY" hack/testenv.py up --background --no-emulator --assets "$ASSETS" --state-dir "$STATE" \
  --crds "$PROM_CRDS" >&2  # our CRDs are part of the rendered manifests: validated as creates
trap '"$PY" hack/testenv.py down --state-dir "$STATE" >&2 || true' EXIT
export KUBECONFIG
KUBECONFIG="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["kubeconfig"])' "$STATE/env.json")"
for ns in "$NS" team-a team-b account-linker-leader argocd; do
  "$KUBECTL" create namespace "$ns" >/dev/null
done
dry_run() {
  log "kubectl apply --dry-run=server --validate=strict: $1"
  "$KUBECTL" apply --dry-run=server --validate=strict -f "$OUT/$1.yaml" > "$OUT/$1.applied" 2>&1 \
    || { cat "$OUT/$1.applied" >&2; fail "$1.yaml rejected by the API server"; }
}
dry_run default
dry_run minimal
# The starter LinkPolicy (in all-features) is an object of our CRDs: they are installed first.
"$KUBECTL" apply --server-side -f $CHART/crds/ >/dev/null
"$KUBECTL" wait --for=condition=Established crd --all --timeout=60s >/dev/null
dry_run all-features
# NOTES.txt, as `helm install` prints it (a client-side dry run still asks the API server for its
# version and APIs): the next commands for both the default and the all-features values.
notes() { "$HELM" install al "$CHART" --namespace "$NS" --dry-run=client "$@" | sed -n '/^NOTES:/,$p'; }
notes > "$OUT/notes-default.txt"
notes -f "$ALL" > "$OUT/notes-all.txt"
expect notes-default.txt "kubectl -n $NS rollout status deploy/al-account-linker"
expect notes-default.txt "created no LinkPolicy"
expect notes-default.txt "kubectl get accountlinker -n default"
expect notes-all.txt "kubectl get linkpolicy al-account-linker-starter"
expect notes-all.txt "kubectl get accountlinker -n team-a"
# A non-strict-valid manifest must fail the same way, or the check above proves nothing.
sed 's/^  replicas: 2$/  replicas: 2\n  replicaz: 2/' "$OUT/default.yaml" > "$OUT/broken.yaml"
if "$KUBECTL" apply --dry-run=server --validate=strict -f "$OUT/broken.yaml" > /dev/null 2>&1; then
  fail "the API server accepted an unknown Deployment field: validation is not strict"
fi
log "ok"
