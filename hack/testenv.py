#!/usr/bin/env python3
"""Local test environment for account-linker: etcd, kube-apiserver and kube-controller-manager on
free loopback ports with freshly generated certificates, plus the strict AWS emulator.

  testenv.py up --state-dir DIR [--foreground | --background] [--crds PATH ...] [--no-emulator]
                [--emulator-python PY] [--keep-state]
  testenv.py down --state-dir DIR
  testenv.py status --state-dir DIR
  testenv.py restart --state-dir DIR COMPONENT [--kill]
  testenv.py pause|resume --state-dir DIR COMPONENT

`DIR/env.sh` and `DIR/env.json` are written atomically, and only once everything is ready: they
are the readiness signal. In the foreground the supervisor stops everything on SIGTERM/SIGINT and
when its parent process exits; every component is tied to the supervisor (PR_SET_PDEATHSIG), so a
test binary that exits or is killed leaves nothing behind. `--background` detaches a supervisor
(its pid in `DIR/supervisor.pid`) and returns once the environment is ready; `down` stops it.
Logs of every component are in `DIR/logs/<name>.log`.

Fault tests drive a running environment: `restart` asks the supervisor (a request file in
`DIR/control/` and SIGUSR1) to stop a component (SIGTERM, or SIGKILL with `--kill`) and start it
again with the same command line and ports, and answers once it is ready again (env.json then
holds its new pid); `pause`/`resume` SIGSTOP/SIGCONT a component (e.g. etcd) without the
supervisor noticing anything.
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
import time
import urllib.error
import urllib.request
from pathlib import Path

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ImportError:  # pragma: no cover - a usage error, not a code path
    sys.exit("testenv: the `cryptography` package is missing; run me with the python of "
             "$(bash hack/venv.sh)/bin/python")

REPO = Path(__file__).resolve().parent.parent
PR_SET_PDEATHSIG = 1
# moto maps any access key it does not know to its default account, 123456789012.
DUMMY_ACCESS_KEY = "testing"
REGION = "us-east-1"
# Every component carries this variable (value: the state folder) so that `down` can tell a
# straggler of this environment from an unrelated process that reused its pid.
MARKER_VAR = "ACCOUNT_LINKER_TESTENV_STATE"
ENV_FILES = ("env.sh", "env.json")

APISERVER_READY_TIMEOUT = 120
KCM_READY_TIMEOUT = 120
ETCD_READY_TIMEOUT = 30
EMULATOR_READY_TIMEOUT = 60
BACKGROUND_READY_TIMEOUT = 420
STOP_GRACE = 10
PORT_ATTEMPTS = 5


def log(msg):
    print(f"testenv: {msg}", file=sys.stderr, flush=True)


class StartupError(Exception):
    pass


class Interrupted(BaseException):
    """Startup was abandoned: a stop signal arrived or the parent process went away. A
    BaseException, so that no "not ready yet" handler swallows it."""


# --- certificates -----------------------------------------------------------------------------

def _new_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _save_key(path: Path, key):
    path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ))
    path.chmod(0o600)


def _save_cert(path: Path, cert):
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _subject(common_name, organization=None):
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def make_pki(pki: Path):
    """CA, API server serving certificate, client certificates and the service-account keys."""
    pki.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    not_before, not_after = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=7)

    ca_key = _new_key()
    ca_name = _subject("account-linker-test-ca")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False,
        ), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _save_key(pki / "ca.key", ca_key)
    _save_cert(pki / "ca.crt", ca_cert)

    def issue(stem, common_name, organization=None, serving=False):
        key = _new_key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(_subject(common_name, organization)).issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=True,
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if serving:
            names = [x509.DNSName(n) for n in (
                "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            )]
            names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", "::1", "10.96.0.1")]
            builder = (
                builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            )
        else:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        _save_key(pki / f"{stem}.key", key)
        _save_cert(pki / f"{stem}.crt", builder.sign(ca_key, hashes.SHA256()))

    issue("apiserver", "kube-apiserver", serving=True)
    issue("admin", "account-linker-admin", organization="system:masters")
    issue("controller-manager", "system:kube-controller-manager")

    sa_key = _new_key()
    _save_key(pki / "sa.key", sa_key)
    (pki / "sa.pub").write_bytes(sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def write_kubeconfig(path: Path, server: str, pki: Path, user: str):
    """A kubeconfig (JSON is valid YAML) referring to the certificate files in `pki`."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "account-linker-test",
                      "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")}}],
        "users": [{"name": user,
                   "user": {"client-certificate": str(pki / f"{user}.crt"),
                            "client-key": str(pki / f"{user}.key")}}],
        "contexts": [{"name": "account-linker-test",
                      "context": {"cluster": "account-linker-test", "user": user}}],
        "current-context": "account-linker-test",
    }
    write_atomic(path, json.dumps(config, indent=2) + "\n", mode=0o600)


