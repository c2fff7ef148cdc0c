"""A small Kubernetes API client for the benchmark: the kubeconfig testenv.py writes (client
certificate files), one kept-alive HTTPS connection, JSON in and out. Every request it sends is
counted, so the bench can tell its own apiserver traffic from the operator's."""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.parse
from pathlib import Path
from typing import Any

USER_AGENT = "account-linker-bench"
GROUP = "/apis/accountlinker.dev/v1alpha1"


class KubeError(Exception):
    def __init__(self, status: int, body: str):
        super().__init__(f"HTTP {status}: {body[:500]}")
        self.status = status


class Kube:
    def __init__(self, kubeconfig: Path):
        config = json.loads(Path(kubeconfig).read_text())
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        url = urllib.parse.urlparse(cluster["server"])
        self.host, self.port = url.hostname, url.port
        self.context = ssl.create_default_context(cafile=cluster["certificate-authority"])
        self.context.load_cert_chain(user["client-certificate"], user["client-key"])
        self.conn: http.client.HTTPSConnection | None = None
        self.requests = 0

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
                raw: bool = False) -> Any:
        data = None
        if body is not None:
            data = body if isinstance(body, bytes | str) else json.dumps(body)
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json", "Content-Type": content_type}
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=120)
            try:
                self.requests += 1
                self.conn.request(method, path, body=data, headers=headers)
                resp = self.conn.getresponse()
                text = resp.read().decode()
                break
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        if resp.status >= 300:
            raise KubeError(resp.status, text)
        if raw:
            return text
        return json.loads(text) if text else None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def apply(self, path: str, obj: dict[str, Any]) -> Any:
        """Server-side apply as the field manager `bench`."""
        return self.request("PATCH", f"{path}?fieldManager=bench&force=true", obj,
                            content_type="application/apply-patch+yaml")

    def create(self, path: str, obj: dict[str, Any]) -> Any:
        return self.request("POST", path, obj)

    def delete(self, path: str) -> Any:
        try:
            return self.request("DELETE", path)
        except KubeError as err:
            if err.status != 404:
                raise
            return None

    def list_all(self, path: str, limit: int = 500) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            sep = "&" if "?" in path else "?"
            page = self.get(f"{path}{sep}limit={limit}" + (f"&continue={urllib.parse.quote(token)}" if token else ""))
            items.extend(page.get("items", []))
            token = page.get("metadata", {}).get("continue") or ""
            if not token:
                return items

    def metrics(self) -> str:
        return self.request("GET", "/metrics", raw=True)


def ns_path(namespace: str, plural: str, name: str | None = None, group: str = GROUP) -> str:
    path = f"{group}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


def core_path(namespace: str, plural: str, name: str | None = None) -> str:
    return ns_path(namespace, plural, name, group="/api/v1")


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions", []) or []:
        if c.get("type") == kind:
            return c
    return None


def parse_prometheus(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) per sample line of the Prometheus text format."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, rest = head.partition("{")
        labels = {}
        if rest:
            for part in _split_labels(rest.rstrip("}")):
                key, _, val = part.partition("=")
                labels[key] = val.strip('"')
        try:
            samples.append((name, labels, float(value)))
        except ValueError:
            continue
    return samples


def _split_labels(text: str) -> list[str]:
    parts, current, quoted = [], [], False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if current:
        parts.append("".join(current))
    return parts
