#!/usr/bin/env python3
"""Onboarding benchmark for LinkedAccounts, against the dev environment (`make dev-env`, then
`source target/dev-env/env.sh`).

Creates N member accounts with the hub's role in each (one shared ExternalId), starts the
operator, applies N LinkedAccounts at once and measures: time until all are Ready, STS calls
made, and the operator's resident memory. Prints one JSON line.

  python hack/bench_linkedaccounts.py --accounts 200 --sts-rps 50
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import boto3

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "hack"))
EXTERNAL_ID = "bench-shared-external-id-0001"


def control(method, path, body=None):
    req = urllib.request.Request(
        os.environ["EMULATOR_CONTROL_URL"] + path, method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        text = resp.read().decode()
        return json.loads(text) if text else None


def kubectl(*args, input=None):
    return subprocess.run(
        [str(Path(os.environ["KUBEBUILDER_ASSETS"]) / "kubectl"), *args],
        check=True, capture_output=True, text=True, input=input,
    ).stdout


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--sts-rps", type=int, default=50)
    parser.add_argument("--namespace", default="bench")
    args = parser.parse_args()

    org = boto3.client("organizations", region_name="us-east-1")
    sts = boto3.client("sts", region_name="us-east-1")
    try:
        org.create_organization(FeatureSet="ALL")
    except org.exceptions.AlreadyInOrganizationException:
        pass
    started = time.time()
    accounts = []
    for i in range(args.accounts):
        status = org.create_account(AccountName=f"bench-{i}", Email=f"bench-{i}-{int(started)}@example.com")["CreateAccountStatus"]
        while status["State"] == "IN_PROGRESS":
            status = org.describe_create_account_status(CreateAccountRequestId=status["Id"])["CreateAccountStatus"]
        account = status["AccountId"]
        creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole", RoleSessionName="bench")["Credentials"]
        iam = boto3.client("iam", region_name="us-east-1", aws_access_key_id=creds["AccessKeyId"],
                           aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"])
        iam.create_role(RoleName="AccountLinkerAccess", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                           "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"sts:ExternalId": EXTERNAL_ID}}}],
        }))
        accounts.append(account)
    setup_seconds = time.time() - started

    ns = args.namespace
    kubectl("create", "namespace", ns)
    kubectl("create", "secret", "generic", "xid", "-n", ns, f"--from-literal=externalId={EXTERNAL_ID}")
    kubectl("label", "secret", "xid", "-n", ns, "accountlinker.dev/external-id=true")
    docs = [
        {"apiVersion": "accountlinker.dev/v1alpha1", "kind": "LinkedAccount",
         "metadata": {"name": f"acct-{a}"},
         "spec": {"accountId": a, "externalId": {"secretRef": {"name": "xid", "key": "externalId"}}}}
        for a in accounts
    ]
    control("DELETE", "/requests")
    log = open(tempfile.mktemp(prefix="bench-operator-", suffix=".log"), "w")
    operator = subprocess.Popen(
        [str(REPO / "target/debug/account-linker"), "run", "--watch-namespace", ns, "--leader-elect=false",
         "--metrics-addr", "127.0.0.1:0", "--sts-requests-per-second", str(args.sts_rps),
         "--sts-concurrency", "32", "--max-concurrent-reconciles", "32", "--log-format", "text", "--log-level", "warn"],
        stdout=log, stderr=log,
    )
    try:
        time.sleep(1)
        applied = time.time()
        kubectl("apply", "--server-side", "-n", ns, "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs))
        peak = 0
        while True:
            peak = max(peak, rss_kib(operator.pid))
            out = kubectl("get", "lacct", "-n", ns, "-o",
                          "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}")
            ready = sum(1 for line in out.splitlines() if line == "True")
            if ready == args.accounts:
                break
            if time.time() - applied > 900:
                raise SystemExit(f"only {ready}/{args.accounts} Ready after 900 s; log: {log.name}")
            time.sleep(0.5)
        all_ready = time.time() - applied
        counts = control("GET", "/requests")["counts"]
        time.sleep(5)
        idle_rss = rss_kib(operator.pid)
    finally:
        operator.terminate()
        operator.wait(30)
    print(json.dumps({
        "accounts": args.accounts,
        "sts_requests_per_second_budget": args.sts_rps,
        "seconds_until_all_ready": round(all_ready, 1),
        "assume_role_calls": counts.get("sts:AssumeRole", 0),
        "get_caller_identity_calls": counts.get("sts:GetCallerIdentity", 0),
        "operator_peak_rss_mib": round(peak / 1024, 1),
        "operator_idle_rss_mib": round(idle_rss / 1024, 1),
        "emulator_setup_seconds": round(setup_seconds, 1),
    }))


if __name__ == "__main__":
    main()
