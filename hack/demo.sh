#!/usr/bin/env bash
# The `make demo` tour, run with target/dev-env/env.sh sourced: applies the examples into the
# `demo` namespace and shows what the API server reports about them.
set -euo pipefail
cd "$(dirname "$0")/.."
kubectl="${KUBEBUILDER_ASSETS:?source target/dev-env/env.sh first}/kubectl"
ns=demo

"$kubectl" create namespace "$ns" --dry-run=client -o yaml | "$kubectl" apply -f - >/dev/null
for f in examples/*.yaml; do
  "$kubectl" apply --server-side -n "$ns" -f "$f"
done
echo
echo "\$ kubectl get accountlinker -n $ns"
"$kubectl" get accountlinker -n "$ns"
cat <<TXT

The local control plane and AWS emulator keep running. To poke at them:
  source target/dev-env/env.sh
  \$KUBEBUILDER_ASSETS/kubectl get accountlinker -n $ns
  \$KUBEBUILDER_ASSETS/kubectl explain linkedaccounts.spec
  curl -s \$EMULATOR_CONTROL_URL/requests
Stop everything with: make dev-env-down
TXT
