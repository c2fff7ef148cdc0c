"""One emulator process per test session; every test starts from a reset emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

EMULATOR_DIR = Path(__file__).resolve().parents[1]
HUB = "123456789012"
REGION = "us-east-1"
NO_RETRY = Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=10)


class Emulator:
    def __init__(self, url: str, process: subprocess.Popen[str]):
        self.url = url
        self.process = process
        self._session = boto3.session.Session()
        self._clients: dict[tuple[Any, ...], Any] = {}

    def control(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    def client(self, service: str, credentials: dict[str, str] | None = None, retries: bool = False) -> Any:
        creds = credentials or {
            "aws_access_key_id": "AKIAIOSFODNN7EXAMPLE",
            "aws_secret_access_key": "testing",
        }
        key = (service, retries, *sorted(creds.items()))
        if key not in self._clients:
            self._clients[key] = self._session.client(
                service,
                endpoint_url=self.url,
                region_name=REGION,
                config=None if retries else NO_RETRY,
                **creds,
            )
        return self._clients[key]


def _read_listening_line(process: subprocess.Popen[str], timeout: float) -> str:
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not lines or "listening on" not in lines[0]:
        process.kill()
        raise RuntimeError(f"emulator did not start: {lines!r}")
    return lines[0].strip()


@pytest.fixture(scope="session")
def emulator() -> Any:
    process = subprocess.Popen(
        [sys.executable, "-m", "strictaws", "--host", "127.0.0.1", "--port", "0"],
        cwd=EMULATOR_DIR,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    line = _read_listening_line(process, timeout=30)
    emu = Emulator(line.rsplit(" ", 1)[-1], process)
    yield emu
    process.terminate()
    assert process.wait(timeout=10) == 0


@pytest.fixture
def aws(emulator: Emulator) -> Emulator:
    status, _ = emulator.control("POST", "/_strict/reset")
    assert status == 200
    return emulator


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll until `predicate` returns something truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        time.sleep(interval)


def error_code(excinfo: Any) -> str:
    return excinfo.value.response["Error"]["Code"]
