"""Load test of the strict emulator at fleet scale: how fast it answers as the organization grows.

Starts the emulator the way the tests do (`python -m strictaws --port 0`, one process), grows one
organization to each size in `--sizes` and measures, at every size:

- CreateAccount + DescribeCreateAccountStatus pairs per second while growing (per window of accounts);
- a SERVICE_MANAGED StackSet (OU target, the root) and a SELF_MANAGED one (account list) deploying one
  IAM role to every account: CreateStackInstances latency and time until the operation SUCCEEDED
  (StackSet timing set to 0 s, so this is the emulator's own cost);
- ListStackInstances and ListAccountsForParent, full pagination, and ListAccountsForParent per page
  over the root and over an OU of 100 accounts (`--only-accounts-for-parent` measures just that;
  `--in-process-accounts-for-parent` compares moto's own method with the index, without HTTP);
- AssumeRole (role trusting the hub with an ExternalId) + GetCallerIdentity with the new credentials,
  pairs per second from concurrent clients, every answer checked (and a wrong ExternalId must be denied);
- DescribeAccount and ListTagsForResource per second.

The hot loops speak the wire protocols directly over keep-alive connections (the emulator does not
check signatures, only reads the credential scope), so the client costs little next to the server.
Prints one human line per figure and, at the end, `EMUBENCH {json}` with everything.

    V=$(bash hack/venv.sh); cd emulator
    flock /work/integration.lock $V/bin/python bench_emulator.py --sizes 1000,5000,10000
    # profile the server meanwhile (py-spy on PATH): --profile-dir /tmp/emuprof
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
HUB = "123456789012"
HUB_KEY = "AKIAIOSFODNN7EXAMPLE"
REGION = "us-east-1"
STACKSETS_PRINCIPAL = "member.org.stacksets.cloudformation.amazonaws.com"
EXECUTION_ROLE = "AWSCloudFormationStackSetExecutionRole"
EXTERNAL_ID = "bench-external-id"
# ListAccountsForParent over an OU: how many accounts are moved into it, how often it is walked.
OU_ACCOUNTS = 100
OU_WALKS = 10
_VERSIONS = {"sts": "2011-06-15", "cloudformation": "2010-05-15", "iam": "2010-05-08"}


def _connection(port: int) -> http.client.HTTPConnection:
    """A keep-alive connection with TCP_NODELAY, as the AWS SDKs' HTTP clients set it (else each
    request's body waits for the server's delayed ACK of its headers)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


