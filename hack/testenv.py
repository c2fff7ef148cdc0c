#!/usr/bin/env python3
"""Local test environment for account-linker: etcd, kube-apiserver and kube-controller-manager on
free loopback ports with generated certificates, plus the strict AWS emulator.

  testenv.py up --state-dir DIR [--foreground | --background] [--crds PATH ...] [--no-emulator]
  testenv.py down --state-dir DIR
  testenv.py status --state-dir DIR

`DIR/env.sh` and `DIR/env.json` are written (atomically) only once everything is ready: they are
the readiness signal. In the foreground the supervisor stops everything on SIGTERM/SIGINT and when
its parent process dies; every component dies with the supervisor (PR_SET_PDEATHSIG), so a test
binary that exits or is killed leaves nothing behind.
"""
import argparse
import ctypes
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parent.parent
PR_SET_PDEATHSIG = 1
HUB_ACCESS_KEY = "testing"


def log(msg):
    print(f"testenv: {msg}", file=sys.stderr, flush=True)


# --- certificates -----------------------------------------------------------------------------

def _key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(path, key):
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _write_cert(path, cert):
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(cn, org=None):
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def make_pki(pki: Path):
    pki.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=2)
    ca_key = _key()
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("account-linker-test-ca"))
        .issuer_name(_name("account-linker-test-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(pki / "ca.key", ca_key)
    _write_cert(pki / "ca.crt", ca)

    def issue(stem, cn, org=None, server=False):
        key = _key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn, org))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        x509.DNSName("kubernetes.default.svc"),
                    ]
                ),
                critical=False,
            ).add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        else:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
        _write_key(pki / f"{stem}.key", key)
        _write_cert(pki / f"{stem}.crt", builder.sign(ca_key, hashes.SHA256()))

    issue("apiserver", "kube-apiserver", server=True)
    issue("admin", "account-linker-admin", org="system:masters")
    issue("controller-manager", "system:kube-controller-manager")
    sa = _key()
    _write_key(pki / "sa.key", sa)
    (pki / "sa.pub").write_bytes(
        sa.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def kubeconfig(path: Path, server: str, pki: Path, user: str):
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")}}],
                "users": [{"name": user, "user": {"client-certificate": str(pki / f"{user}.crt"), "client-key": str(pki / f"{user}.key")}}],
                "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
                "current-context": "local",
            },
            indent=2,
        )
    )
    path.chmod(0o600)


# --- processes --------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    # Every component dies with the supervisor, however the supervisor ends.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    os.setpgid(0, 0)


class Component:
    def __init__(self, name, argv, state: Path, env=None, cwd=None):
        self.name = name
        self.log_path = state / "logs" / f"{name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent, env=env, cwd=cwd,
        )

    def alive(self):
        return self.proc.poll() is None

    def tail(self, lines=40):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout=10):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class StartupError(Exception):
    pass


def wait_for(what, check, component, timeout):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        if component is not None and not component.alive():
            raise StartupError(f"{component.name} exited while waiting for {what}:\n{component.tail()}")
        try:
            result = check()
            if result:
                return result
        except Exception as err:  # noqa: BLE001 - any failure means "not yet"
            last = err
        time.sleep(0.2)
    tail = component.tail() if component else ""
    raise StartupError(f"timed out waiting for {what} (last error: {last})\n{tail}")


def assets_dir():
    out = subprocess.run(["bash", str(REPO / "hack/control-plane-assets.sh")], check=True, stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip())


AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    verbs: [create, update, patch, delete]
    resources:
      - group: accountlinker.dev
        resources: ["*", "*/status"]
  - level: None
