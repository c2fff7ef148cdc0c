"""How an AWS request is read (service, operation, caller key, parameters) and how replies are written.

Query-protocol services (STS, CloudFormation, IAM) answer XML; JSON-protocol services (Organizations)
answer JSON with the error code in `__type` and in the `x-amzn-ErrorType` header. Successful results
of operations the strict layer answers itself are serialized with moto's own serializer, driven by
the botocore service model, so their shape is the one the SDKs expect.
"""

from __future__ import annotations

import io
import json
import re
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from moto.core.parse import PROTOCOL_PARSERS
from moto import settings
from moto.core.serialize import SerializationContext, XFormedAttributePicker, get_serializer_class
from moto.core.utils import get_service_model
from moto.utilities.aws_headers import gen_amzn_requestid_long
from werkzeug.datastructures import MultiDict

from .errors import AwsError

_SCOPE_RE = re.compile(r"Credential=([^/,\s]+)/[^/]+/([^/]+)/([^/]+)/")
_HOST_REGION_RE = re.compile(r"\.([^.]+)\.amazonaws\.com")
_UA_REGION_RE = re.compile(r"region/([a-z]{2}-[a-z]+-\d)")

# Services whose signing name differs from the prefix of their X-Amz-Target header.
_TARGET_SERVICES = {"AWSOrganizationsV20161128": "organizations"}


