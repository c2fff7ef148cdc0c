"""A 500-account operation stays cheap: the strict layer must not be the bottleneck at scale."""

from __future__ import annotations

import threading
import time

import pytest

from conftest import HUB, Emulator
from helpers import role_template, wait_done


@pytest.fixture
def in_process():
    """The emulator in this process, so moto's state can be seeded directly and quickly."""
    from moto.organizations.models import organizations_backends

    from strictaws.app import StrictApp
    from strictaws.orgs import STACKSETS_PRINCIPAL
    from strictaws.server import StrictServer

    app = StrictApp()
    app.reset_moto()
    server = StrictServer(app, "127.0.0.1", 0)
    server.start()
    stop = threading.Event()
    runner = threading.Thread(target=server.run, args=(stop,), daemon=True)
    runner.start()
    org = organizations_backends[HUB]["aws"]
    org.create_organization(region="us-east-1", FeatureSet="ALL")
    org.enable_aws_service_access(ServicePrincipal=STACKSETS_PRINCIPAL)
    for i in range(500):
        org.create_account(AccountName=f"bulk{i}", Email=f"bulk{i}@example.com")
    yield Emulator(server.url, None), org.org.root_id
    stop.set()
    runner.join(timeout=10)
    app.reset_moto()


def test_500_accounts_in_one_operation(in_process):
    emu, root = in_process
    emu.control("PUT", "/_strict/stacksets/timing", {"base_seconds": 0, "seconds_per_wave": 0})
    cf = emu.client("cloudformation")
    cf.create_stack_set(
        StackSetName="bulk",
        TemplateBody=role_template(),
        Capabilities=["CAPABILITY_NAMED_IAM"],
        PermissionModel="SERVICE_MANAGED",
        AutoDeployment={"Enabled": False},
    )
    started, cpu = time.monotonic(), time.process_time()
    op_id = cf.create_stack_instances(
        StackSetName="bulk",
        DeploymentTargets={"OrganizationalUnitIds": [root]},
        Regions=["us-east-1"],
        OperationPreferences={"MaxConcurrentPercentage": 100, "FailureTolerancePercentage": 10},
    )["OperationId"]
    assert wait_done(cf, "bulk", op_id)["Status"] == "SUCCEEDED"
    listed = [
        s
        for page in cf.get_paginator("list_stack_instances").paginate(StackSetName="bulk")
        for s in page["Summaries"]
    ]
    elapsed, spent = time.monotonic() - started, time.process_time() - cpu
    assert len(listed) == 500
    assert {s["Status"] for s in listed} == {"CURRENT"}
    # Client and server share this process, so this CPU time is an upper bound for the emulator.
    assert spent < 5, f"{spent:.2f}s CPU for 500 accounts"
    print(f"500 accounts: {elapsed:.2f}s wall, {spent:.2f}s CPU (client included)")
