#!/usr/bin/env python3
"""Onboarding benchmark for one BulkRegistration, against the dev environment (`make dev-env`,
then `source target/dev-env/env.sh`).

Creates N member accounts in a new OU, turns StackSets trusted access on, sets the emulator's
operation latency, starts the operator and applies one ServiceManaged BulkRegistration over the
OU. Measures: time until the registration is Ready (every stack instance current and every
child LinkedAccount verified), StackSet operations, CloudFormation and STS calls, and the
operator's resident memory. Prints one JSON line.

  python hack/bench_bulkregistration.py --accounts 1000 --sts-rps 100
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

REPO = Path(__file__).resolve().parent.parent


def control(method, path, body=None):
    req = urllib.request.Request(
        os.environ["EMULATOR_CONTROL_URL"] + path, method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        text = resp.read().decode()
        return json.loads(text) if text else None


def kubectl(*args, input=None):
    return subprocess.run(
        [str(Path(os.environ["KUBEBUILDER_ASSETS"]) / "kubectl"), *args],
        check=True, capture_output=True, text=True, input=input,
    ).stdout


def admin(*args):
    out = subprocess.run(
        [sys.executable, str(REPO / "hack/aws-admin.py"), *args], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out)


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--sts-rps", type=int, default=100)
    parser.add_argument("--max-concurrent-count", type=int, default=100)
    parser.add_argument("--namespace", default="bench-bulk")
    args = parser.parse_args()

    stamp = int(time.time())
    started = time.time()
    admin("ensure-org")
    admin("activate-trusted-access")
    ou = admin("create-ou", "--name", f"bench-{stamp}")["ouId"]
    accounts = admin("create-accounts", "--prefix", f"bench-{stamp}", "--count", str(args.accounts),
                     "--parent", ou)["accountIds"]
    setup_seconds = time.time() - started
    control("PUT", "/stacksets/timing", {"base_seconds": 0.5, "seconds_per_wave": 0.2})

    ns = args.namespace
    kubectl("create", "namespace", ns)
    name = f"bench-{stamp}"
    bulk = {
        "apiVersion": "accountlinker.dev/v1alpha1", "kind": "BulkRegistration",
        "metadata": {"name": name},
        "spec": {
            "stackSet": {"name": name, "permissionModel": "ServiceManaged"},
            "template": {"builtin": {}},
            "targets": {"organizationalUnitIds": [ou]},
            "regions": ["us-east-1"],
            "operationPreferences": {"maxConcurrentCount": args.max_concurrent_count,
                                     "failureToleranceCount": 10,
                                     "concurrencyMode": "SoftFailureTolerance"},
        },
    }
    control("DELETE", "/requests")
    log = open(tempfile.mktemp(prefix="bench-bulk-operator-", suffix=".log"), "w")
    operator = subprocess.Popen(
        [str(REPO / "target/debug/account-linker"), "run", "--watch-namespace", ns, "--leader-elect=false",
         "--metrics-addr", "127.0.0.1:0", "--sts-requests-per-second", str(args.sts_rps),
         "--sts-concurrency", "32", "--max-concurrent-reconciles", "32", "--stackset-poll-interval", "1s",
         "--log-format", "text", "--log-level", "warn"],
        stdout=log, stderr=log,
    )
    try:
        time.sleep(1)
        applied = time.time()
        kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=json.dumps(bulk))
        peak = 0
        first_deployed = None
        while True:
            peak = max(peak, rss_kib(operator.pid))
            obj = json.loads(kubectl("get", "bulkreg", name, "-n", ns, "-o", "json"))
            status = obj.get("status", {})
            summary = status.get("summary", {})
            if first_deployed is None and summary.get("current") == args.accounts:
                first_deployed = time.time() - applied
            ready = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
            if ready and ready[0]["status"] == "True":
                break
            if time.time() - applied > 900:
                raise SystemExit(f"not Ready after 900 s: {summary}; log: {log.name}")
            time.sleep(0.5)
        all_ready = time.time() - applied
        counts = control("GET", "/requests")["counts"]
        operations = [op for op in control("GET", "/stacksets/operations")["operations"]
                      if op["stack_set_name"] == name]
        time.sleep(5)
        idle_rss = rss_kib(operator.pid)
    finally:
        operator.terminate()
        operator.wait(30)
    print(json.dumps({
        "accounts": args.accounts,
        "sts_requests_per_second_budget": args.sts_rps,
        "max_concurrent_count": args.max_concurrent_count,
        "seconds_until_all_deployed": round(first_deployed or all_ready, 1),
        "seconds_until_ready": round(all_ready, 1),
        "stackset_operations": [f"{op['action']} {op['status']} ({len(op.get('accounts', []))} accounts)"
                                for op in operations],
        "cloudformation_calls": {k.split(":", 1)[1]: v for k, v in sorted(counts.items())
                                 if k.startswith("cloudformation:")},
        "assume_role_calls": counts.get("sts:AssumeRole", 0),
        "operator_peak_rss_mib": round(peak / 1024, 1),
        "operator_idle_rss_mib": round(idle_rss / 1024, 1),
        "emulator_setup_seconds": round(setup_seconds, 1),
    }))


if __name__ == "__main__":
    main()