# --- helpers ----------------------------------------------------------------------------------

def write_atomic(path: Path, text: str, mode=0o644):
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    os.replace(tmp, path)


def shell_quote(value: str):
    return "'" + value.replace("'", "'\\''") + "'"


def env_sh(env: dict, bins: Path) -> str:
    """The shell form of the environment: its variables, the pinned kubectl first on PATH (once,
    however often the file is sourced), and the emulator venv's python as ACCOUNT_LINKER_PYTHON
    (the interpreter running this script: hack/aws-admin.py needs its boto3)."""
    bins_q = shell_quote(str(bins))
    return ("# Written by hack/testenv.py; removed when the environment stops.\n"
            + "".join(f"export {k}={shell_quote(v)}\n" for k, v in env.items())
            + f"export ACCOUNT_LINKER_PYTHON={shell_quote(sys.executable)}\n"
            + f'case ":$PATH:" in *:{bins_q}:*) ;; *) export PATH={bins_q}":$PATH" ;; esac\n')


def free_port():
    """A loopback port that was free a moment ago (a clash is handled by retrying startup)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has ended already
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def pid_environ(pid):
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def pid_cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _component_preexec():
    # Runs in the child between fork and exec: die with the supervisor however it ends (even
    # SIGKILL), and keep terminal signals (Ctrl-C) away so the supervisor controls the order.
    if _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        os._exit(127)
    os.setpgid(0, 0)


def assets_dir():
    """The folder with etcd, kube-apiserver, kube-controller-manager and kubectl."""
    names = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
    given = os.environ.get("KUBEBUILDER_ASSETS")
    if given and all(os.access(Path(given) / n, os.X_OK) for n in names):
        return Path(given).resolve()
    out = subprocess.run(["bash", str(REPO / "hack" / "control-plane-assets.sh")],
                         stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    if out.returncode != 0:
        raise StartupError("hack/control-plane-assets.sh failed (its output is above)")
    return Path(out.stdout.strip()).resolve()


class Guard:
    """Decides whether startup should be abandoned; consulted by every wait."""

    def __init__(self, parent_pid=None):
        self.parent_pid = parent_pid
        self.stop_requested = False

    def check(self):
        if self.stop_requested:
            raise Interrupted("stop requested")
        if self.parent_gone():
            raise Interrupted("parent process exited")

    def parent_gone(self):
        return self.parent_pid is not None and os.getppid() != self.parent_pid


# --- components -------------------------------------------------------------------------------

class Component:
    def __init__(self, name, argv, state: Path, env, append=False):
        self.name = name
        self.argv = argv
        self.env = env
        self.state = state
        self.log_path = state / "logs" / f"{name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab" if append else "wb")
        try:
            self.proc = subprocess.Popen(
                argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=_component_preexec, env=env, close_fds=True,
            )
        except OSError as err:
            self._log.close()
            raise StartupError(f"cannot start {name} ({argv[0]}): {err}") from None

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def tail(self, lines=30):
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "    (no log)"
        return "\n".join("    " + line[:400] for line in text.splitlines()[-lines:])

    def port_clash(self):
        try:
            return "address already in use" in self.log_path.read_text(errors="replace").lower()
        except OSError:
            return False

    def terminate(self):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"{self.name} did not stop within {timeout}s; killing it")
            self.proc.kill()
            self.proc.wait()
        self._log.close()

    def stop(self, timeout=STOP_GRACE):
        self.terminate()
        self.wait(timeout)

    def relaunched(self):
        """The same command line started again (its log continues)."""
        return Component(self.name, self.argv, self.state, self.env, append=True)


def wait_until(what, check, component, timeout, guard: Guard):
    """Polls `check` until it returns something truthy; fails early when `component` exits."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        guard.check()
        if component is not None and not component.alive():
            raise StartupError(
                f"{component.name} exited (code {component.proc.returncode}) while waiting for {what}; "
                f"last lines of {component.log_path}:\n{component.tail()}")
        try:
            result = check()
            if result:
                return result
        except Exception as err:  # noqa: BLE001 - any failure means "not yet"
            last_error = err
        if time.monotonic() > deadline:
            detail = f"\nlast lines of {component.log_path}:\n{component.tail()}" if component else ""
            raise StartupError(f"timed out after {timeout}s waiting for {what} (last error: {last_error}){detail}")
        time.sleep(0.2)