class Wire:
    """One keep-alive connection speaking the query and JSON protocols."""

    def __init__(self, port: int):
        self.port = port
        self.conn = _connection(port)

    def _send(self, service: str, body: bytes, headers: dict[str, str], key: str, token: str | None) -> tuple[int, bytes]:
        headers = {
            **headers,
            "Authorization": f"AWS4-HMAC-SHA256 Credential={key}/20260101/{REGION}/{service}/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=0",
            "X-Amz-Date": "20260101T000000Z",
        }
        if token:
            headers["X-Amz-Security-Token"] = token
        for attempt in range(3):
            try:
                self.conn.request("POST", "/", body=body, headers=headers)
                response = self.conn.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = _connection(self.port)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def query(self, service: str, action: str, params: dict[str, str], key: str = HUB_KEY, token: str | None = None) -> tuple[int, str]:
        body = urllib.parse.urlencode({"Action": action, "Version": _VERSIONS[service], **params}).encode()
        status, data = self._send(
            service, body, {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}, key, token
        )
        return status, data.decode()

    def json(self, action: str, payload: dict[str, Any], key: str = HUB_KEY) -> tuple[int, dict[str, Any]]:
        status, data = self._send(
            "organizations",
            json.dumps(payload).encode(),
            {
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": f"AWSOrganizationsV20161128.{action}",
            },
            key,
            None,
        )
        return status, json.loads(data or b"{}")

    def ok_json(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        status, body = self.json(action, payload)
        if status != 200:
            raise RuntimeError(f"{action}: {status} {body}")
        return body


def _tag(xml: str, name: str) -> str | None:
    match = re.search(f"<{name}>(.*?)</{name}>", xml, re.S)
    return match.group(1) if match else None


class Emulator:
    def __init__(self, profile_dir: Path | None, profile_rate: int):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "strictaws", "--host", "127.0.0.1", "--port", "0"],
            cwd=HERE, stdout=subprocess.PIPE, text=True, env=env,
        )
        line = self.process.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"emulator did not start: {line!r}")
        self.url = line.strip().rsplit(" ", 1)[-1]
        self.port = int(self.url.rsplit(":", 1)[-1])
        self.profile_dir = profile_dir
        self.profile_rate = profile_rate
        self._spy: subprocess.Popen[bytes] | None = None

    def control(self, method: str, path: str, body: Any = None) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        conn.close()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {data!r}")
        return json.loads(data or b"null")

    def profile(self, name: str) -> Callable[[], None]:
        """Sample the server with py-spy until the returned function is called."""
        spy = shutil.which("py-spy")
        if self.profile_dir is None or spy is None:
            return lambda: None
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        out = self.profile_dir / f"{name}.txt"
        proc = subprocess.Popen(
            [spy, "record", "--pid", str(self.process.pid), "--format", "raw", "--gil", "--rate",
             str(self.profile_rate), "--output", str(out), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)

        def stop() -> None:
            proc.send_signal(2)
            proc.wait(timeout=60)
            summary = self.profile_dir / f"{name}.top.txt"
            summary.write_text(top_of_profile(out))

        return stop

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
        return 0.0

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def top_of_profile(raw: Path, n: int = 15) -> str:
    """Self and inclusive sample shares per function, from py-spy's collapsed-stack output."""
    if not raw.exists():
        return "no profile\n"
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        total += samples
        # One entry per function (not per line), files shown relative to site-packages or strictaws.
        frames = [re.sub(r":\d+\)$", ")", re.sub(r" \((.*?/)?(site-packages/|strictaws/)?", " (", f)) for f in stack.split(";")]
        # The serving thread's idle loop is not work.
        if any("select" in f.split(" ")[0] for f in frames[-1:]):
            continue
        for f in set(frames):
            inclusive[f] = inclusive.get(f, 0) + samples
        own[frames[-1]] = own.get(frames[-1], 0) + samples
    lines = [f"{total} samples"]
    lines.append("-- self --")
    for f, c in sorted(own.items(), key=lambda kv: -kv[1])[:n]:
        lines.append(f"{100 * c / total:5.1f}%  {f}")
    lines.append("-- inclusive --")
    for f, c in sorted(inclusive.items(), key=lambda kv: -kv[1])[: n * 2]:
        lines.append(f"{100 * c / total:5.1f}%  {f}")
    return "\n".join(lines) + "\n"


def parallel(port: int, clients: int, items: list[Any], work: Callable[[Wire, Any], Any]) -> list[Any]:
    """`work(wire, item)` for every item, on `clients` connections; results in item order."""
    local = threading.local()

    def run(item: Any) -> Any:
        if not hasattr(local, "wire"):
            local.wire = Wire(port)
        return work(local.wire, item)

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(run, items))


