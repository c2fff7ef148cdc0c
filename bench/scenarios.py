"""The scenarios of one size N, in the order run.py runs them (they share the fleet)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from env import Environment, Operator, log
from fleet import Fleet, trust
from kube import KubeError, condition, core_path, ns_path
from measure import Window, floors, percentile, waves

SM_ROLE, SL_ROLE, LINK_ROLE = "AccountLinkerAccess", "AccountLinkerAccessSL", "BenchLinkRole"
LINK_EXTERNAL_ID = "bench-link-external-id-0001"


@dataclass
class Settings:
    binary: Path
    sts_rps: int
    max_concurrent: int
    timing: dict[str, float]
    verify_interval_s: int
    steady_intervals: int
    link_objects: int
    timeout: float
    logs: Path


def namespace(env: Environment, name: str) -> None:
    try:
        env.kube.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    except KubeError as err:
        if err.status != 409:
            raise


def registration(name: str, model: str, targets: dict[str, Any], role: str, s: Settings) -> dict[str, Any]:
    return {
        "apiVersion": "accountlinker.dev/v1alpha1", "kind": "BulkRegistration",
        "metadata": {"name": name},
        "spec": {
            "stackSet": {"name": name, "permissionModel": model},
            "template": {"builtin": {"roleName": role}},
            "targets": targets,
            "regions": ["us-east-1"],
            "operationPreferences": {"maxConcurrentCount": s.max_concurrent, "failureToleranceCount": 10,
                                     "concurrencyMode": "SoftFailureTolerance"},
            "linkTemplate": {"verifyInterval": f"{s.verify_interval_s}s"},
        },
    }


def wait_registration(env: Environment, ns: str, name: str, expected: int, s: Settings, operator: Operator,
                      template_hash: str | None = None) -> dict[str, Any]:
    """Until Ready with `expected` targets all current and assumable, nothing in flight (and, if
    given, a template hash other than `template_hash`). Samples RSS on the way."""
    path = ns_path(ns, "bulkregistrations", name)
    started = time.monotonic()
    deployed = None
    while True:
        obj = env.kube.get(path)
        status = obj.get("status") or {}
        summary = status.get("summary") or {}
        if deployed is None and summary.get("targets") == expected and summary.get("current") == expected:
            deployed = time.monotonic() - started
        ready = condition(obj, "Ready")
        if (ready and ready["status"] == "True" and summary.get("targets") == expected
                and summary.get("current") == expected and summary.get("assumable") == expected
                and not status.get("operation")
                and status.get("observedGeneration") == obj["metadata"]["generation"]
                and (template_hash is None or status.get("templateHash") not in (None, template_hash))):
            return {"ready_seconds": round(time.monotonic() - started, 2),
                    "deployed_seconds": round(deployed if deployed is not None else time.monotonic() - started, 2),
                    "summary": summary, "template_hash": status.get("templateHash")}
        if operator.proc.poll() is not None:
            raise SystemExit(f"operator exited; log: {operator.log_path}")
        if time.monotonic() - started > s.timeout:
            raise SystemExit(f"{ns}/{name} not Ready after {s.timeout} s: {summary} {ready}; log: {operator.log_path}")
        time.sleep(0.5)


def onboarding(env: Environment, fleet: Fleet, s: Settings, model: str) -> tuple[dict[str, Any], Operator | None]:
    """Apply one BulkRegistration over the fleet; until every child is Ready. The SelfManaged run
    keeps its operator (and registration) for the steady-state and change scenarios."""
    n = len(fleet.accounts)
    self_managed = model == "SelfManaged"
    ns = "bench-sl" if self_managed else "bench-sm"
    namespace(env, ns)
    if self_managed:
        env.kube.apply(core_path(ns, "configmaps", "fleet"), {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "fleet", "labels": {"accountlinker.dev/watch": "true"}},
            "data": {"accounts.csv": "\n".join(fleet.accounts) + "\n"}})
        targets = {"accountsFrom": [{"configMapRef": {"name": "fleet", "key": "accounts.csv"}}]}
        obj = registration("fleet-sl", model, targets, SL_ROLE, s)
    else:
        obj = registration("fleet-sm", model, {"organizationalUnitIds": [fleet.ou]}, SM_ROLE, s)
    operator = Operator(env, s.binary, ns, s.sts_rps, s.logs)
    window = Window(env, operator)
    env.kube.apply(ns_path(ns, "bulkregistrations", obj["metadata"]["name"]), obj)
    waited = wait_registration(env, ns, obj["metadata"]["name"], n, s, operator)
    result = window.close()
    result.update(waited)
    result["wall_seconds"] = waited["ready_seconds"]
    floor = floors(n, 1, waves(n, s.max_concurrent), s.timing, s.sts_rps)
    floor["ratio"] = round(result["wall_seconds"] / floor["binding_seconds"], 2)
    floor["ratio_to_sequential"] = round(result["wall_seconds"] / floor["sequential_seconds"], 2)
    result["floor"] = floor
    result["namespace"] = ns
    log(f"onboarding {model} N={n}: Ready in {result['wall_seconds']} s (floor {floor['binding_seconds']} s, "
        f"{floor['binding']}), {result['stackset_operation_count']} operations, "
        f"peak RSS {result['operator_peak_rss_mib']} MiB")
    if self_managed:
        return result, operator
    operator.stop()
    return result, None


def steady_state(env: Environment, fleet: Fleet, s: Settings, operator: Operator) -> dict[str, Any]:
    """The SelfManaged registration left alone for a number of verify intervals."""
    n = len(fleet.accounts)
    # Every child verified during onboarding and re-verifies one interval (±10 % jitter) later:
    # a window starting half an interval on holds exactly `steady_intervals` verifications each.
    log(f"steady state: half an interval, then {s.steady_intervals} verify intervals of {s.verify_interval_s} s")
    time.sleep(s.verify_interval_s / 2)
    window = Window(env, operator)
    time.sleep(s.verify_interval_s * s.steady_intervals)
    result = window.close()
    hours = result["seconds"] / 3600
    intervals = result["seconds"] / s.verify_interval_s
    aws = result["aws_calls"]
    sts = sum(v for k, v in aws.items() if k.startswith("sts:"))
    cfn = sum(v for k, v in aws.items() if k.startswith("cloudformation:"))
    orgs = sum(v for k, v in aws.items() if k.startswith("organizations:"))
    result.update({
        "verify_interval_seconds": s.verify_interval_s,
        "intervals": round(intervals, 2),
        "sts_calls_per_account_per_interval": round(sts / n / intervals, 3),
        "cloudformation_reads_per_hour": round(cfn / hours, 1),
        "organizations_reads_per_hour": round(orgs / hours, 1),
        "kube_writes_per_account_per_interval": round(result["kube_writes_total"] / n / intervals, 3),
        "registration_reconciles_per_hour": round(result["registration_reconciles"] / hours, 1),
        "idle_cpu_percent": round(100 * result["operator_cpu_seconds"] / result["seconds"], 2),
    })
    log(f"steady state: {result['sts_calls_per_account_per_interval']} STS calls/account/interval, "
        f"{result['kube_writes_per_account_per_interval']} writes/account/interval, "
        f"{result['registration_reconciles_per_hour']} passes/h, idle CPU {result['idle_cpu_percent']} %")
    return result


def change_at_scale(env: Environment, fleet: Fleet, s: Settings, operator: Operator) -> dict[str, Any]:
    """On the SelfManaged registration: add the spares, remove as many, change the template."""
    ns, name = "bench-sl", "fleet-sl"
    cm = core_path(ns, "configmaps", "fleet")
    path = ns_path(ns, "bulkregistrations", name)
    n, k = len(fleet.accounts), len(fleet.spares)
    out: dict[str, Any] = {"accounts_changed": k}

    def step(label: str, accounts: list[str] | None, expected: int, template: dict | None = None) -> None:
        before_hash = (env.kube.get(path).get("status") or {}).get("templateHash")
        window = Window(env, operator)
        if accounts is not None:
            env.kube.apply(cm, {"apiVersion": "v1", "kind": "ConfigMap",
                                "metadata": {"name": "fleet", "labels": {"accountlinker.dev/watch": "true"}},
                                "data": {"accounts.csv": "\n".join(accounts) + "\n"}})
        if template is not None:
            obj = registration(name, "SelfManaged", {"accountsFrom": [
                {"configMapRef": {"name": "fleet", "key": "accounts.csv"}}]}, SL_ROLE, s)
            obj["spec"]["template"] = template
            env.kube.apply(path, obj)
        waited = wait_registration(env, ns, name, expected, s, operator,
                                   template_hash=before_hash if template is not None else None)
        result = window.close()
        result.update(waited)
        result["wall_seconds"] = waited["ready_seconds"]
        out[label] = result
        log(f"change {label}: Ready in {result['wall_seconds']} s, {result['stackset_operation_count']} operations")

    step("add", fleet.accounts + fleet.spares, n + k)
    step("remove", fleet.accounts[k:] + fleet.spares, n)
    step("template", None, n, template={"builtin": {"roleName": SL_ROLE, "maxSessionDuration": 7200}})
    return out


def linkedaccount_latency(env: Environment, fleet: Fleet, s: Settings) -> dict[str, Any]:
    """One LinkedAccount at a time, apply → Ready, over `link_objects` accounts with a role made
    by hand (control API, not counted)."""
    ns = "bench-la"
    namespace(env, ns)
    accounts = fleet.accounts[: s.link_objects]
    policy = trust("arn:aws:iam::123456789012:root", LINK_EXTERNAL_ID)
    for account in accounts:
        env.control("PUT", "/iam/roles", {"account": account, "name": LINK_ROLE, "trust_policy": policy})
    env.kube.apply(core_path(ns, "secrets", "xid"), {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "xid", "labels": {"accountlinker.dev/external-id": "true"}},
        "stringData": {"externalId": LINK_EXTERNAL_ID}})
    operator = Operator(env, s.binary, ns, s.sts_rps, s.logs)
    window = Window(env, operator)
    latencies = []
    try:
        for account in accounts:
            name = f"acct-{account}"
            path = ns_path(ns, "linkedaccounts", name)
            started = time.monotonic()
            env.kube.apply(path, {
                "apiVersion": "accountlinker.dev/v1alpha1", "kind": "LinkedAccount", "metadata": {"name": name},
                "spec": {"accountId": account, "roleName": LINK_ROLE,
                         "externalId": {"secretRef": {"name": "xid", "key": "externalId"}}}})
            while True:
                ready = condition(env.kube.get(path), "Ready")
                if ready and ready["status"] == "True":
                    break
                if time.monotonic() - started > 60:
                    raise SystemExit(f"{name} not Ready after 60 s: {ready}; log: {operator.log_path}")
                time.sleep(0.02)
            latencies.append(time.monotonic() - started)
        result = window.close()
    finally:
        operator.stop()
    result.update({
        "objects": len(latencies),
        "p50_seconds": round(percentile(latencies, 50), 3),
        "p99_seconds": round(percentile(latencies, 99), 3),
        "max_seconds": round(max(latencies), 3),
        "latencies_seconds": [round(x, 3) for x in latencies],
    })
    log(f"LinkedAccount apply → Ready over {len(latencies)}: p50 {result['p50_seconds']} s, "
        f"p99 {result['p99_seconds']} s")
    return result
