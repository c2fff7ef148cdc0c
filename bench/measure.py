"""One measured window: AWS calls (emulator counts), Kubernetes writes (audit log) and apiserver
requests (kube-apiserver /metrics, the bench's own subtracted), StackSet operations, and the
operator's reconciles, AWS calls, CPU seconds and peak RSS."""

from __future__ import annotations

import math
import time
from typing import Any

from env import Environment, Operator, delta, sum_matching


class Window:
    def __init__(self, env: Environment, operator: Operator | None = None):
        self.env, self.operator = env, operator
        env.control("DELETE", "/requests")
        self.audit = env.audit_offset()
        self.apiserver = env.apiserver_requests()
        self.bench_requests = env.kube.requests
        self.operations = {op["operation_id"] for op in env.operations()}
        self.metrics = operator.metrics() if operator else {}
        self.cpu = operator.cpu_seconds() if operator else 0.0
        self.components = env.component_cpu()
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def close(self) -> dict[str, Any]:
        seconds = self.elapsed()
        env = self.env
        aws = dict(sorted(env.aws_counts().items()))
        ops = [op for op in env.operations() if op["operation_id"] not in self.operations]
        writes = dict(sorted(env.operator_writes(self.audit).items()))
        bench_requests = env.kube.requests - self.bench_requests + 1  # + this /metrics read
        apiserver = delta(env.apiserver_requests(), self.apiserver)
        out: dict[str, Any] = {
            "seconds": round(seconds, 2),
            "aws_calls": aws,
            "aws_calls_total": sum(aws.values()),
            "stackset_operations": [
                {"stack_set": op["stack_set_name"], "action": op["action"], "status": op["status"],
                 "accounts": len(op["accounts"]), "auto_deployment": op["auto_deployment"],
                 "duration_seconds": op["duration_seconds"]}
                for op in ops
            ],
            "stackset_operation_count": len(ops),
            "kube_writes": writes,
            "kube_writes_total": sum(writes.values()),
            "apiserver_requests": apiserver,
            "apiserver_requests_total": int(sum(apiserver.values())) - bench_requests,
            "bench_apiserver_requests": bench_requests,
            # Who spent the window's CPU: emulator, kube-apiserver, etcd, controller manager.
            "component_cpu_seconds": {k: round(v, 2) for k, v in delta(env.component_cpu(), self.components).items()},
        }
        if self.operator:
            metrics = delta(self.operator.metrics(), self.metrics)
            out["registration_reconciles"] = int(
                sum_matching(metrics, "account_linker_reconciles_total", controller="bulkregistration"))
            out["linkedaccount_reconciles"] = int(
                sum_matching(metrics, "account_linker_reconciles_total", controller="linkedaccount"))
            out["operator_aws_calls"] = {
                k: v for k, v in metrics.items() if k.startswith("account_linker_aws_calls_total")}
            out["operator_cpu_seconds"] = round(self.operator.cpu_seconds() - self.cpu, 2)
            out["operator_peak_rss_mib"] = self.operator.peak_rss_mib()
            out["operator_rss_mib"] = self.operator.rss_mib()
        return out


def floors(n: int, operations: int, waves_per_op: int, timing: dict[str, float], sts_rps: float) -> dict[str, Any]:
    """The StackSet floor (operations × (fixed + waves × per wave)) and the STS floor (2 calls per
    account at the configured budget); the larger binds."""
    stackset = operations * (timing["base_seconds"] + waves_per_op * timing["seconds_per_wave"])
    sts = 2 * n / sts_rps
    binding = "stackset" if stackset >= sts else "sts"
    return {
        "stackset_seconds": round(stackset, 2),
        "sts_seconds": round(sts, 2),
        "binding": binding,
        "binding_seconds": round(max(stackset, sts), 2),
        # In the emulator an operation's instances all appear when it ends, so verification
        # cannot overlap deployment: the reachable floor here is the sum.
        "sequential_seconds": round(stackset + sts, 2),
    }


def waves(n: int, max_concurrent: int) -> int:
    return math.ceil(n / max_concurrent)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    k = max(0, math.ceil(p / 100 * len(ordered)) - 1)
    return ordered[k]