def http_ok(url, context=None):
    try:
        with urllib.request.urlopen(url, context=context, timeout=3) as resp:
            return resp.status == 200
    except urllib.error.HTTPError:
        return False


AUDIT_POLICY = """\
# Written by hack/testenv.py: one Metadata entry per write to an accountlinker.dev object or its
# status, so tests can count status updates; nothing else is logged.
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    verbs: ["create", "update", "patch", "delete", "deletecollection"]
    resources:
      - group: "accountlinker.dev"
        resources: ["*", "*/status"]
  - level: None
"""

# Controllers that need nodes, a cloud provider or volumes have nothing to do here.
KCM_CONTROLLERS = ",".join([
    "*",
    "-node-ipam-controller", "-node-lifecycle-controller", "-cloud-node-lifecycle-controller",
    "-service-lb-controller", "-node-route-controller", "-ttl-controller",
    "-persistentvolume-binder-controller", "-persistentvolume-attach-detach-controller",
    "-persistentvolume-expander-controller", "-persistentvolume-protection-controller",
    "-persistentvolumeclaim-protection-controller", "-ephemeral-volume-controller",
])


class Environment:
    def __init__(self, state: Path, bins: Path, guard: Guard, with_emulator=True, crds=(),
                 emulator_python=None):
        self.state = state
        self.bins = bins
        self.guard = guard
        self.with_emulator = with_emulator
        self.crds = list(crds)
        self.emulator_python = emulator_python or sys.executable
        self.components = []
        self.child_env = {**os.environ, MARKER_VAR: str(state)}
        # How `restart` knows a component is back: name -> (what, check).
        self.ready_checks = {}
        self.info = {}

    # Each start_* appends its component as soon as it exists, so `stop` always sees it.
    def _start(self, name, argv, env=None):
        component = Component(name, argv, self.state, env or self.child_env)
        self.components.append(component)
        return component

    def _discard(self, component):
        component.stop()
        self.components.remove(component)

    def _with_port_retry(self, name, launch):
        """`launch()` starts a component on fresh ports and waits for it; a bind clash retries."""
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                return launch()
            except StartupError:
                component = next((c for c in reversed(self.components) if c.name == name), None)
                if component is None or not component.port_clash() or attempt == PORT_ATTEMPTS:
                    raise
                log(f"{name}: port taken, retrying on another ({attempt}/{PORT_ATTEMPTS})")
                self._discard(component)

    def start_etcd(self):
        def launch():
            data_dir = self.state / "etcd"
            shutil.rmtree(data_dir, ignore_errors=True)
            client, peer = free_port(), free_port()
            etcd = self._start("etcd", [
                str(self.bins / "etcd"), "--name", "testenv", "--data-dir", str(data_dir),
                "--listen-client-urls", f"http://127.0.0.1:{client}",
                "--advertise-client-urls", f"http://127.0.0.1:{client}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", f"testenv=http://127.0.0.1:{peer}",
                "--initial-cluster-state", "new",
                "--unsafe-no-fsync", "--log-level", "warn",
            ])
            url = f"http://127.0.0.1:{client}"
            wait_until("etcd /health", lambda: http_ok(f"{url}/health"), etcd, ETCD_READY_TIMEOUT, self.guard)
            self.ready_checks["etcd"] = ("etcd /health", lambda: http_ok(f"{url}/health"))
            return url
        return self._with_port_retry("etcd", launch)

    def start_apiserver(self, etcd_url, pki: Path):
        policy = self.state / "audit-policy.yaml"
        write_atomic(policy, AUDIT_POLICY)
        tls = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        tls.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))

        def launch():
            port = free_port()
            apiserver = self._start("kube-apiserver", [
                str(self.bins / "kube-apiserver"),
                "--etcd-servers", etcd_url,
                "--bind-address", "127.0.0.1", "--secure-port", str(port),
                "--advertise-address", "127.0.0.1",
                # The built-in `kubernetes` Endpoints cannot hold a loopback address.
                "--endpoint-reconciler-type", "none",
                "--tls-cert-file", str(pki / "apiserver.crt"),
                "--tls-private-key-file", str(pki / "apiserver.key"),
                "--client-ca-file", str(pki / "ca.crt"),
                "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
                "--service-account-key-file", str(pki / "sa.pub"),
                "--service-account-signing-key-file", str(pki / "sa.key"),
                "--authorization-mode", "RBAC",
                "--service-cluster-ip-range", "10.96.0.0/16",
                "--allow-privileged=true",
                "--audit-policy-file", str(policy),
                "--audit-log-path", str(self.state / "audit.log"),
                "--audit-log-maxsize", "200",
                "--audit-log-mode", "blocking",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
            ])
            url = f"https://127.0.0.1:{port}"
            wait_until("kube-apiserver /readyz", lambda: http_ok(f"{url}/readyz", tls), apiserver,
                       APISERVER_READY_TIMEOUT, self.guard)
            self.ready_checks["kube-apiserver"] = ("kube-apiserver /readyz",
                                                   lambda: http_ok(f"{url}/readyz", tls))
            return url
        return self._with_port_retry("kube-apiserver", launch), tls

    def start_controller_manager(self, url, pki: Path, kubeconfig: Path, tls):
        kcm = self._start("kube-controller-manager", [
            str(self.bins / "kube-controller-manager"),
            "--kubeconfig", str(kubeconfig),
            "--service-account-private-key-file", str(pki / "sa.key"),
            "--root-ca-file", str(pki / "ca.crt"),
            "--leader-elect=false",
            # Each controller acts as its own service account, with the bootstrap RBAC roles.
            "--use-service-account-credentials=true",
            "--controllers", KCM_CONTROLLERS,
            "--secure-port", "0",  # no health endpoint needed, and no port to clash
            "--concurrent-gc-syncs", "5",
            "--profiling=false",
        ])
        # The service-account controller creating `default/default` proves it is working.
        wait_until(
            "kube-controller-manager (the default ServiceAccount of namespace default)",
            lambda: http_ok(f"{url}/api/v1/namespaces/default/serviceaccounts/default", tls),
            kcm, KCM_READY_TIMEOUT, self.guard,
        )

    def install_crds(self, kubeconfig: Path):
        kubectl = [str(self.bins / "kubectl"), "--kubeconfig", str(kubeconfig)]
        applied = False
        for path in self.crds:
            if path.is_dir():
                has_manifests = any(p.suffix in (".yaml", ".yml", ".json") for p in path.iterdir())
            else:
                has_manifests = path.is_file()
            if not has_manifests:
                log(f"--crds {path}: no such file, or a folder without manifests; skipped")
                continue
            self._kubectl(kubectl + ["apply", "--server-side", "-f", str(path)], f"applying {path}")
            applied = True
        if applied:
            self._kubectl(kubectl + ["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"],
                          "waiting for the CRDs to be Established")

    def _kubectl(self, argv, what):
        self.guard.check()
        out = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
        if out.returncode != 0:
            raise StartupError(f"kubectl failed {what}:\n{out.stdout}{out.stderr}")

    def start_emulator(self):
        env = {**self.child_env, "PYTHONPATH": str(REPO / "emulator"), "PYTHONUNBUFFERED": "1"}
        emulator = self._start("emulator", [
            self.emulator_python, "-m", "strictaws", "--host", "127.0.0.1", "--port", "0",
        ], env=env)

        def listening():
            for line in emulator.log_path.read_text(errors="replace").splitlines():
                if line.startswith("strictaws listening on "):
                    return line.split()[-1].rstrip("/")
            return None

        url = wait_until("the AWS emulator's listening line", listening, emulator, EMULATOR_READY_TIMEOUT, self.guard)
        wait_until("the AWS emulator's health", lambda: http_ok(f"{url}/_strict/health"), emulator, 15, self.guard)
        return url

    def start(self):
        began = time.monotonic()
        state = self.state
        pki = state / "pki"
        make_pki(pki)
        etcd_url = self.start_etcd()
        url, tls = self.start_apiserver(etcd_url, pki)
        admin_kubeconfig = state / "kubeconfig"
        write_kubeconfig(admin_kubeconfig, url, pki, "admin")
        kcm_kubeconfig = state / "controller-manager.kubeconfig"
        write_kubeconfig(kcm_kubeconfig, url, pki, "controller-manager")
        # The emulator starts while the controller manager warms up; both are waited for below.
        emulator_url = self.start_emulator() if self.with_emulator else None
        # CRDs go in before the controller manager starts, so the garbage collector's first
        # discovery already covers them (it only rediscovers every 30 s): owner references to
        # custom resources are then honoured from the first second.
        self.install_crds(admin_kubeconfig)
        self.start_controller_manager(url, pki, kcm_kubeconfig, tls)

        env = {
            "KUBECONFIG": str(admin_kubeconfig),
            "KUBEBUILDER_ASSETS": str(self.bins),
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": DUMMY_ACCESS_KEY,
        }
        if emulator_url:
            env["AWS_ENDPOINT_URL"] = emulator_url
            env["EMULATOR_CONTROL_URL"] = f"{emulator_url}/_strict"
        info = {
            "env": env,
            "supervisor_pid": os.getpid(),
            "pids": {c.name: c.pid for c in self.components},
            "logs": {c.name: str(c.log_path) for c in self.components},
            "state_dir": str(state),
            "apiserver_url": url,
            "etcd_url": etcd_url,
            "emulator_url": emulator_url,
            "kubeconfig": str(admin_kubeconfig),
            "audit_log": str(state / "audit.log"),
            "startup_seconds": round(time.monotonic() - began, 1),
        }
        self.info = info
        # env.json first: the Rust harness waits for it, shells for env.sh; both are complete.
        write_atomic(state / "env.json", json.dumps(info, indent=2) + "\n")
        write_atomic(state / "env.sh", env_sh(env, self.bins))
        return info

    def restart(self, name, kill=False):
        """Stops component `name` and starts it again with the same command line; returns once
        it is ready (the emulator keeps its state in memory, so it cannot be restarted)."""
        if name == "emulator":
            raise StartupError("the emulator keeps its state in memory; restarting it would lose it")
        old = next((c for c in self.components if c.name == name), None)
        if old is None:
            raise StartupError(f"no component {name!r} (have: {', '.join(c.name for c in self.components)})")
        began = time.monotonic()
        if kill:
            old.proc.kill()
            old.wait(STOP_GRACE)
        else:
            old.stop()
        new = old.relaunched()
        self.components[self.components.index(old)] = new
        what, check = self.ready_checks.get(name, (f"{name} to stay up", lambda: True))
        wait_until(what, check, new, APISERVER_READY_TIMEOUT, self.guard)
        self.info["pids"][name] = new.pid
        write_atomic(self.state / "env.json", json.dumps(self.info, indent=2) + "\n")
        return {"ok": True, "pid": new.pid, "seconds": round(time.monotonic() - began, 3)}

    def serve_control(self):
        """Answers every pending request file of `DIR/control/`."""
        control = self.state / "control"
        for request in sorted(control.glob("*.request")):
            try:
                body = json.loads(request.read_text())
                if body.get("action") != "restart":
                    raise StartupError(f"unknown action {body.get('action')!r}")
                answer = self.restart(body["component"], kill=bool(body.get("kill")))
            except (StartupError, KeyError, ValueError) as err:
                answer = {"ok": False, "error": str(err)}
            log(f"control {request.stem}: {answer}")
            write_atomic(request.with_suffix(".done"), json.dumps(answer) + "\n")
            request.unlink(missing_ok=True)

    def stop(self):
        # Reverse start order; each gets STOP_GRACE seconds after SIGTERM before SIGKILL.
        for component in reversed(self.components):
            component.stop()
        self.components.clear()