@dataclass
class Reply:
    """A complete HTTP response; `outcome` classifies it for the request counters."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    outcome: str = ""

    def __post_init__(self) -> None:
        if not self.outcome:
            self.outcome = "ok" if self.status < 400 else "error"

    def send(self, start_response: Any) -> list[bytes]:
        try:
            phrase = HTTPStatus(self.status).phrase
        except ValueError:
            phrase = "Status"
        start_response(f"{self.status} {phrase}", self.headers)
        return [self.body]


@dataclass
class AwsRequest:
    """One AWS API call as the strict layer needs to see it."""

    service: str
    action: str
    region: str
    access_key: str
    protocol: str  # "query", "json" or "rest"
    body: bytes
    headers: dict[str, str]
    form: dict[str, list[str]] = field(default_factory=dict)
    _params: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        return f"{self.service}:{self.action}"

    @classmethod
    def from_environ(cls, environ: dict[str, Any]) -> AwsRequest:
        body = _read_body(environ)
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        auth = headers.get("authorization", "")
        scope = _SCOPE_RE.search(auth)
        access_key, scope_region, service = scope.groups() if scope else ("", "", "")
        target = headers.get("x-amz-target", "")
        content_type = environ.get("CONTENT_TYPE", "")
        form: dict[str, list[str]] = {}
        if content_type.startswith("application/x-www-form-urlencoded"):
            form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        if target:
            protocol = "json"
            prefix, _, action = target.rpartition(".")
            service = service or _TARGET_SERVICES.get(prefix, prefix.lower())
        elif "Action" in form or "Action" in query:
            protocol = "query"
            action = (form.get("Action") or query.get("Action"))[0]
        else:
            protocol = "rest"
            action = environ.get("REQUEST_METHOD", "GET")
        region = _region(headers, scope_region)
        return cls(
            service=(service or "unknown").lower(),
            action=action,
            region=region,
            access_key=access_key,
            protocol=protocol,
            body=body,
            headers=headers,
            form=form,
        )

    def param(self, name: str) -> str | None:
        """A top-level scalar of a query-protocol request."""
        values = self.form.get(name)
        return values[0] if values else None

    def params(self) -> dict[str, Any]:
        """All parameters, nested and typed as the botocore service model describes them."""
        if self._params is None:
            if self.protocol == "json":
                try:
                    parsed = json.loads(self.body or b"{}")
                except ValueError:
                    parsed = {}  # moto answers the malformed request itself
                self._params = parsed if isinstance(parsed, dict) else {}
            else:
                self._params = _parse_query(self.service, self.action, self.form, self.body)
        return self._params


def _read_body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    stream = environ.get("wsgi.input")
    if stream is None:
        body = b""
    elif length > 0:
        body = stream.read(length)
    elif environ.get("wsgi.input_terminated"):
        body = stream.read()  # chunked transfer encoding: no Content-Length
    else:
        body = b""
    # moto reads the body again after us.
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _region(headers: dict[str, str], scope_region: str) -> str:
    # The same precedence moto uses, so both sides agree on the region of a call.
    host = _HOST_REGION_RE.search(headers.get("host", ""))
    if host:
        return host.group(1)
    agent = _UA_REGION_RE.search(headers.get("user-agent", ""))
    if agent:
        return agent.group(1)
    return scope_region or "us-east-1"


def _parse_query(service: str, action: str, form: dict[str, list[str]], body: bytes) -> dict[str, Any]:
    operation = get_service_model(service).operation_model(action)
    values = MultiDict([(k, v) for k, vs in form.items() for v in vs])
    parser = PROTOCOL_PARSERS["query"](operation, map_type=dict)
    return dict(
        parser.parse(
            {
                "method": "POST",
                "values": values,
                "headers": {},
                "body": body,
                "url_path": "/",
                "url_params": {},
            }
        )
    )


def request_id() -> str:
    return str(uuid.uuid4())


def error_reply(req: AwsRequest, err: AwsError, outcome: str = "") -> Reply:
    rid = request_id()
    if req.protocol == "json":
        body = json.dumps({"__type": err.code, "Message": err.message}).encode()
        headers = [
            ("Content-Type", "application/x-amz-json-1.1"),
            ("x-amzn-ErrorType", err.code),
            ("x-amzn-RequestId", rid),
        ]
    else:
        body = (
            "<ErrorResponse><Error>"
            f"<Type>{'Sender' if err.sender else 'Receiver'}</Type>"
            f"<Code>{_xml_escape(err.code)}</Code>"
            f"<Message>{_xml_escape(err.message)}</Message>"
            f"</Error><RequestId>{rid}</RequestId></ErrorResponse>"
        ).encode()
        headers = [("Content-Type", "text/xml"), ("x-amzn-RequestId", rid)]
    headers.append(("Content-Length", str(len(body))))
    return Reply(err.status, headers, body, outcome)


def result_reply(req: AwsRequest, result: dict[str, Any]) -> Reply:
    """Serialize a successful result of `req`'s operation (query protocol)."""
    model = get_service_model(req.service)
    operation = model.operation_model(req.action)
    serializer_cls = get_serializer_class(model.service_name, "query")
    rid = request_id()
    serializer = serializer_cls(operation_model=operation, context=SerializationContext(rid))
    out = serializer.serialize(result)
    body = out["body"].encode() if isinstance(out["body"], str) else out["body"]
    headers = [
        ("Content-Type", "text/xml"),
        ("x-amzn-RequestId", rid),
        ("Content-Length", str(len(body))),
    ]
    return Reply(200, headers, body)


def moto_result_reply(req: AwsRequest, result: Any, response_class: Any = None) -> Reply:
    """Serialize a successful result exactly as moto's own `ActionResult` does for this operation
    (attribute picker, response transformers of `response_class`, pretty-printing setting), for
    calls the strict layer answers in moto's place (query protocol)."""
    model = get_service_model(req.service)
    operation = model.operation_model(req.action)
    serializer_cls = get_serializer_class(model.service_name, "query")
    rid = gen_amzn_requestid_long()
    serializer = serializer_cls(
        operation_model=operation,
        context=SerializationContext(rid),
        pretty_print=settings.PRETTIFY_RESPONSES,
        value_picker=XFormedAttributePicker(
            response_transformers=getattr(response_class, "RESPONSE_KEY_PATH_TO_TRANSFORMER", None)
        ),
    )
    out = serializer.serialize(result)
    body = out["body"].encode() if isinstance(out["body"], str) else out["body"]
    headers = [(k, v) for k, v in (out.get("headers") or {}).items() if k.lower() != "content-length"]
    if not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("Content-Type", "text/xml"))
    headers += [("x-amzn-RequestId", rid), ("Content-Length", str(len(body)))]
    return Reply(int(out.get("status_code") or 200), headers, body)


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
