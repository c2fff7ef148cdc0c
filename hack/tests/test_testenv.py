"""Tests of hack/testenv.py: the control plane it starts is real (version, garbage collection,
namespace deletion, audit log), and nothing outlives it however it ends."""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TESTENV = REPO / "hack" / "testenv.py"
STARTUP = 180  # generous: the machine may be busy compiling


def wait(check, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie has ended already
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def all_pids(info):
    return [info["supervisor_pid"], *info["pids"].values()]


def run_testenv(*args, **kwargs):
    return subprocess.run([sys.executable, str(TESTENV), *args], **kwargs)


def start_foreground(state, log_path, *extra):
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, str(TESTENV), "up", "--foreground", "--state-dir", str(state), *extra],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    env_json = state / "env.json"
    try:
        wait(lambda: env_json.exists() or proc.poll() is not None, STARTUP, "env.json")
    except AssertionError:
        proc.kill()
        raise
    assert env_json.exists(), log_path.read_text(errors="replace")
    return proc, json.loads(env_json.read_text())


def kubectl(info, *args, check=True, input=None):
    env = info["env"]
    return subprocess.run(
        [str(Path(env["KUBEBUILDER_ASSETS"]) / "kubectl"), "--kubeconfig", env["KUBECONFIG"], *args],
        check=check, capture_output=True, text=True, input=input,
    )


# --- one shared environment (with emulator and CRDs); the last test stops it ------------------

@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    base = tmp_path_factory.mktemp("shared")
    state = base / "state"
    proc, info = start_foreground(state, base / "supervisor.log", "--crds", str(REPO / "crds"))
    yield state, proc, info
    if proc.poll() is None:
        proc.terminate()
        proc.wait(60)


def test_env_files_export_everything_a_shell_needs(environment):
    state, _, info = environment
    env = info["env"]
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["EMULATOR_CONTROL_URL"] == env["AWS_ENDPOINT_URL"] + "/_strict"
    for key in ("KUBECONFIG", "KUBEBUILDER_ASSETS", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env.get(key), key
    assert set(info["pids"]) == {"etcd", "kube-apiserver", "kube-controller-manager", "emulator"}
    assert all(Path(p).is_file() for p in info["logs"].values())
    printed = subprocess.run(
        ["bash", "-c", f"source {state / 'env.sh'} && env"], capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    assert {f"{k}={v}" for k, v in env.items()} <= set(printed)


def test_env_sh_puts_the_pinned_kubectl_first_on_path_once(environment):
    state, _, info = environment
    bins = info["env"]["KUBEBUILDER_ASSETS"]
    script = (f"export PATH=/usr/bin:/bin; source {state / 'env.sh'}; source {state / 'env.sh'}; "
              'command -v kubectl; echo "$PATH"; kubectl version --client -o json; "$ACCOUNT_LINKER_PYTHON" -c "import boto3"')
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    which, path, version = out.split("\n", 2)
    assert which == f"{bins}/kubectl"
    assert path == f"{bins}:/usr/bin:/bin", "sourced twice, PATH holds the folder once"
    assert json.loads(version)["clientVersion"]["gitVersion"] == "v1.36.5"


def test_the_api_server_reports_the_pinned_release(environment):
    _, _, info = environment
    assert {"default", "kube-system"} <= set(kubectl(info, "get", "ns", "-o", "name").stdout.replace("namespace/", "").split())
    version = json.loads(kubectl(info, "get", "--raw", "/version").stdout)
    assert version["gitVersion"] == "v1.36.5"
    assert (version["major"], version["minor"]) == ("1", "36")


def test_crds_are_installed_and_established(environment):
    _, _, info = environment
    names = kubectl(info, "get", "crd", "-o", "name").stdout.split()
    assert "customresourcedefinition.apiextensions.k8s.io/linkedaccounts.accountlinker.dev" in names


def test_garbage_collection_and_namespace_deletion_work(environment):
    _, _, info = environment
    kubectl(info, "create", "namespace", "gc-test")
    owner = json.loads(kubectl(info, "create", "configmap", "owner", "-n", "gc-test", "-o", "json").stdout)
    dependent = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {
            "name": "dependent", "namespace": "gc-test",
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                                 "uid": owner["metadata"]["uid"]}],
        },
    }
    kubectl(info, "apply", "-f", "-", input=json.dumps(dependent))
    kubectl(info, "delete", "configmap", "owner", "-n", "gc-test")
    wait(lambda: kubectl(info, "get", "configmap", "dependent", "-n", "gc-test", check=False).returncode != 0,
         60, "the dependent ConfigMap to be garbage-collected")
    kubectl(info, "delete", "namespace", "gc-test", "--wait=false")
    wait(lambda: kubectl(info, "get", "namespace", "gc-test", check=False).returncode != 0,
         60, "the namespace to be deleted")


def test_writes_to_accountlinker_objects_and_their_status_are_audited(environment):
    state, _, info = environment
    kubectl(info, "create", "namespace", "audit-test")
    kubectl(info, "apply", "--server-side", "-n", "audit-test", "-f", str(REPO / "examples" / "linkedaccount.yaml"))
    name = kubectl(info, "get", "linkedaccounts", "-n", "audit-test", "-o", "name").stdout.split()[0]
    for generation in (1, 2):
        kubectl(info, "patch", "-n", "audit-test", name, "--subresource=status", "--type=merge",
                "-p", json.dumps({"status": {"observedGeneration": generation}}))
    kubectl(info, "create", "configmap", "not-audited", "-n", "audit-test")
    events = [json.loads(line) for line in (state / "audit.log").read_text().splitlines()]
    mine = [e for e in events if e["objectRef"].get("namespace") == "audit-test"]
    assert all(e["objectRef"]["apiGroup"] == "accountlinker.dev" for e in mine)
    assert [e["objectRef"].get("subresource") for e in mine if e["verb"] == "patch"] == [None, "status", "status"]
    assert {e["level"] for e in mine} == {"Metadata"}
    kubectl(info, "delete", "namespace", "audit-test", "--wait=false")


