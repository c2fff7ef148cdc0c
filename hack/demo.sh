#!/usr/bin/env bash
# The `make demo` tour, run with target/dev-env/env.sh sourced:
#   1. an administrator creates two OUs, a member account and five sandbox accounts in the
#      emulator's organization
#      (Organizations), and the cluster administrator applies the LinkPolicies that let the demo
#      namespace use them (examples/linkpolicy.yaml; tenancy is enforced);
#   2. the operator runs against the local control plane and the emulator;
#   3. a LinkedAccount for the new account is applied; the operator generates its ExternalId;
#   4. the administrator deploys the role with that ExternalId (IAM), as the onboarding guide says;
#   5. the LinkedAccount becomes Ready;
#   6. the OU of five sandbox accounts is registered with one BulkRegistration (one StackSet,
#      one operation), and its five child LinkedAccounts become Ready;
#   7. a MemberAccount creates a new account through Organizations (exactly once), moves it
#      into the workloads OU and links its access role; kubectl shows all three kinds Ready.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${KUBEBUILDER_ASSETS:?source target/dev-env/env.sh first}"
kubectl="$KUBEBUILDER_ASSETS/kubectl"
py="$(bash hack/venv.sh)/bin/python"
state=target/dev-env
ns=demo
# Every step says how long the tour has run, so no minute passes in silence.
began=$SECONDS
say() { printf '\n\033[1m== [%dm%02ds] %s\033[0m\n' $(((SECONDS - began) / 60)) $(((SECONDS - began) % 60)) "$*"; }

say "Building the operator (the first time about 4 minutes on 2 cores: cargo shows each crate)"
# Not --quiet: cargo's progress bar on a terminal, one `Compiling` line per crate otherwise.
cargo build --locked
bin="${CARGO_TARGET_DIR:-target}/debug/account-linker"
"$kubectl" create namespace "$ns" --dry-run=client -o yaml | "$kubectl" apply -f - >/dev/null

say "Administrator: a member account in a workloads OU, five sandbox accounts in a sandboxes OU"
"$py" hack/aws-admin.py ensure-org >/dev/null
ou_id() { "$py" hack/aws-admin.py create-ou --name "$1" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["ouId"])'; }
ou=$(ou_id workloads)
sandboxes=$(ou_id sandboxes)
account=$("$py" hack/aws-admin.py create-account --name payments-prod --email payments-prod@example.com --parent "$ou" \
  | "$py" -c 'import json,sys; print(json.load(sys.stdin)["accountId"])')
echo "account $account in $ou"
# Created before any object is evaluated: the operator reads a permitted OU's accounts once and
# re-reads it on a miss at most once a minute (docs/linkpolicy.md).
"$py" hack/aws-admin.py create-accounts --prefix sandbox --count 5 --parent "$sandboxes" \
  | "$py" -c 'import json,sys; print("accounts", " ".join(json.load(sys.stdin)["accountIds"]))'
echo "in $sandboxes"

say "Cluster administrator: LinkPolicies for namespace $ns (examples/linkpolicy.yaml)"
sed -e "s/ou-ab12-workload1/$ou/g" -e "s/ou-ab12-sandbox01/$sandboxes/g" examples/linkpolicy.yaml \
  | "$kubectl" apply --server-side -f -

say "Starting the operator (log: $state/operator.log)"
if [[ -f "$state/operator.pid" ]] && kill -0 "$(cat "$state/operator.pid")" 2>/dev/null; then
  echo "already running (pid $(cat "$state/operator.pid"))"
else
  nohup "$bin" run --watch-namespace "$ns" --tenancy enforced --leader-elect=false \
    --metrics-addr 127.0.0.1:0 --log-format text --access-denied-grace 5m \
    --stackset-poll-interval 1s --bulk-resync-interval 30s --account-poll-interval 1s \
    >"$state/operator.log" 2>&1 &
  echo $! >"$state/operator.pid"
fi

say "Applying a LinkedAccount for $account"
sed "s/\"123456789012\"/\"$account\"/" examples/linkedaccount.yaml | "$kubectl" apply --server-side -n "$ns" -f -
secret=""
for _ in $(seq 60); do
  secret=$("$kubectl" get lacct payments-prod -n "$ns" -o jsonpath='{.status.externalIdSecret}' 2>/dev/null || true)
  [[ -n "$secret" ]] && break
  sleep 1
done
[[ -n "$secret" ]] || { echo "the operator did not generate an ExternalId; see $state/operator.log"; exit 1; }
echo "the operator generated the ExternalId into Secret $secret"
"$kubectl" get lacct -n "$ns"

say "Administrator: deploy the role with that ExternalId"
external_id=$("$kubectl" get secret "$secret" -n "$ns" -o jsonpath='{.data.externalId}' | base64 -d)
"$py" hack/aws-admin.py put-role --account "$account" --external-id "$external_id" >/dev/null
echo "role AccountLinkerAccess created in $account, trusting the hub with the ExternalId condition"

say "Waiting for the LinkedAccount to become Ready"
"$kubectl" wait --for=condition=Ready lacct/payments-prod -n "$ns" --timeout=120s

say "Administrator: StackSets trusted access on"
"$py" hack/aws-admin.py activate-trusted-access >/dev/null

say "Applying a BulkRegistration over $sandboxes"
"$kubectl" apply --server-side -n "$ns" -f - <<YAML
apiVersion: accountlinker.dev/v1alpha1
kind: BulkRegistration
metadata:
  name: sandboxes
spec:
  stackSet:
    permissionModel: ServiceManaged
  template:
    builtin:
      managedPolicyArns: ["arn:aws:iam::aws:policy/ReadOnlyAccess"]
  targets:
    organizationalUnitIds: ["$sandboxes"]
  autoDeployment: {enabled: true}
  regions: [us-east-1]
YAML
"$kubectl" wait --for=condition=Ready bulkreg/sandboxes -n "$ns" --timeout=180s

say "Applying a MemberAccount: a new account in $ou, created through Organizations"
"$kubectl" apply --server-side -n "$ns" -f - <<YAML
apiVersion: accountlinker.dev/v1alpha1
kind: MemberAccount
metadata:
  name: analytics-dev
spec:
  accountName: analytics-dev
  email: analytics-dev@example.com
  parentId: "$ou"
  tags: {team: analytics}
YAML
"$kubectl" wait --for=condition=Ready macct/analytics-dev -n "$ns" --timeout=180s
echo
echo "\$ kubectl get accountlinker -n $ns"
"$kubectl" get accountlinker -n "$ns"
echo
echo "\$ kubectl describe lacct payments-prod -n $ns   (status and events)"
"$kubectl" describe lacct payments-prod -n "$ns" | sed -n '/^Status:/,$p'

cat <<TXT

The control plane, the emulator and the operator keep running. To poke at them:
  source $state/env.sh                                      # the pinned kubectl on PATH
  kubectl get lacct -n $ns -w
  kubectl get bulkreg sandboxes -n $ns -o yaml              # summary, operations
  kubectl describe macct analytics-dev -n $ns               # request ID, account, events
  \$ACCOUNT_LINKER_PYTHON hack/aws-admin.py delete-role --account $account
                                                            # the next verification fails (AccessDenied)
  \$ACCOUNT_LINKER_PYTHON hack/aws-admin.py create-accounts --prefix sandbox --count 6 --parent $sandboxes
                                                            # a sixth account: auto-deployed, then linked once
                                                            # the operator re-reads the OU (docs/linkpolicy.md)
  curl -s \$EMULATOR_CONTROL_URL/requests                     # AWS calls the operator made
Stop everything with: make dev-env-down
TXT
