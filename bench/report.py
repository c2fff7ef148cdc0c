"""docs/benchmarks.md and the plots, generated from the runs' JSON: every figure in the report is
read from a bench-n<N>.json file in the results folder."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from svg import line_chart

ONBOARDING = {"onboarding_service_managed": "ServiceManaged (OU)",
              "onboarding_self_managed": "SelfManaged (listed accounts)"}


def load(folder: Path) -> list[dict[str, Any]]:
    runs = [json.loads(p.read_text()) for p in sorted(folder.glob("bench-n*.json"))]
    return sorted(runs, key=lambda r: r["n"])


def extrapolated(run: dict[str, Any], key: str) -> float:
    s = run["scenarios"][key]
    return s["seconds_per_account"] * run["n"]


def emulated_seconds(run: dict[str, Any], key: str) -> float:
    """Seconds of a scenario spent waiting out the latency model: its StackSet operations'
    durations, or for the console wizard one plain stack per account."""
    s = run["scenarios"][key]
    if key == "console_wizard":
        return s["accounts"] * run["latency_model"]["emulator_seconds"]["stack_seconds"]
    return sum(op["duration_seconds"] for op in s["stackset_operations"])


def at_aws_durations(run: dict[str, Any], key: str) -> float:
    """The scenario's time for N with the emulated waiting scaled back to AWS's durations (the
    rest — STS, Kubernetes, the operator — as measured): an estimate, not a measurement."""
    s = run["scenarios"][key]
    scale = run["latency_model"]["scale"]
    emulated = emulated_seconds(run, key)
    if key in ONBOARDING:
        return s["wall_seconds"] - emulated + emulated / scale
    return (s["seconds"] - emulated + emulated / scale) / s["accounts"] * run["n"]


def per_account_ops(run: dict[str, Any]) -> int:
    """(a) issues one operation per account: measured on the sample, N at full size."""
    s = run["scenarios"]["per_account_operations"]
    return round(s["stackset_operation_count"] / s["accounts"] * run["n"])


def operator_peak(run: dict[str, Any]) -> float:
    sc = run["scenarios"]
    values = [sc[k]["operator_peak_rss_mib"] for k in ONBOARDING]
    values.append(sc["steady_state"]["operator_peak_rss_mib"])
    values += [sc["change_at_scale"][k]["operator_peak_rss_mib"] for k in ("add", "remove", "template")]
    return max(values)


def targets(run: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """(target, measured, reached) for one run; None where the target does not apply at this N."""
    n, sc = run["n"], run["scenarios"]
    rows: list[tuple[str, str, bool | None]] = []
    for key, label in ONBOARDING.items():
        s = sc[key]
        rows.append((f"onboarding {label} within 1.25× of the binding floor",
                     f"{s['wall_seconds']} s / {s['floor']['binding_seconds']} s ({s['floor']['binding']}) = "
                     f"{s['floor']['ratio']}×", s["floor"]["ratio"] <= 1.25 if n in (1000, 10000) else None))
        rows.append((f"onboarding {label}: at most 3 StackSet operations", str(s["stackset_operation_count"]),
                     s["stackset_operation_count"] <= 3))
    ops = min(sc[k]["stackset_operation_count"] for k in ONBOARDING) or 1
    rows.append(("≥ 300× fewer operations than one per account (a)",
                 f"{per_account_ops(run)} vs {ops} = {per_account_ops(run) / ops:.0f}×",
                 per_account_ops(run) / ops >= 300 if n == 1000 else None))
    rows.append(("≥ 300× fewer operations than the console wizard (b, one stack per account)",
                 f"{n} vs {ops} = {n / ops:.0f}×", n / ops >= 300 if n == 1000 else None))
    slowest = max(sc[k]["wall_seconds"] for k in ONBOARDING)
    for key, label in (("per_account_operations", "(a)"), ("console_wizard", "(b)")):
        ratio = extrapolated(run, key) / slowest
        rows.append((f"≥ 20× less wall time than {label}",
                     f"{extrapolated(run, key):.0f} s (extrapolated) vs {slowest} s = {ratio:.1f}×",
                     ratio >= 20 if n == 1000 else None))
    slowest_aws = max(at_aws_durations(run, k) for k in ONBOARDING)
    for key, label in (("per_account_operations", "(a)"), ("console_wizard", "(b)")):
        ratio = at_aws_durations(run, key) / slowest_aws
        rows.append((f"≥ 20× less wall time than {label}, at AWS's durations (estimate)",
                     f"{at_aws_durations(run, key):,.0f} s vs {slowest_aws:,.0f} s = {ratio:.0f}×",
                     ratio >= 20 if n == 1000 else None))
    st = sc["steady_state"]
    rows.append(("2 STS calls per account per verify interval", str(st["sts_calls_per_account_per_interval"]),
                 abs(st["sts_calls_per_account_per_interval"] - 2) <= 0.2))
    rows.append(("no no-op Kubernetes writes (steady state: at most the verification's own status write)",
                 f"{st['kube_writes_per_account_per_interval']} writes per account per interval",
                 st["kube_writes_per_account_per_interval"] <= 1.05))
    s = sc["onboarding_self_managed"]
    bound = math.ceil(n / run["max_concurrent_count"]) + s["wall_seconds"] / 1.0 + 10
    rows.append(("registration passes bounded by batches, not children (onboarding, SelfManaged)",
                 f"{s['registration_reconciles']} passes for {n} children (bound: waves + 1 s polls + 10 = {bound:.0f})",
                 s["registration_reconciles"] <= bound))
    rows.append(("steady state: registration passes do not follow child status changes (at most one a minute; "
                 "the 5 m resync alone is 12 an hour)",
                 f"{st['registration_reconciles_per_hour']:,} passes an hour",
                 st["registration_reconciles_per_hour"] <= 60))
    passes = max(1, st["registration_reconciles"])
    reads = sum(v for k, v in st["aws_calls"].items() if not k.startswith("sts:"))
    pages = math.ceil(n / 100)
    rows.append(("reads per resync O(N / page size), not O(N)",
                 f"{reads / passes:.0f} CloudFormation/Organizations reads per pass ({pages} pages of 100 = {n} accounts)",
                 reads / passes <= pages + 10))
    peak = operator_peak(run)
    if n >= 5000:
        limit = 100 if n <= 5000 else 200
        rows.append((f"operator RSS < {limit} MiB at {n:,} (release build)", f"{peak} MiB",
                     peak < limit if not run["smoke"] else None))
    la = sc["linkedaccount_latency"]
    rows.append(("single LinkedAccount apply → Ready p99 < 2 s",
                 f"p50 {la['p50_seconds']} s, p99 {la['p99_seconds']} s over {la['objects']}", la["p99_seconds"] < 2))
    return rows


def _mark(ok: bool | None) -> str:
    return "n/a at this N" if ok is None else ("reached" if ok else "**not reached**")


def _calls(calls: dict[str, int], limit: int = 8) -> str:
    top = sorted(calls.items(), key=lambda kv: -kv[1])[:limit]
    rest = sum(calls.values()) - sum(v for _, v in top)
    text = ", ".join(f"{k} {v:,}" for k, v in top)
    return text + (f", others {rest:,}" if rest else "")


def plots(runs: list[dict[str, Any]], folder: Path) -> list[str]:
    wall = {
        "operator, ServiceManaged": [(r["n"], r["scenarios"]["onboarding_service_managed"]["wall_seconds"]) for r in runs],
        "operator, SelfManaged": [(r["n"], r["scenarios"]["onboarding_self_managed"]["wall_seconds"]) for r in runs],
        "(a) operation per account*": [(r["n"], extrapolated(r, "per_account_operations")) for r in runs],
        "(b) console wizard*": [(r["n"], extrapolated(r, "console_wizard")) for r in runs],
        "binding floor": [(r["n"], r["scenarios"]["onboarding_self_managed"]["floor"]["binding_seconds"]) for r in runs],
    }
    memory = {
        "operator, ServiceManaged": [(r["n"], r["scenarios"]["onboarding_service_managed"]["operator_peak_rss_mib"]) for r in runs],
        "operator, SelfManaged": [(r["n"], r["scenarios"]["onboarding_self_managed"]["operator_peak_rss_mib"]) for r in runs],
        "operator, all SelfManaged scenarios": [(r["n"], operator_peak(r)) for r in runs],
    }
    files = {
        "onboarding-wall-time.svg": line_chart(wall, "Onboarding wall time (apply → all Ready)", "accounts (N)",
                                               "seconds (log scale; * extrapolated from a sample)", log_y=True,
                                               dashed={"binding floor", "(a) operation per account*", "(b) console wizard*"}),
        "operator-memory.svg": line_chart(memory, "Operator peak RSS", "accounts (N)", "MiB"),
        "onboarding-wall-time-aws.svg": line_chart(
            {
                "operator, ServiceManaged": [(r["n"], at_aws_durations(r, "onboarding_service_managed")) for r in runs],
                "operator, SelfManaged": [(r["n"], at_aws_durations(r, "onboarding_self_managed")) for r in runs],
                "(a) operation per account": [(r["n"], at_aws_durations(r, "per_account_operations")) for r in runs],
                "(b) console wizard": [(r["n"], at_aws_durations(r, "console_wizard")) for r in runs],
            },
            "Onboarding at AWS's durations (estimate: emulated waits rescaled)", "accounts (N)",
            "seconds (log scale)", log_y=True),
    }
    for name, text in files.items():
        (folder / name).write_text(text)
    return list(files)


def render(folder: Path, out: Path) -> None:
    runs = load(folder)
    if not runs:
        raise SystemExit(f"no bench-n*.json in {folder}")
    names = plots(runs, folder)
    rel = Path(folder.resolve().relative_to(out.resolve().parent)) if folder.resolve().is_relative_to(out.resolve().parent) else folder.resolve()
    newest = max(runs, key=lambda r: r["started"])
    lm = newest["latency_model"]
    L: list[str] = []
    add = L.append
    add("# Benchmarks")
    add("")
    add("Generated by `bench/run.py` from the JSON files in "
        f"[`{rel}/`]({rel}/) — do not edit by hand; every figure below is read from a run's JSON.")
    if any(r["smoke"] for r in runs):
        add("")
        add("**Smoke run** (`make bench-smoke`): small N and a debug build; it checks the harness, not the figures.")
    add("")
    add("## How the runs were made")
    add("")
    add(f"- Machine: {newest['machine']['cpu_model']}, {newest['machine']['cpus']} CPUs, "
        f"{newest['machine']['memory_total']} memory (kernel {newest['machine']['kernel']}). The machine is shared: "
        "the load average at the start and end of each run is in the table below.")
    v = newest.get("versions", {})
    add(f"- Versions: account-linker `{v.get('git_commit', '?')[:12]}`{' (uncommitted changes)' if v.get('git_dirty') else ''}, "
        f"{v.get('rustc', '?')}, {v.get('kube_apiserver', '?')}, moto {v.get('moto', '?')}, boto3 {v.get('boto3', '?')}, "
        f"Python {v.get('python', '?')}; operator binary `{Path(v.get('operator_binary', '?')).name}` "
        f"from `{Path(v.get('operator_binary', '?')).parent.name}`.")
    add(f"- Commands: `make bench` (release build, N = 1,000, 5,000, 10,000; `BENCH_SIZES=1000 make bench` for fewer), "
        "`make bench-smoke` (N = 50, debug build, results in a temporary folder). Each run's exact command line:")
    for r in runs:
        commit = r.get("versions", {}).get("git_commit", "?")[:12]
        add(f"  - N = {r['n']:,}: `{r['command']}` (account-linker `{commit}`)")
    add(f"- Latency model (emulator control API `PUT /_strict/stacksets/timing`): AWS's typical figures assumed as "
        f"{lm['aws_typical_seconds']['base_seconds']:g} s fixed per StackSet operation, "
        f"{lm['aws_typical_seconds']['seconds_per_wave']:g} s per wave of MaxConcurrentCount instances and "
        f"{lm['aws_typical_seconds']['stack_seconds']:g} s per plain CreateStack; the emulator runs them at "
        f"**{lm['scale']:g}×**: {lm['emulator_seconds']['base_seconds']:g} s, {lm['emulator_seconds']['seconds_per_wave']:g} s "
        f"and {lm['emulator_seconds']['stack_seconds']:g} s. STS is not scaled: the operator's STS budget is "
        f"{newest['sts_requests_per_second']} requests/s (AWS allows about 600/s per account and Region).")
    add(f"- Registrations: MaxConcurrentCount {newest['max_concurrent_count']}, FailureToleranceCount "
        f"{newest['failure_tolerance_count']}, SOFT_FAILURE_TOLERANCE, one Region; operator flags "
        "`--sts-concurrency 32 --max-concurrent-reconciles 32 --stackset-poll-interval 1s --tenancy disabled`, "
        "one operator process per scenario watching that scenario's namespace.")
    add("- Floors: StackSet floor = operations × (fixed + waves × per wave); STS floor = 2N calls / STS budget; the "
        "larger binds. The emulator carries an operation out when its time is up (instances appear at its end), so "
        "verification cannot overlap deployment here and the reachable floor is the sum (also shown).")
    add("- Counts: AWS calls are the emulator's request counts; Kubernetes writes are the apiserver audit log's "
        "writes to `accountlinker.dev` objects by anyone but the bench; apiserver requests are "
        "`apiserver_request_total` deltas (all clients: the operator and kube-controller-manager) minus the bench's own; "
        "registration passes are the operator's `account_linker_reconciles_total{controller=\"bulkregistration\"}`; "
        "RSS and CPU come from `/proc/<pid>` (VmHWM, utime + stime).")
    add("")
    add("| N | started (UTC) | load average before | after | fleet setup (s) |")
    add("|---|---|---|---|---|")
    for r in runs:
        add(f"| {r['n']:,} | {r['started']} | {' '.join(map(str, r['load_average_before']))} | "
            f"{' '.join(map(str, r.get('load_average_after', [])))} | {r['setup_seconds']} |")
    add("")
    add("## Results against the targets")
    add("")
    for r in runs:
        add(f"### N = {r['n']:,}")
        add("")
        add("| target | measured | |")
        add("|---|---|---|")
        for target, measured, ok in targets(r):
            add(f"| {target} | {measured} | {_mark(ok)} |")
        add("")
    big = runs[-1]
    add(f"## Where the time went (N = {big['n']:,})")
    add("")
    add("CPU seconds per process during each scenario (the machine has "
        f"{big['machine']['cpus']} cores shared with other work; an onboarding whose processes together need "
        "more CPU seconds than wall seconds × cores is bound by this machine, not by the floor):")
    add("")
    add("| scenario | wall (s) | operator | " + " | ".join(sorted(big["scenarios"]["onboarding_self_managed"]
                                                                  .get("component_cpu_seconds", {}))) + " |")
    comps = sorted(big["scenarios"]["onboarding_self_managed"].get("component_cpu_seconds", {}))
    add("|---|---|---|" + "---|" * len(comps))
    for key in ("onboarding_service_managed", "onboarding_self_managed", "steady_state"):
        s = big["scenarios"][key]
        cpu = s.get("component_cpu_seconds", {})
        add(f"| {key.replace('_', ' ')} | {s.get('wall_seconds', s['seconds'])} | {s['operator_cpu_seconds']} | "
            + " | ".join(str(cpu.get(c, 0)) for c in comps) + " |")
    add("")
    add("## 1. Onboarding one BulkRegistration")
    add("")
    add("| N | targets | Ready (s) | deployed (s) | floor (s), binding | ratio to floor | ratio to sum of floors | "
        "StackSet operations | AWS calls | Kubernetes writes | apiserver requests | registration passes | "
        "peak RSS (MiB) | CPU (s) |")
    add("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        for key, label in ONBOARDING.items():
            s = r["scenarios"][key]
            f = s["floor"]
            add(f"| {r['n']:,} | {label} | {s['wall_seconds']} | {s['deployed_seconds']} | {f['binding_seconds']}, "
                f"{f['binding']} (StackSet {f['stackset_seconds']}, STS {f['sts_seconds']}) | {f['ratio']}× | "
                f"{f['ratio_to_sequential']}× | {s['stackset_operation_count']} | {s['aws_calls_total']:,} | "
                f"{s['kube_writes_total']:,} | {s['apiserver_requests_total']:,} | {s['registration_reconciles']} | "
                f"{s['operator_peak_rss_mib']} | {s['operator_cpu_seconds']} |")
    add("")
    add("AWS calls by API (emulator counts):")
    add("")
    for r in runs:
        for key, label in ONBOARDING.items():
            s = r["scenarios"][key]
            add(f"- N = {r['n']:,}, {label}: {_calls(s['aws_calls'], 20)}")
            add(f"  - Kubernetes writes: {_calls(s['kube_writes'], 10)}")
            add(f"  - CPU seconds: operator {s['operator_cpu_seconds']}, "
                + ", ".join(f"{k} {v}" for k, v in s.get("component_cpu_seconds", {}).items()))
    add("")
    add("## 2. Side by side")
    add("")
    add("(a) one StackSet operation per account, serialized by the one-operation rule (the Crossplane "
        "StackSetInstance / Terraform `aws_cloudformation_stack_set_instance` pattern); (b) the console wizard: "
        "per account AssumeRole into OrganizationAccountAccessRole, CreateStack, wait. Both ran on the same "
        "emulator in the same run over the first accounts of the fleet (the sample); their cost is linear, "
        "so the time for N is the sample's time per account × N (marked *extrapolated*).")
    add("")
    add("The last two columns scale the emulated waiting (StackSet operations, plain stacks) back to AWS's durations "
        "and keep everything else as measured: an estimate of the same run against AWS, not a measurement.")
    add("")
    add("| N | approach | accounts run | time for them (s) | s per account | time for N (s) | StackSet operations for N | "
        "ratio of time to the operator | ratio of operations | time for N at AWS's durations (s) | ratio at AWS's durations |")
    add("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        sc = r["scenarios"]
        slowest = max(sc[k]["wall_seconds"] for k in ONBOARDING)
        slowest_aws = max(at_aws_durations(r, k) for k in ONBOARDING)
        ops = max(1, min(sc[k]["stackset_operation_count"] for k in ONBOARDING))
        for key, label in ONBOARDING.items():
            s = sc[key]
            add(f"| {r['n']:,} | operator, {label} | {r['n']:,} | {s['wall_seconds']} | "
                f"{s['wall_seconds'] / r['n']:.4f} | {s['wall_seconds']} (measured) | {s['stackset_operation_count']} | 1 | 1 | "
                f"{at_aws_durations(r, key):,.0f} | 1 |")
        a, b = sc["per_account_operations"], sc["console_wizard"]
        add(f"| {r['n']:,} | (a) operation per account | {a['accounts']} | {a['seconds']} | {a['seconds_per_account']} | "
            f"{extrapolated(r, 'per_account_operations'):.0f} (extrapolated) | {per_account_ops(r):,} | "
            f"{extrapolated(r, 'per_account_operations') / slowest:.1f}× | {per_account_ops(r) / ops:.0f}× | "
            f"{at_aws_durations(r, 'per_account_operations'):,.0f} | "
            f"{at_aws_durations(r, 'per_account_operations') / slowest_aws:.0f}× |")
        add(f"| {r['n']:,} | (b) console wizard | {b['accounts']} | {b['seconds']} | {b['seconds_per_account']} | "
            f"{extrapolated(r, 'console_wizard'):.0f} (extrapolated) | 0 ({r['n']:,} stacks) | "
            f"{extrapolated(r, 'console_wizard') / slowest:.1f}× | {r['n'] / ops:.0f}× (stacks) | "
            f"{at_aws_durations(r, 'console_wizard'):,.0f} | {at_aws_durations(r, 'console_wizard') / slowest_aws:.0f}× |")
    add("")
    add("AWS calls of the alternatives over their sample:")
    add("")
    for r in runs:
        add(f"- N = {r['n']:,}: (a) {_calls(r['scenarios']['per_account_operations']['aws_calls'])}; "
            f"(b) {_calls(r['scenarios']['console_wizard']['aws_calls'])}")
    add("")
    add("## 3. Steady state (SelfManaged registration, Ready, left alone)")
    add("")
    add("| N | verify interval (s) | window (s) | STS calls / account / interval | CloudFormation reads / h | "
        "Organizations reads / h | Kubernetes writes / account / interval | registration passes / h | "
        "idle CPU (% of one core) | RSS (MiB) |")
    add("|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        s = r["scenarios"]["steady_state"]
        add(f"| {r['n']:,} | {s['verify_interval_seconds']} | {s['seconds']} | {s['sts_calls_per_account_per_interval']} | "
            f"{s['cloudformation_reads_per_hour']:,} | {s['organizations_reads_per_hour']:,} | "
            f"{s['kube_writes_per_account_per_interval']} | {s['registration_reconciles_per_hour']:,} | "
            f"{s['idle_cpu_percent']} | {s['operator_rss_mib']} |")
    add("")
    for r in runs:
        s = r["scenarios"]["steady_state"]
        add(f"- N = {r['n']:,}: AWS calls {_calls(s['aws_calls'])}; Kubernetes writes {_calls(s['kube_writes'])}")
    add("")
    add("## 4. Single LinkedAccount apply → Ready")
    add("")
    add("| N (fleet) | objects, one at a time | p50 (s) | p99 (s) | max (s) |")
    add("|---|---|---|---|---|")
    for r in runs:
        s = r["scenarios"]["linkedaccount_latency"]
        add(f"| {r['n']:,} | {s['objects']} | {s['p50_seconds']} | {s['p99_seconds']} | {s['max_seconds']} |")
    add("")
    add("## 5. Change at scale (SelfManaged registration)")
    add("")
    add("| N | change | Ready again (s) | StackSet operations | AWS calls | Kubernetes writes | registration passes | CPU (s) |")
    add("|---|---|---|---|---|---|---|---|")
    for r in runs:
        c = r["scenarios"]["change_at_scale"]
        k = c["accounts_changed"]
        for step, label in (("add", f"add {k} accounts"), ("remove", f"remove {k} accounts"), ("template", "change the template")):
            s = c[step]
            ops = ", ".join(f"{o['action']} ({o['accounts']})" for o in s["stackset_operations"]) or "none"
            add(f"| {r['n']:,} | {label} | {s['wall_seconds']} | {s['stackset_operation_count']}: {ops} | "
                f"{s['aws_calls_total']:,} | {s['kube_writes_total']:,} | {s['registration_reconciles']} | {s['operator_cpu_seconds']} |")
    add("")
    add("## Plots")
    add("")
    for name in names:
        add(f"![{name}]({rel}/{name})")
        add("")
    out.write_text("\n".join(L).rstrip() + "\n")