class Bench:
    def __init__(self, emu: Emulator, clients: int, sts_pairs: int, reads: int):
        self.emu = emu
        self.port = emu.port
        self.clients = clients
        self.sts_pairs = sts_pairs
        self.reads = reads
        self.wire = Wire(emu.port)
        self.accounts: list[str] = []
        self.with_execution_role = 0
        self.results: dict[str, Any] = {"sizes": {}, "create_windows": []}
        self.root = ""
        self.ou = ""

    def say(self, text: str) -> None:
        print(text, flush=True)

    def setup(self) -> None:
        self.emu.control("POST", "/_strict/reset")
        self.emu.control("PUT", "/_strict/stacksets/timing", {"base_seconds": 0, "seconds_per_wave": 0})
        self.wire.ok_json("CreateOrganization", {"FeatureSet": "ALL"})
        self.wire.ok_json("EnableAWSServiceAccess", {"ServicePrincipal": STACKSETS_PRINCIPAL})
        self.root = self.wire.ok_json("ListRoots", {})["Roots"][0]["Id"]

    # --- growing the organization ------------------------------------------------------------

    def grow(self, size: int, window: int) -> None:
        while len(self.accounts) < size:
            start = len(self.accounts)
            count = min(window, size - start)
            stop = self.emu.profile(f"create-{start + count}")
            began = time.monotonic()
            created = parallel(self.port, self.clients, list(range(start, start + count)), self._create_one)
            elapsed = time.monotonic() - began
            stop()
            self.accounts.extend(created)
            rate = count / elapsed
            self.results["create_windows"].append({"from": start, "to": start + count, "seconds": round(elapsed, 2), "per_second": round(rate, 1)})
            self.say(f"create accounts {start}..{start + count}: {elapsed:.1f}s, {rate:.0f} accounts/s")

    @staticmethod
    def _create_one(wire: Wire, i: int) -> str:
        status = wire.ok_json(
            "CreateAccount",
            {"AccountName": f"bench{i}", "Email": f"bench{i}@example.com", "Tags": [{"Key": "bench", "Value": str(i)}]},
        )["CreateAccountStatus"]
        described = wire.ok_json("DescribeCreateAccountStatus", {"CreateAccountRequestId": status["Id"]})
        state = described["CreateAccountStatus"]
        if state["State"] != "SUCCEEDED":
            raise RuntimeError(f"account {i}: {state}")
        return state["AccountId"]

    # --- StackSets ---------------------------------------------------------------------------

    def _template(self, role: str) -> str:
        return json.dumps({
            "Parameters": {"ExternalId": {"Type": "String", "Default": EXTERNAL_ID}},
            "Resources": {"Role": {"Type": "AWS::IAM::Role", "Properties": {
                "RoleName": role,
                "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{HUB}:root"},
                    "Action": "sts:AssumeRole",
                    "Condition": {"StringEquals": {"sts:ExternalId": {"Ref": "ExternalId"}}}}]}}}},
        })

    def _cf(self, action: str, params: dict[str, str]) -> str:
        status, body = self.wire.query("cloudformation", action, params)
        if status != 200:
            raise RuntimeError(f"{action}: {status} {body[:500]}")
        return body

    def _wait_operation(self, name: str, op: str) -> str:
        while True:
            body = self._cf("DescribeStackSetOperation", {"StackSetName": name, "OperationId": op})
            status = _tag(body, "Status")
            if status not in ("RUNNING", "QUEUED"):
                return status or "?"
            time.sleep(0.2)

    def deploy(self, size: int, model: str) -> dict[str, Any]:
        name = 'bench-' + model.lower().replace('_', '-') + f'-{size}'
        role = name
        params = {"StackSetName": name, "TemplateBody": self._template(role), "Capabilities.member.1": "CAPABILITY_NAMED_IAM", "PermissionModel": model}
        if model == "SERVICE_MANAGED":
            params["AutoDeployment.Enabled"] = "false"
        else:
            params["AdministrationRoleARN"] = f"arn:aws:iam::{HUB}:role/AWSCloudFormationStackSetAdministrationRole"
            self._execution_roles(size)
        self._cf("CreateStackSet", params)
        create = {
            "StackSetName": name, "Regions.member.1": REGION, "OperationId": f"op-{name}",
            "OperationPreferences.MaxConcurrentPercentage": "100",
            "OperationPreferences.ConcurrencyMode": "SOFT_FAILURE_TOLERANCE",
            "OperationPreferences.FailureTolerancePercentage": "10",
        }
        if model == "SERVICE_MANAGED":
            create["DeploymentTargets.OrganizationalUnitIds.member.1"] = self.root
        else:
            for i, account in enumerate(self.accounts[:size], 1):
                create[f"Accounts.member.{i}"] = account
        stop = self.emu.profile(f"deploy-{model.lower()}-{size}")
        began = time.monotonic()
        self._cf("CreateStackInstances", create)
        called = time.monotonic() - began
        status = self._wait_operation(name, f"op-{name}")
        done = time.monotonic() - began
        stop()
        if status != "SUCCEEDED":
            raise RuntimeError(f"{name}: operation {status}")
        stop = self.emu.profile(f"list-instances-{model.lower()}-{size}")
        began = time.monotonic()
        listed, pages, token = 0, 0, None
        while True:
            p = {"StackSetName": name, **({"NextToken": token} if token else {})}
            body = self._cf("ListStackInstances", p)
            listed += body.count("<StackSetId>")
            pages += 1
            token = _tag(body, "NextToken")
            if not token:
                break
        listing = time.monotonic() - began
        stop()
        if listed != size:
            raise RuntimeError(f"{name}: listed {listed} of {size} instances")
        figures = {
            "create_call_seconds": round(called, 2), "operation_seconds": round(done, 2),
            "list_seconds": round(listing, 2), "list_pages": pages, "listed": listed,
        }
        self.say(f"  {model} StackSet, {size} instances: CreateStackInstances {called:.2f}s, SUCCEEDED after "
                 f"{done:.1f}s; ListStackInstances {pages} pages in {listing:.2f}s")
        return figures

    def _execution_roles(self, size: int) -> None:
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{HUB}:root"}, "Action": "sts:AssumeRole"}]}
        todo = self.accounts[self.with_execution_role:size]
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        for account in todo:
            conn.request("PUT", "/_strict/iam/roles", body=json.dumps({"account": account, "name": EXECUTION_ROLE, "trust_policy": trust}))
            response = conn.getresponse()
            response.read()
            assert response.status == 200, response.status
        conn.close()
        self.with_execution_role = size

    # --- STS ---------------------------------------------------------------------------------

    def sts(self, size: int, role: str) -> dict[str, Any]:
        rng = random.Random(size)
        targets = [rng.choice(self.accounts[:size]) for _ in range(self.sts_pairs)]

        def pair(wire: Wire, account: str) -> None:
            arn = f"arn:aws:iam::{account}:role/{role}"
            status, body = wire.query("sts", "AssumeRole", {"RoleArn": arn, "RoleSessionName": "bench", "ExternalId": EXTERNAL_ID})
            if status != 200:
                raise RuntimeError(f"AssumeRole {arn}: {status} {body[:300]}")
            key, token = _tag(body, "AccessKeyId"), _tag(body, "SessionToken")
            status, body = wire.query("sts", "GetCallerIdentity", {}, key=key or "", token=token)
            if status != 200 or _tag(body, "Account") != account:
                raise RuntimeError(f"GetCallerIdentity as {arn}: {status} {body[:300]}")

        # Strictness spot check: a wrong ExternalId must be denied.
        status, body = self.wire.query("sts", "AssumeRole", {"RoleArn": f"arn:aws:iam::{targets[0]}:role/{role}", "RoleSessionName": "bench", "ExternalId": "wrong-id"})
        if status != 403 or "AccessDenied" not in body:
            raise RuntimeError(f"wrong ExternalId was not denied: {status} {body[:300]}")
        stop = self.emu.profile(f"sts-{size}")
        began = time.monotonic()
        parallel(self.port, self.clients, targets, pair)
        elapsed = time.monotonic() - began
        stop()
        rate = len(targets) / elapsed
        self.say(f"  STS: {len(targets)} AssumeRole+GetCallerIdentity pairs on {self.clients} clients in {elapsed:.1f}s = {rate:.0f} pairs/s")
        return {"pairs": len(targets), "seconds": round(elapsed, 2), "pairs_per_second": round(rate, 1)}

    # --- Organizations reads -----------------------------------------------------------------

    def reads_(self, size: int) -> dict[str, Any]:
        rng = random.Random(size + 1)
        sample = [rng.choice(self.accounts[:size]) for _ in range(self.reads)]
        figures: dict[str, Any] = {}
        for action, key in (("DescribeAccount", "AccountId"), ("ListTagsForResource", "ResourceId")):
            stop = self.emu.profile(f"{action}-{size}")
            began = time.monotonic()
            parallel(self.port, self.clients, sample, lambda w, a, action=action, key=key: _ok(w.json(action, {key: a}), action))
            elapsed = time.monotonic() - began
            stop()
            figures[action] = {"calls": len(sample), "seconds": round(elapsed, 2), "per_second": round(len(sample) / elapsed, 1)}
            self.say(f"  {action}: {len(sample)} calls in {elapsed:.2f}s = {len(sample) / elapsed:.0f}/s")
        figures.update(self.accounts_for_parent(size))
        return figures

    def _walk(self, parent: str) -> tuple[int, int, float]:
        """ListAccountsForParent over `parent` in pages of 20: (accounts, pages, seconds)."""
        began = time.monotonic()
        seen, pages, token = 0, 0, None
        while True:
            body = self.wire.ok_json("ListAccountsForParent", {"ParentId": parent, "MaxResults": 20, **({"NextToken": token} if token else {})})
            seen += len(body["Accounts"])
            pages += 1
            token = body.get("NextToken")
            if not token:
                break
        return seen, pages, time.monotonic() - began

    def accounts_for_parent(self, size: int) -> dict[str, Any]:
        """ListAccountsForParent per page: over the root (every account) and over an OU holding
        `OU_ACCOUNTS` of them, whose pages should cost the same at any organization size."""
        if not self.ou:
            self.ou = self.wire.ok_json("CreateOrganizationalUnit", {"ParentId": self.root, "Name": "bench"})["OrganizationalUnit"]["Id"]
            for account in self.accounts[:OU_ACCOUNTS]:
                self.wire.ok_json("MoveAccount", {"AccountId": account, "SourceParentId": self.root, "DestinationParentId": self.ou})
        stop = self.emu.profile(f"ListAccountsForParent-{size}")
        seen, pages, elapsed = self._walk(self.root)
        ou_seen, ou_pages, ou_elapsed = 0, 0, 0.0
        for _ in range(OU_WALKS):
            s, p, e = self._walk(self.ou)
            ou_seen, ou_pages, ou_elapsed = s, ou_pages + p, ou_elapsed + e
        stop()
        in_ou = min(OU_ACCOUNTS, len(self.accounts))
        if seen != len(self.accounts) + 1 - in_ou:  # and the management account
            raise RuntimeError(f"ListAccountsForParent listed {seen} of {len(self.accounts) + 1 - in_ou} under the root")
        if ou_seen != in_ou:
            raise RuntimeError(f"ListAccountsForParent listed {ou_seen} of {in_ou} in the OU")
        root_ms, ou_ms = 1000 * elapsed / pages, 1000 * ou_elapsed / ou_pages
        self.say(f"  ListAccountsForParent: root {seen} accounts in {pages} pages of 20 in {elapsed:.2f}s "
                 f"({root_ms:.2f} ms/page); OU of {ou_seen}: {ou_ms:.2f} ms/page over {ou_pages} pages")
        return {
            "ListAccountsForParent": {"pages": pages, "accounts": seen, "seconds": round(elapsed, 2), "ms_per_page": round(root_ms, 3)},
            "ListAccountsForParent_ou": {"pages": ou_pages, "accounts": ou_seen, "seconds": round(ou_elapsed, 2), "ms_per_page": round(ou_ms, 3)},
        }

    def at_size(self, size: int, self_managed: bool, only_accounts_for_parent: bool = False) -> None:
        self.say(f"== {size} accounts")
        figures: dict[str, Any] = {}
        if only_accounts_for_parent:
            figures.update(self.accounts_for_parent(size))
            self.results["sizes"][str(size)] = figures
            return
        figures["service_managed"] = self.deploy(size, "SERVICE_MANAGED")
        if self_managed:
            figures["self_managed"] = self.deploy(size, "SELF_MANAGED")
        figures["sts"] = self.sts(size, f"bench-service-managed-{size}")
        figures.update(self.reads_(size))
        figures["emulator_rss_mib"] = self.emu.rss_mib()
        self.say(f"  emulator RSS: {figures['emulator_rss_mib']} MiB")
        self.results["sizes"][str(size)] = figures


