#!/usr/bin/env python3
"""Fails unless every run JSON in a folder carries every figure the report needs, and the report
renders: `make bench-smoke` runs it, so the harness cannot rot silently."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import report  # noqa: E402

WINDOW = ["seconds", "aws_calls", "aws_calls_total", "stackset_operations", "stackset_operation_count",
          "kube_writes", "kube_writes_total", "apiserver_requests_total", "component_cpu_seconds"]
OPERATOR = WINDOW + ["registration_reconciles", "operator_cpu_seconds", "operator_peak_rss_mib", "operator_rss_mib"]
REQUIRED = {
    "onboarding_service_managed": OPERATOR + ["wall_seconds", "deployed_seconds", "floor"],
    "onboarding_self_managed": OPERATOR + ["wall_seconds", "deployed_seconds", "floor"],
    "per_account_operations": WINDOW + ["accounts", "seconds_per_account"],
    "console_wizard": WINDOW + ["accounts", "seconds_per_account"],
    "steady_state": OPERATOR + ["sts_calls_per_account_per_interval", "cloudformation_reads_per_hour",
                                "organizations_reads_per_hour", "kube_writes_per_account_per_interval",
                                "registration_reconciles_per_hour", "idle_cpu_percent"],
    "linkedaccount_latency": OPERATOR + ["objects", "p50_seconds", "p99_seconds"],
}
TOP = ["n", "machine", "versions", "latency_model", "load_average_before", "load_average_after", "command",
       "setup_seconds", "sts_requests_per_second", "max_concurrent_count"]


def problems(run: dict) -> list[str]:
    out = [f"missing {k}" for k in TOP if k not in run]
    sc = run.get("scenarios", {})
    for scenario, keys in REQUIRED.items():
        s = sc.get(scenario)
        if s is None:
            out.append(f"missing scenario {scenario}")
            continue
        out += [f"{scenario}: missing {k}" for k in keys if k not in s]
    for step in ("add", "remove", "template"):
        s = sc.get("change_at_scale", {}).get(step)
        if s is None:
            out.append(f"change_at_scale: missing {step}")
        else:
            out += [f"change_at_scale.{step}: missing {k}" for k in OPERATOR + ["wall_seconds"] if k not in s]
    n = run.get("n", 0)
    # Figures that must be non-zero whenever the scenario really ran.
    if sc.get("onboarding_self_managed", {}).get("aws_calls", {}).get("sts:AssumeRole", 0) < n:
        out.append("onboarding_self_managed: fewer AssumeRole calls than accounts")
    if not sc.get("onboarding_service_managed", {}).get("kube_writes_total"):
        out.append("onboarding_service_managed: no Kubernetes writes counted (audit log not read?)")
    if not sc.get("onboarding_service_managed", {}).get("registration_reconciles"):
        out.append("onboarding_service_managed: no registration passes counted (operator metrics not read?)")
    if sc.get("per_account_operations", {}).get("stackset_operation_count") != sc.get("per_account_operations", {}).get("accounts"):
        out.append("per_account_operations: operations counted differ from the accounts run")
    if sc.get("linkedaccount_latency", {}).get("objects", 0) < min(100, n):
        out.append("linkedaccount_latency: fewer objects than asked")
    return out


def main() -> None:
    folder = Path(sys.argv[1])
    runs = report.load(folder)
    if not runs:
        sys.exit(f"bench check: no bench-n*.json in {folder}")
    failed = [f"N={r.get('n')}: {p}" for r in runs for p in problems(r)]
    if failed:
        sys.exit("bench check failed:\n  " + "\n  ".join(failed))
    target = folder / "check-report.md"
    report.render(folder, target)
    if "not reached" not in target.read_text() and "reached" not in target.read_text():
        sys.exit("bench check: the report has no targets table")
    print(f"bench check: {len(runs)} run(s) in {folder} carry every figure; report renders ({target})")


if __name__ == "__main__":
    main()