def test_the_emulator_answers(environment):
    _, _, info = environment
    with urllib.request.urlopen(info["env"]["EMULATOR_CONTROL_URL"] + "/health", timeout=5) as resp:
        assert resp.status == 200


def test_sigterm_stops_everything_and_removes_the_state(environment):
    state, proc, info = environment
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    wait(lambda: not any(alive(p) for p in all_pids(info)), 30, "the components to stop")
    assert not state.exists()


# --- however the supervisor's life ends, nothing outlives it --------------------------------

def test_nothing_outlives_a_killed_parent(tmp_path):
    state = tmp_path / "state"
    # An intermediate parent (like a test binary) that is SIGKILLed while the supervisor runs.
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys, time; subprocess.Popen(sys.argv[1:]); time.sleep(600)",
         sys.executable, str(TESTENV), "up", "--foreground", "--no-emulator", "--state-dir", str(state)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait(lambda: (state / "env.json").exists() or parent.poll() is not None, STARTUP, "env.json")
        info = json.loads((state / "env.json").read_text())
        parent.kill()
        parent.wait()
        wait(lambda: not any(alive(p) for p in all_pids(info)), 30, "the supervisor and components to stop")
        wait(lambda: not state.exists(), 10, "the state folder to be removed")
    finally:
        if parent.poll() is None:
            parent.kill()


def test_components_die_with_a_sigkilled_supervisor(tmp_path):
    proc, info = start_foreground(tmp_path / "state", tmp_path / "supervisor.log", "--no-emulator")
    proc.kill()
    proc.wait()
    wait(lambda: not any(alive(p) for p in info["pids"].values()), 10, "the components to die")


def test_a_stop_during_startup_is_prompt(tmp_path):
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, str(TESTENV), "up", "--foreground", "--no-emulator", "--state-dir", str(state)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    # Wait until the API server has been started, then stop the supervisor before it is ready.
    log = state / "logs" / "kube-apiserver.log"
    wait(lambda: log.exists() or proc.poll() is not None, 60, "the API server to be started")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) != 0
    assert not state.exists()
    assert not (state / "env.json").exists()


def test_background_mode_status_and_down(tmp_path):
    state = tmp_path / "bg"
    # A --crds path that does not exist is reported and skipped, not fatal.
    run_testenv("up", "--background", "--keep-state", "--no-emulator", "--state-dir", str(state),
            "--crds", str(tmp_path / "no-such-folder"), check=True, timeout=STARTUP + 60,
            stdin=subprocess.DEVNULL)
    info = json.loads((state / "env.json").read_text())
    assert "AWS_ENDPOINT_URL" not in info["env"]
    assert kubectl(info, "get", "ns", "default").returncode == 0
    status = run_testenv("status", "--state-dir", str(state), capture_output=True, text=True)
    assert status.returncode == 0 and "running" in status.stdout
    # A second `up` finds it running and leaves it alone.
    again = run_testenv("up", "--background", "--keep-state", "--no-emulator", "--state-dir", str(state),
                    capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "already running" in again.stderr
    run_testenv("down", "--state-dir", str(state), check=True, timeout=120)
    wait(lambda: not any(alive(p) for p in all_pids(info)), 30, "the components to stop")
    assert not (state / "env.sh").exists() and not (state / "supervisor.pid").exists()
    assert (state / "logs" / "kube-apiserver.log").exists()  # --keep-state
    status = run_testenv("status", "--state-dir", str(state), capture_output=True, text=True)
    assert status.returncode == 1 and "not running" in status.stdout


# --- fault injection: restart, pause and resume components of a running environment ---------

def test_components_restart_on_their_ports_and_pause(tmp_path):
    state = tmp_path / "state"
    proc, info = start_foreground(state, tmp_path / "supervisor.log", "--no-emulator")
    try:
        kubectl(info, "create", "namespace", "survives")
        old_pid = info["pids"]["kube-apiserver"]
        for component, extra in (("kube-apiserver", []), ("etcd", ["--kill"])):
            out = run_testenv("restart", "--state-dir", str(state), component, *extra,
                              capture_output=True, text=True, timeout=300)
            assert out.returncode == 0, out.stderr
            answer = json.loads(out.stdout)
            assert answer["ok"] and answer["pid"] != info["pids"][component]
            assert alive(answer["pid"])
            assert json.loads((state / "env.json").read_text())["pids"][component] == answer["pid"]
        assert not alive(old_pid)
        # Same ports, same data: the old kubeconfig works and the namespace is still there.
        wait(lambda: kubectl(info, "get", "namespace", "survives", check=False).returncode == 0,
             60, "the API server to answer after the etcd restart")
        assert proc.poll() is None, "the supervisor kept running through the restarts"

        assert run_testenv("pause", "--state-dir", str(state), "etcd").returncode == 0
        paused = kubectl(info, "create", "configmap", "during-pause", "-n", "survives",
                         "--request-timeout=3s", check=False)
        assert paused.returncode != 0, "etcd is paused: a write cannot be stored"
        assert run_testenv("resume", "--state-dir", str(state), "etcd").returncode == 0
        wait(lambda: kubectl(info, "get", "namespace", "survives", "--request-timeout=5s",
                             check=False).returncode == 0, 60, "reads after resuming etcd")

        refused = run_testenv("restart", "--state-dir", str(state), "emulator",
                              capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0 and "keeps its state in memory" in refused.stdout
    finally:
        proc.terminate()
        proc.wait(60)