def in_process_accounts_for_parent(sizes: list[int]) -> dict[str, Any]:
    """ListAccountsForParent per page inside this process, without HTTP: moto's own method (every
    account of the organization filtered and sorted per page) next to the emulator's (the index by
    parent), over the root and over an OU of `OU_ACCOUNTS`, at each size."""
    sys.path.insert(0, str(HERE))
    from moto.organizations.models import OrganizationsBackend, organizations_backends

    from strictaws import speed
    from strictaws.app import StrictApp

    app = StrictApp()
    app.reset_moto()
    org = organizations_backends[HUB]["aws"]
    org.create_organization(region=REGION, FeatureSet="ALL")
    root = org.org.root_id
    ou = org.create_organizational_unit(ParentId=root, Name="bench")["OrganizationalUnit"]["Id"]
    methods = {"moto": speed.moto_list_accounts_for_parent, "indexed": OrganizationsBackend.list_accounts_for_parent}

    def per_page(method: Any, parent: str) -> float:
        pages, token, began = 0, None, time.perf_counter()
        while True:
            _, token = method(org, max_results=20, next_token=token, parent_id=parent)
            pages += 1
            if not token:
                return 1000 * (time.perf_counter() - began) / pages

    figures: dict[str, Any] = {}
    created = 0
    for size in sizes:
        while created < size:
            org.create_account(AccountName=f"bench{created}", Email=f"bench{created}@example.com")
            if created < OU_ACCOUNTS:
                org.move_account(AccountId=org.accounts[-1].id, SourceParentId=root, DestinationParentId=ou)
            created += 1
        for name, method in methods.items():
            per_page(method, root)  # the index is built on first use
            root_ms, ou_ms = per_page(method, root), per_page(method, ou)
            figures.setdefault(str(size), {})[name] = {"root_ms_per_page": round(root_ms, 3), "ou_ms_per_page": round(ou_ms, 3)}
            print(f"{size} accounts, {name:7s}: ListAccountsForParent {root_ms:.3f} ms/page over the root, "
                  f"{ou_ms:.3f} ms/page over an OU of {OU_ACCOUNTS} (in process)", flush=True)
    app.reset_moto()
    return figures


