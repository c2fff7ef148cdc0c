#!/usr/bin/env python3
"""account-linker's fleet benchmark (`make bench`, `make bench-smoke`; docs/benchmarks.md).

For each size N: a fresh control plane and emulator (hack/testenv.py), N member accounts in one
OU plus spares, then the scenarios — the two alternatives (one StackSet operation per account; the
console wizard), onboarding one BulkRegistration (ServiceManaged over the OU, SelfManaged over a
listed ConfigMap), steady state, change at scale and single LinkedAccount latency — with the
emulator's latency model at a stated fraction of AWS's typical durations. Writes one JSON per N
into --out, then renders the report and plots from every JSON there.

  python bench/run.py --binary target/release/account-linker --sizes 1000,5000 --out docs/benchmarks
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import drivers  # noqa: E402
import fleet as fleet_mod  # noqa: E402
import report  # noqa: E402
import scenarios  # noqa: E402
from env import REPO, Environment, log  # noqa: E402

# Typical AWS durations the latency model is scaled from (assumed figures, not measured here):
# a StackSet operation spends about 30 s before and after its waves, a wave deploying a stack
# with one IAM role takes about 30 s, and a plain CreateStack of the same template about 30 s.
AWS_TYPICAL = {"base_seconds": 30.0, "seconds_per_wave": 30.0, "stack_seconds": 30.0}


def machine() -> dict:
    cpu = Path("/proc/cpuinfo").read_text()
    models = [line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("model name")]
    mem = {line.split(":")[0]: line.split(":")[1].strip() for line in Path("/proc/meminfo").read_text().splitlines()}
    return {"cpu_model": models[0] if models else platform.processor(), "cpus": os.cpu_count(),
            "memory_total": mem.get("MemTotal"), "memory_available": mem.get("MemAvailable"),
            "kernel": platform.release()}


def versions(binary: Path, env: Environment | None) -> dict:
    def run(*argv: str) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"

    import boto3
    import moto
    out = {
        "git_commit": run("git", "-C", str(REPO), "rev-parse", "HEAD"),
        "git_dirty": bool(run("git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no")),
        "operator_binary": str(binary),
        "rustc": run("rustc", "--version"),
        "python": platform.python_version(),
        "moto": moto.__version__,
        "boto3": boto3.__version__,
    }
    if env is not None:
        assets = Path(env.info["env"]["KUBEBUILDER_ASSETS"])
        out["kube_apiserver"] = run(str(assets / "kube-apiserver"), "--version")
    return out


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def run_size(n: int, args: argparse.Namespace, out_dir: Path) -> Path:
    scale = args.scale
    timing = {k: round(v * scale, 4) for k, v in AWS_TYPICAL.items()}
    spares = min(100, max(1, n // 5))
    verify = max(60, -(-4 * n // args.sts_rps))  # the fleet re-verifies within half an interval
    settings = scenarios.Settings(
        binary=args.binary, sts_rps=args.sts_rps, max_concurrent=args.max_concurrent, timing=timing,
        verify_interval_s=verify, steady_intervals=args.steady_intervals,
        link_objects=min(100, n), timeout=args.timeout, logs=Path(tempfile.mkdtemp(prefix=f"bench-{n}-logs-")),
    )
    sample = min(n, args.serial_sample)
    record: dict = {
        "n": n, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "smoke": args.smoke,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(), "load_average_before": loadavg(),
        "latency_model": {"aws_typical_seconds": AWS_TYPICAL, "scale": scale, "emulator_seconds": timing},
        "sts_requests_per_second": args.sts_rps, "max_concurrent_count": args.max_concurrent,
        "failure_tolerance_count": 10, "spares": spares, "serial_sample": sample,
        "logs": str(settings.logs),
    }
    state = Path(tempfile.mkdtemp(prefix=f"bench-{n}-env-"))
    log(f"N={n}: environment in {state}")
    env = Environment(state)
    try:
        record["versions"] = versions(args.binary, env)
        env.control("PUT", "/stacksets/timing", {"base_seconds": 0, "seconds_per_wave": 0, "stack_seconds": 0})
        fleet = fleet_mod.create(env, n, spares)
        record["setup_seconds"] = fleet.seconds
        env.control("PUT", "/stacksets/timing", timing)
        sc: dict = {}
        sc["per_account_operations"] = drivers.per_account_operations(env, fleet, sample)
        sc["console_wizard"] = drivers.console_wizard(env, fleet, sample)
        sc["onboarding_service_managed"], _ = scenarios.onboarding(env, fleet, settings, "ServiceManaged")
        sc["onboarding_self_managed"], operator = scenarios.onboarding(env, fleet, settings, "SelfManaged")
        try:
            sc["steady_state"] = scenarios.steady_state(env, fleet, settings, operator)
            sc["change_at_scale"] = scenarios.change_at_scale(env, fleet, settings, operator)
        finally:
            operator.stop()
        sc["linkedaccount_latency"] = scenarios.linkedaccount_latency(env, fleet, settings)
        record["scenarios"] = sc
        record["load_average_after"] = loadavg()
        record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    finally:
        env.stop()
    shutil.rmtree(state, ignore_errors=True)  # etcd data and audit log; operator logs stay in `logs`
    path = out_dir / f"bench-n{n}.json"
    path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    log(f"N={n}: wrote {path}")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", type=Path, required=True, help="the account-linker binary to run")
    parser.add_argument("--sizes", default="1000,5000,10000", help="comma-separated N")
    parser.add_argument("--out", type=Path, required=True, help="folder for the JSON of each run (and plots)")
    parser.add_argument("--report", type=Path, help="write the Markdown report here (default: OUT/benchmarks.md)")
    parser.add_argument("--scale", type=float, default=0.01, help="emulator durations = AWS's typical × this")
    parser.add_argument("--sts-rps", type=int, default=200, help="the operator's STS budget")
    parser.add_argument("--max-concurrent", type=int, default=100, help="MaxConcurrentCount of the registrations")
    parser.add_argument("--serial-sample", type=int, default=50,
                        help="accounts the two alternatives deploy (their cost is linear; the rest is extrapolated)")
    parser.add_argument("--steady-intervals", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds a wait may take before the run fails")
    parser.add_argument("--smoke", action="store_true", help="a quick run that checks the harness, not the figures")
    parser.add_argument("--render-only", action="store_true", help="only render the report from OUT/*.json")
    args = parser.parse_args()
    args.binary = args.binary.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    report_path = args.report or args.out / "benchmarks.md"
    if not args.render_only:
        if not args.binary.exists():
            raise SystemExit(f"{args.binary} does not exist: build it first")
        for n in [int(x) for x in args.sizes.split(",") if x.strip()]:
            run_size(n, args, args.out)
    report.render(args.out, report_path)
    log(f"report: {report_path}")


if __name__ == "__main__":
    main()
