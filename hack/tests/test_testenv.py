"""Tests of hack/testenv.py: the control plane it starts is real (version, garbage collection,
namespace deletion), and nothing outlives it however it ends."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TESTENV = REPO / "hack" / "testenv.py"


def wait(check, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # A zombie is gone for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def start_foreground(state, *extra):
    proc = subprocess.Popen(
        [sys.executable, str(TESTENV), "up", "--foreground", "--state-dir", str(state), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    env_json = state / "env.json"
    try:
        wait(lambda: env_json.exists() or proc.poll() is not None, 180, "env.json")
    except AssertionError:
        proc.kill()
        raise
    assert env_json.exists(), proc.stdout.read().decode(errors="replace")
    return proc, json.loads(env_json.read_text())


@pytest.fixture(scope="module")
def environment():
    state = Path(tempfile.mkdtemp(prefix="testenv-test-")) / "state"
    proc, info = start_foreground(state, "--crds", str(REPO / "crds"))
    yield state, proc, info
    if proc.poll() is None:
        proc.terminate()
        proc.wait(60)


def kubectl(info, *args, check=True, input=None):
    env = info["env"]
    return subprocess.run(
        [str(Path(env["KUBEBUILDER_ASSETS"]) / "kubectl"), "--kubeconfig", env["KUBECONFIG"], *args],
        check=check, capture_output=True, text=True, input=input,
    )


def test_env_files_export_everything_a_shell_needs(environment):
    state, _, info = environment
    env = info["env"]
    for key in ("KUBECONFIG", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "EMULATOR_CONTROL_URL"):
        assert env.get(key), key
    sourced = subprocess.run(
        ["bash", "-c", f"source {state / 'env.sh'} && echo $KUBECONFIG $EMULATOR_CONTROL_URL"],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    assert sourced == [env["KUBECONFIG"], env["EMULATOR_CONTROL_URL"]]


def test_the_api_server_reports_the_pinned_release(environment):
    _, _, info = environment
    version = json.loads(kubectl(info, "get", "--raw", "/version").stdout)
    assert version["gitVersion"] == "v1.36.5"
    assert (version["major"], version["minor"]) == ("1", "36")


def test_crds_are_installed(environment):
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
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}],
        },
    }
    kubectl(info, "apply", "-f", "-", input=json.dumps(dependent))
    kubectl(info, "delete", "configmap", "owner", "-n", "gc-test")
    wait(lambda: kubectl(info, "get", "configmap", "dependent", "-n", "gc-test", check=False).returncode != 0, 60, "dependent collected")
    kubectl(info, "delete", "namespace", "gc-test", "--wait=false")
    wait(lambda: kubectl(info, "get", "namespace", "gc-test", check=False).returncode != 0, 60, "namespace deleted")


def test_the_emulator_answers(environment):
    _, _, info = environment
    import urllib.request
    with urllib.request.urlopen(info["env"]["EMULATOR_CONTROL_URL"] + "/health", timeout=5) as resp:
        assert resp.status == 200


def test_sigterm_stops_everything_and_removes_the_state(environment):
    state, proc, info = environment
    pids = list(info["pids"].values())
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    wait(lambda: not any(alive(p) for p in pids), 30, "components to stop")
    assert not state.exists()


def test_nothing_outlives_a_killed_parent(tmp_path):
    state = tmp_path / "state"
    # An intermediate parent (like a test binary) that is SIGKILLed while the supervisor runs.
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys, time; subprocess.Popen(sys.argv[1:]); time.sleep(600)",
         sys.executable, str(TESTENV), "up", "--foreground", "--no-emulator", "--state-dir", str(state)],
    )
    try:
        wait(lambda: (state / "env.json").exists(), 180, "env.json")
        info = json.loads((state / "env.json").read_text())
        pids = [info["supervisor_pid"], *info["pids"].values()]
        parent.kill()
        parent.wait()
        wait(lambda: not any(alive(p) for p in pids), 30, "supervisor and components to stop")
        wait(lambda: not state.exists(), 10, "state folder removed")
    finally:
        if parent.poll() is None:
            parent.kill()


def test_background_mode_and_down(tmp_path):
    state = tmp_path / "bg"
    subprocess.run(
        [sys.executable, str(TESTENV), "up", "--background", "--keep-state", "--no-emulator", "--state-dir", str(state)],
        check=True, timeout=240,
    )
    info = json.loads((state / "env.json").read_text())
    status = subprocess.run([sys.executable, str(TESTENV), "status", "--state-dir", str(state)], capture_output=True, text=True)
    assert status.returncode == 0 and "running" in status.stdout
    subprocess.run([sys.executable, str(TESTENV), "down", "--state-dir", str(state)], check=True, timeout=120)
    pids = [info["supervisor_pid"], *info["pids"].values()]
    wait(lambda: not any(alive(p) for p in pids), 30, "components to stop")
    assert not (state / "env.sh").exists()