"""


class Environment:
    def __init__(self, state: Path, with_emulator: bool, crds):
        self.state = state
        self.with_emulator = with_emulator
        self.crds = crds
        self.components = []
        self.info = {}

    def start(self):
        state = self.state
        bins = assets_dir()
        pki = state / "pki"
        make_pki(pki)
        env = {}

        # etcd, retried on a port clash.
        for attempt in range(5):
            client_port, peer_port = free_port(), free_port()
            etcd = Component(
                "etcd",
                [
                    str(bins / "etcd"), "--name", "test", "--data-dir", str(state / "etcd"),
                    "--listen-client-urls", f"http://127.0.0.1:{client_port}",
                    "--advertise-client-urls", f"http://127.0.0.1:{client_port}",
                    "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
                    "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
                    "--initial-cluster", f"test=http://127.0.0.1:{peer_port}",
                    "--unsafe-no-fsync", "--log-level", "warn",
                ],
                state,
            )
            try:
                wait_for("etcd", lambda: urllib.request.urlopen(f"http://127.0.0.1:{client_port}/health", timeout=2).status == 200, etcd, 30)
                break
            except StartupError:
                etcd.stop()
                shutil.rmtree(state / "etcd", ignore_errors=True)
                if attempt == 4:
                    raise
        self.components.append(etcd)

        (state / "audit-policy.yaml").write_text(AUDIT_POLICY)
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        for attempt in range(5):
            port = free_port()
            apiserver = Component(
                "kube-apiserver",
                [
                    str(bins / "kube-apiserver"),
                    "--etcd-servers", f"http://127.0.0.1:{client_port}",
                    "--bind-address", "127.0.0.1", "--secure-port", str(port),
                    "--advertise-address", "127.0.0.1",
                    "--tls-cert-file", str(pki / "apiserver.crt"), "--tls-private-key-file", str(pki / "apiserver.key"),
                    "--client-ca-file", str(pki / "ca.crt"),
                    "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
                    "--service-account-key-file", str(pki / "sa.pub"),
                    "--service-account-signing-key-file", str(pki / "sa.key"),
                    "--authorization-mode", "RBAC",
                    "--service-cluster-ip-range", "10.96.0.0/16",
                    "--allow-privileged=true",
                    "--audit-policy-file", str(state / "audit-policy.yaml"),
                    "--audit-log-path", str(state / "audit.log"),
                    "--audit-log-maxsize", "100",
                    "--enable-priority-and-fairness=false",
                ],
                state,
            )
            url = f"https://127.0.0.1:{port}"
            try:
                wait_for(
                    "kube-apiserver /readyz",
                    lambda: urllib.request.urlopen(f"{url}/readyz", context=ctx, timeout=3).status == 200,
                    apiserver,
                    90,
                )
                break
            except StartupError:
                apiserver.stop()
                if attempt == 4:
                    raise
        self.components.append(apiserver)
        admin_kc = state / "kubeconfig"
        kubeconfig(admin_kc, url, pki, "admin")
        kcm_kc = state / "controller-manager.kubeconfig"
        kubeconfig(kcm_kc, url, pki, "controller-manager")

        kcm = Component(
            "kube-controller-manager",
            [
                str(bins / "kube-controller-manager"),
                "--kubeconfig", str(kcm_kc),
                "--authentication-kubeconfig", str(kcm_kc),
                "--authorization-kubeconfig", str(kcm_kc),
                "--service-account-private-key-file", str(pki / "sa.key"),
                "--root-ca-file", str(pki / "ca.crt"),
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                "--controllers", "*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service,-route,-persistentvolume-binder,-attachdetach,-persistentvolume-expander,-ephemeral-volume,-pvc-protection,-pv-protection,-ttl",
                "--bind-address", "127.0.0.1", "--secure-port", str(free_port()),
                "--concurrent-gc-syncs", "5",
            ],
            state,
        )
        self.components.append(kcm)
        kubectl = [str(bins / "kubectl"), "--kubeconfig", str(admin_kc)]
        # Proof that the controller manager works: the service-account controller creates the
        # default ServiceAccount of the default namespace.
        wait_for(
            "kube-controller-manager (default ServiceAccount)",
            lambda: subprocess.run(kubectl + ["get", "serviceaccount", "default", "-n", "default"], capture_output=True).returncode == 0,
            kcm,
            90,
        )

        if self.crds:
            for path in self.crds:
                subprocess.run(kubectl + ["apply", "--server-side", "-f", str(path)], check=True, capture_output=True)
            subprocess.run(
                kubectl + ["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"],
                check=True, capture_output=True,
            )

        env.update(
            KUBECONFIG=str(admin_kc),
            KUBEBUILDER_ASSETS=str(bins),
            AWS_REGION="us-east-1",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_ACCESS_KEY_ID=HUB_ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=HUB_ACCESS_KEY,
        )
        if self.with_emulator:
            emu = Component(
                "emulator",
                [sys.executable, "-m", "strictaws", "--host", "127.0.0.1", "--port", "0"],
                state,
                env={**os.environ, "PYTHONPATH": str(REPO / "emulator")},
            )
            self.components.append(emu)

            def listening():
                for line in emu.log_path.read_text(errors="replace").splitlines():
                    if line.startswith("strictaws listening on "):
                        return line.split()[-1]
                return None

            emu_url = wait_for("the AWS emulator", listening, emu, 30)
            wait_for(
                "emulator health",
                lambda: urllib.request.urlopen(f"{emu_url}/_strict/health", timeout=2).status == 200,
                emu,
                15,
            )
            env.update(AWS_ENDPOINT_URL=emu_url, EMULATOR_CONTROL_URL=f"{emu_url}/_strict")

        self.info = {
            "env": env,
            "pids": {c.name: c.proc.pid for c in self.components},
            "logs": {c.name: str(c.log_path) for c in self.components},
            "supervisor_pid": os.getpid(),
        }
        write_atomic(state / "env.json", json.dumps(self.info, indent=2))
        write_atomic(state / "env.sh", "".join(f"export {k}={shell_quote(v)}\n" for k, v in env.items()))

    def stop(self):
        for c in reversed(self.components):
            c.stop()
        self.components.clear()


def shell_quote(value):
    return "'" + value.replace("'", "'\\''") + "'"


def write_atomic(path: Path, text: str):
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# --- commands ---------------------------------------------------------------------------------

def run_foreground(args, watch_parent=True):
    state = Path(args.state_dir).resolve()
    # Every start is a fresh cluster: etcd data or emulator state of an earlier run would
    # disagree with each other (the emulator keeps nothing across restarts).
    shutil.rmtree(state / "etcd", ignore_errors=True)
    shutil.rmtree(state / "pki", ignore_errors=True)
    state.mkdir(parents=True, exist_ok=True)
    (state / "supervisor.pid").write_text(str(os.getpid()))
    parent = os.getppid()
    stopping = {"flag": False}

    def on_signal(signum, _frame):
        stopping["flag"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    environment = Environment(state, not args.no_emulator, [Path(p) for p in (args.crds or [])])
    code = 0
    try:
        environment.start()
        log(f"ready: source {state / 'env.sh'}")
        while not stopping["flag"]:
            if watch_parent and os.getppid() != parent:
                log("parent process gone; stopping")
                break
            dead = [c.name for c in environment.components if not c.alive()]
            if dead:
                log(f"component exited: {', '.join(dead)}; stopping")
                code = 1
                break
            time.sleep(0.5)
    except StartupError as err:
        log(f"startup failed: {err}")
        code = 1
    finally:
        environment.stop()
        for name in ("env.sh", "env.json", "supervisor.pid"):
            (state / name).unlink(missing_ok=True)
        if not args.keep_state:
            shutil.rmtree(state, ignore_errors=True)
    return code


def up(args):
    if not args.background:
        return run_foreground(args)
    state = Path(args.state_dir).resolve()
    if (state / "supervisor.pid").exists() and _running(state):
        log(f"already running; source {state / 'env.sh'}")
        return 0
    state.mkdir(parents=True, exist_ok=True)
    (state / "env.json").unlink(missing_ok=True)
    argv = [sys.executable, __file__, "_serve", "--state-dir", str(state)]
    if args.no_emulator:
        argv.append("--no-emulator")
    if args.keep_state:
        argv.append("--keep-state")
    for p in args.crds or []:
        argv += ["--crds", str(Path(p).resolve())]
    supervisor_log = state / "supervisor.log"
    with open(supervisor_log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        if (state / "env.sh").exists():
            log(f"ready: source {state / 'env.sh'}")
            return 0
        if proc.poll() is not None:
            log(f"startup failed:\n{supervisor_log.read_text(errors='replace')[-4000:]}")
            return 1
        time.sleep(0.3)
    proc.terminate()
    log("startup timed out")
    return 1


def _running(state: Path):
    try:
        pid = int((state / "supervisor.pid").read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def down(args):
    state = Path(args.state_dir).resolve()
    pid = _running(state)
    if not pid:
        log("not running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            log("stopped")
            return 0
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    log("killed")
    return 0


def status(args):
    state = Path(args.state_dir).resolve()
    pid = _running(state)
    if pid and (state / "env.sh").exists():
        print(f"running (supervisor pid {pid}); source {state / 'env.sh'}")
        return 0
    print("not running")
    return 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "_serve"):
        p = sub.add_parser(name)
        p.add_argument("--state-dir", required=True)
        mode = p.add_mutually_exclusive_group()
        mode.add_argument("--foreground", action="store_true")
        mode.add_argument("--background", action="store_true")
        p.add_argument("--crds", action="append", help="CRD file or folder to install")
        p.add_argument("--no-emulator", action="store_true")
        p.add_argument("--keep-state", action="store_true", help="do not delete the state folder on stop")
    for name in ("down", "status"):
        sub.add_parser(name).add_argument("--state-dir", required=True)
    args = parser.parse_args(argv)
    if args.command == "up":
        return up(args)
    if args.command == "_serve":
        return run_foreground(args, watch_parent=False)
    if args.command == "down":
        return down(args)
    return status(args)


if __name__ == "__main__":
    sys.exit(main())