# --- commands ---------------------------------------------------------------------------------

def supervisor_pid(state: Path):
    """The pid of the live supervisor of `state`, if any."""
    try:
        pid = int((state / "supervisor.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    if not pid_alive(pid):
        return None
    cmdline = pid_cmdline(pid)
    if cmdline and not any(arg.endswith("testenv.py") for arg in cmdline):
        return None  # the pid was reused by something else
    return pid


def remove_env_files(state: Path):
    for name in (*ENV_FILES, "supervisor.pid"):
        (state / name).unlink(missing_ok=True)


def run_supervisor(args, parent_pid):
    """Foreground mode: start, stay attached, stop everything when told or orphaned."""
    state = Path(args.state_dir).resolve()
    if supervisor_pid(state):
        log(f"an environment is already running in {state} (use `down` first)")
        return 1
    state.mkdir(parents=True, exist_ok=True)
    # Every start is a fresh cluster: an earlier run's data, certificates or audit log would
    # not match the new processes (and the emulator keeps nothing across restarts).
    remove_env_files(state)
    for name in ("etcd", "pki", "logs"):
        shutil.rmtree(state / name, ignore_errors=True)
    (state / "audit.log").unlink(missing_ok=True)
    write_atomic(state / "supervisor.pid", f"{os.getpid()}\n")

    guard = Guard(parent_pid)
    phase = {"starting": True}

    def on_signal(signum, _frame):
        guard.stop_requested = True
        if phase["starting"]:
            phase["starting"] = False  # raise once; teardown must not be interrupted
            raise Interrupted(f"signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    control = {"pending": False}

    def on_control(_signum, _frame):
        control["pending"] = True

    signal.signal(signal.SIGUSR1, on_control)

    environment = None
    code = 0
    try:
        bins = Path(args.assets).resolve() if args.assets else assets_dir()
        environment = Environment(
            state, bins, guard, with_emulator=not args.no_emulator,
            crds=[Path(p).resolve() for p in args.crds], emulator_python=args.emulator_python,
        )
        info = environment.start()
        phase["starting"] = False
        log(f"ready in {info['startup_seconds']}s: source {state / 'env.sh'}")
        while not guard.stop_requested:
            if guard.parent_gone():
                log("parent process exited; stopping")
                break
            if control["pending"]:
                control["pending"] = False
                environment.serve_control()
            dead = [c for c in environment.components if not c.alive()]
            if dead:
                for c in dead:
                    log(f"{c.name} exited (code {c.proc.returncode}); last lines of {c.log_path}:\n{c.tail()}")
                code = 1
                break
            time.sleep(0.25)
        else:
            log("stop requested; stopping")
    except Interrupted as why:
        phase["starting"] = False
        log(f"startup abandoned ({why}); stopping")
        code = 1
    except StartupError as err:
        phase["starting"] = False
        log(f"startup failed: {err}")
        code = 1
    finally:
        phase["starting"] = False
        remove_env_files(state)
        if environment is not None:
            environment.stop()
        if not args.keep_state:
            shutil.rmtree(state, ignore_errors=True)
    return code


def up_background(args):
    state = Path(args.state_dir).resolve()
    pid = supervisor_pid(state)
    if pid and (state / "env.sh").exists():
        log(f"already running (supervisor pid {pid}); source {state / 'env.sh'}")
        return 0
    if pid:
        log(f"a supervisor (pid {pid}) is already starting in {state}; use `down` first")
        return 1
    try:
        bins = Path(args.assets).resolve() if args.assets else assets_dir()  # may build, visibly
    except StartupError as err:
        log(str(err))
        return 1
    state.mkdir(parents=True, exist_ok=True)
    remove_env_files(state)
    argv = [sys.executable, str(Path(__file__).resolve()), "_serve", "--state-dir", str(state),
            "--assets", str(bins)]
    if args.no_emulator:
        argv.append("--no-emulator")
    if args.keep_state:
        argv.append("--keep-state")
    if args.emulator_python:
        argv += ["--emulator-python", args.emulator_python]
    for path in args.crds:
        argv += ["--crds", str(Path(path).resolve())]
    # The supervisor log lives next to the state folder so it survives a failed start.
    supervisor_log = state.parent / f"{state.name}.supervisor.log"
    with open(supervisor_log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, close_fds=True, cwd="/")
    deadline = time.monotonic() + BACKGROUND_READY_TIMEOUT
    while time.monotonic() < deadline:
        if (state / "env.sh").exists():
            log(f"ready (supervisor pid {proc.pid}, log {supervisor_log}): source {state / 'env.sh'}")
            return 0
        if proc.poll() is not None:
            log(f"startup failed; supervisor log {supervisor_log}:\n"
                + supervisor_log.read_text(errors="replace")[-6000:])
            return 1
        time.sleep(0.3)
    log(f"not ready after {BACKGROUND_READY_TIMEOUT}s; stopping it (log {supervisor_log})")
    proc.terminate()
    proc.wait(60)
    return 1


def down(args):
    state = Path(args.state_dir).resolve()
    try:
        info = json.loads((state / "env.json").read_text())
    except (OSError, ValueError):
        info = {}
    pid = supervisor_pid(state)
    if pid:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 4 * STOP_GRACE + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if pid_alive(pid):
            log(f"supervisor {pid} did not stop; killing it")
            os.kill(pid, signal.SIGKILL)
    else:
        log("not running")
    # Components die with their supervisor (PR_SET_PDEATHSIG); make sure of it, touching only
    # processes that carry this environment's marker.
    components = [p for p in info.get("pids", {}).values() if isinstance(p, int)]
    deadline = time.monotonic() + 2 * STOP_GRACE
    while time.monotonic() < deadline and any(pid_alive(p) for p in components):
        time.sleep(0.2)
    for p in components:
        if pid_alive(p) and pid_environ(p).get(MARKER_VAR) == str(state):
            log(f"killing leftover component {p}")
            os.kill(p, signal.SIGKILL)
    remove_env_files(state)
    if pid:
        log("stopped")
    return 0


def status(args):
    state = Path(args.state_dir).resolve()
    pid = supervisor_pid(state)
    if pid and (state / "env.json").exists():
        info = json.loads((state / "env.json").read_text())
        print(f"running (supervisor pid {pid})")
        print(f"  kube-apiserver  {info.get('apiserver_url')}")
        if info.get("emulator_url"):
            print(f"  AWS emulator    {info['emulator_url']}")
        print(f"  use it with:    source {state / 'env.sh'}")
        return 0
    if pid:
        print(f"starting (supervisor pid {pid})")
        return 2
    print("not running")
    return 1


CONTROL_TIMEOUT = APISERVER_READY_TIMEOUT + 4 * STOP_GRACE


def restart(args):
    """Asks the supervisor of `--state-dir` to restart one component; prints its answer."""
    state = Path(args.state_dir).resolve()
    pid = supervisor_pid(state)
    if not pid:
        log("not running")
        return 1
    control = state / "control"
    control.mkdir(exist_ok=True)
    stem = f"{os.getpid()}-{time.monotonic_ns()}"
    write_atomic(control / f"{stem}.request",
                 json.dumps({"action": "restart", "component": args.component, "kill": args.kill}))
    os.kill(pid, signal.SIGUSR1)
    done = control / f"{stem}.done"
    deadline = time.monotonic() + CONTROL_TIMEOUT
    while not done.exists():
        if time.monotonic() > deadline or not pid_alive(pid):
            log(f"no answer to the restart of {args.component}")
            return 1
        time.sleep(0.1)
    answer = json.loads(done.read_text())
    done.unlink(missing_ok=True)
    print(json.dumps(answer))
    return 0 if answer.get("ok") else 1


def pause(args, signum):
    """SIGSTOP/SIGCONT one component of the environment in `--state-dir`."""
    state = Path(args.state_dir).resolve()
    try:
        pid = json.loads((state / "env.json").read_text())["pids"][args.component]
    except (OSError, ValueError, KeyError):
        log(f"no running component {args.component!r} in {state}")
        return 1
    if not pid_alive(pid) or pid_environ(pid).get(MARKER_VAR) != str(state):
        log(f"{args.component} (pid {pid}) is not a live component of {state}")
        return 1
    os.kill(pid, signum)
    return 0


def main(argv=None):
    # Taken first thing: if the parent exits while we start, the change is still noticed.
    parent_pid = os.getppid()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "_serve"):
        p = sub.add_parser(name, help="start the environment" if name == "up" else argparse.SUPPRESS)
        p.add_argument("--state-dir", required=True, help="folder for certificates, data, logs and env files")
        mode = p.add_mutually_exclusive_group()
        mode.add_argument("--foreground", action="store_true",
                          help="stay attached; stop on SIGTERM/SIGINT or when the parent exits (default)")
        mode.add_argument("--background", action="store_true",
                          help="detach and return once ready; stop with `down`")
        p.add_argument("--crds", nargs="+", action="extend", default=[], metavar="PATH",
                       help="CRD files or folders to apply once the control plane is up")
        p.add_argument("--no-emulator", action="store_true", help="do not start the AWS emulator")
        p.add_argument("--emulator-python", metavar="PY",
                       help="python that runs the emulator (default: the one running this script)")
        p.add_argument("--keep-state", action="store_true",
                       help="keep the state folder (logs, audit log) after stopping")
        p.add_argument("--assets", help=argparse.SUPPRESS)
    for name, text in (("down", "stop a background environment"), ("status", "is it running?")):
        sub.add_parser(name, help=text).add_argument("--state-dir", required=True)
    for name, text in (("restart", "stop a component and start it again, same ports"),
                       ("pause", "SIGSTOP a component"), ("resume", "SIGCONT a paused component")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--state-dir", required=True)
        p.add_argument("component", choices=["etcd", "kube-apiserver", "kube-controller-manager", "emulator"])
        if name == "restart":
            p.add_argument("--kill", action="store_true", help="SIGKILL instead of SIGTERM")
    args = parser.parse_args(argv)
    if args.command == "restart":
        return restart(args)
    if args.command in ("pause", "resume"):
        return pause(args, signal.SIGSTOP if args.command == "pause" else signal.SIGCONT)
    if args.command == "up":
        return up_background(args) if args.background else run_supervisor(args, parent_pid)
    if args.command == "_serve":
        return run_supervisor(args, parent_pid=None)  # detached: no parent to watch
    if args.command == "down":
        return down(args)
    return status(args)


if __name__ == "__main__":
    sys.exit(main())
