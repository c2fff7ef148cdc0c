"""The benchmark's environment: its own control plane and emulator (hack/testenv.py in the
foreground, stopped with the bench), the emulator's control API, the operator as a child process,
and the fleet of member accounts every scenario shares."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from kube import Kube, parse_prometheus

REPO = Path(__file__).resolve().parent.parent
HUB = "123456789012"
EXECUTION_ROLE = "AWSCloudFormationStackSetExecutionRole"


def log(msg: str) -> None:
    print(f"bench {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Environment:
    """testenv.py up --foreground in `state`; everything it starts dies with it."""

    def __init__(self, state: Path):
        self.state = state
        state.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "hack/testenv.py"), "up", "--foreground", "--state-dir", str(state),
             "--crds", str(REPO / "crds")],
            stdout=open(state / "testenv.out", "w"), stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 600
        while not (state / "env.json").exists():
            if self.proc.poll() is not None:
                raise SystemExit(f"testenv exited: {(state / 'testenv.out').read_text()[-3000:]}")
            if time.time() > deadline:
                raise SystemExit("testenv did not become ready in 600 s")
            time.sleep(0.5)
        self.info = json.loads((state / "env.json").read_text())
        self.env = {**os.environ, **self.info["env"]}
        os.environ.update(self.info["env"])
        self.kube = Kube(Path(self.info["kubeconfig"]))
        self.control_url = self.info["env"]["EMULATOR_CONTROL_URL"]
        self.audit_log = Path(self.info["audit_log"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def component_cpu(self) -> dict[str, float]:
        """CPU seconds (utime + stime) of each component testenv started, from /proc."""
        out = {}
        for name, pid in self.info["pids"].items():
            try:
                out[name] = cpu_seconds(pid)
            except OSError:
                continue
        return out

    def control(self, method: str, path: str, body: Any = None) -> Any:
        req = urllib.request.Request(
            self.control_url + path, method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=300) as resp:
            text = resp.read().decode()
            return json.loads(text) if text else None

    def aws_counts(self) -> dict[str, int]:
        return dict(self.control("GET", "/requests")["counts"])

    def operations(self) -> list[dict[str, Any]]:
        return self.control("GET", "/stacksets/operations")["operations"]

    def apiserver_requests(self) -> dict[str, float]:
        """apiserver_request_total summed by VERB resource (all clients)."""
        out: dict[str, float] = {}
        for name, labels, value in parse_prometheus(self.kube.metrics()):
            if name == "apiserver_request_total":
                key = f"{labels.get('verb', '')} {labels.get('resource', '')}"
                out[key] = out.get(key, 0.0) + value
        return out

    def audit_offset(self) -> int:
        return self.audit_log.stat().st_size if self.audit_log.exists() else 0

    def operator_writes(self, offset: int) -> dict[str, int]:
        """Writes to accountlinker.dev objects since `offset` of the audit log, by anyone but the
        bench itself, keyed `verb resource[/subresource]`."""
        counts: dict[str, int] = {}
        if not self.audit_log.exists():
            return counts
        with self.audit_log.open("rb") as f:
            f.seek(offset)
            for line in f:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("userAgent", "").startswith("account-linker-bench"):
                    continue
                ref = event.get("objectRef", {})
                resource = ref.get("resource", "")
                if ref.get("subresource"):
                    resource += "/" + ref["subresource"]
                key = f"{event.get('verb')} {resource}"
                counts[key] = counts.get(key, 0) + 1
        return counts


class Operator:
    """The operator binary watching one namespace, with /proc and /metrics readings."""

    def __init__(self, env: Environment, binary: Path, namespace: str, sts_rps: int, log_dir: Path):
        self.port = free_port()
        self.log_path = log_dir / f"operator-{namespace}.log"
        self.proc = subprocess.Popen(
            [str(binary), "run", "--watch-namespace", namespace, "--leader-elect=false",
             "--metrics-addr", f"127.0.0.1:{self.port}", "--sts-requests-per-second", str(sts_rps),
             "--sts-concurrency", "32", "--max-concurrent-reconciles", "32",
             "--stackset-poll-interval", "1s", "--tenancy", "disabled", "--max-targets", "100000",
             "--log-format", "text", "--log-level", "warn"],
            stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT, env=env.env,
        )
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"operator did not become ready; log: {self.log_path}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def status(self) -> dict[str, int]:
        out = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
        return out

    def rss_mib(self) -> float:
        return round(self.status()["VmRSS"] / 1024, 1)

    def peak_rss_mib(self) -> float:
        return round(self.status()["VmHWM"] / 1024, 1)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.proc.pid)

    def metrics(self) -> dict[str, float]:
        """The operator's counters, keyed `name{label=value,...}` (sorted labels)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=30) as r:
            text = r.read().decode()
        out = {}
        for name, labels, value in parse_prometheus(text):
            if name.endswith("_total"):
                key = name + "{" + ",".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}"
                out[key] = value
        return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    out = {}
    for key, value in after.items():
        d = value - before.get(key, 0)
        if d:
            out[key] = int(d) if float(d).is_integer() else round(d, 3)
    return dict(sorted(out.items()))


def sum_matching(values: dict[str, float], prefix: str, **labels: str) -> float:
    total = 0.0
    for key, value in values.items():
        if key.startswith(prefix + "{") and all(f"{k}={v}" in key for k, v in labels.items()):
            total += value
    return total