def _ok(answer: tuple[int, dict[str, Any]], action: str) -> None:
    if answer[0] != 200:
        raise RuntimeError(f"{action}: {answer}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,5000,10000", help="organization sizes to measure at")
    parser.add_argument("--clients", type=int, default=16, help="concurrent connections (default 16)")
    parser.add_argument("--window", type=int, default=500, help="accounts per CreateAccount rate window")
    parser.add_argument("--sts-pairs", type=int, default=2000, help="AssumeRole+GetCallerIdentity pairs per size")
    parser.add_argument("--reads", type=int, default=1000, help="DescribeAccount / ListTagsForResource calls per size")
    parser.add_argument("--no-self-managed", action="store_true", help="skip the SELF_MANAGED StackSet")
    parser.add_argument("--only-accounts-for-parent", action="store_true",
                        help="measure ListAccountsForParent per page only (no StackSets, STS or other reads)")
    parser.add_argument("--in-process-accounts-for-parent", action="store_true",
                        help="ListAccountsForParent per page in this process, moto's method next to the index")
    parser.add_argument("--profile-dir", type=Path, help="write py-spy profiles of each phase here")
    parser.add_argument("--profile-rate", type=int, default=50, help="py-spy samples per second")
    parser.add_argument("--summarize", nargs="+", type=Path, help="only print the top entries of these py-spy raw profiles")
    args = parser.parse_args()
    if args.summarize:
        for raw in args.summarize:
            print(f"# {raw}\n{top_of_profile(raw)}")
        return 0
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if args.in_process_accounts_for_parent:
        print("EMUBENCH " + json.dumps({"accounts_for_parent_in_process": in_process_accounts_for_parent(sizes)}), flush=True)
        return 0
    emu = Emulator(args.profile_dir, args.profile_rate)
    bench = Bench(emu, args.clients, args.sts_pairs, args.reads)
    started = time.monotonic()
    try:
        bench.setup()
        for size in sizes:
            bench.grow(size, args.window)
            bench.at_size(size, not args.no_self_managed, args.only_accounts_for_parent)
    finally:
        emu.stop()
    bench.results["total_seconds"] = round(time.monotonic() - started, 1)
    bench.results["clients"] = args.clients
    print("EMUBENCH " + json.dumps(bench.results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
