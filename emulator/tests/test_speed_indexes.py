"""The indexes that replace moto's linear scans (strictaws/speed.py) follow every change.

Each test changes what an index covers after it was used (a key deleted, a session left over from
before a reset, an account removed or moved, a role deleted or its trust changed) and checks the
emulator answers as if it had looked everything up afresh.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import HUB, Emulator, error_code
from helpers import credentials_for, member_iam, new_organization, trust

ORG_ROLE = "OrganizationAccountAccessRole"


def _identity(aws: Emulator, creds: dict[str, str]) -> dict[str, str]:
    return aws.client("sts", creds).get_caller_identity()


def test_an_access_key_belongs_to_its_account_until_deleted(aws):
    (member,) = new_organization(aws, 1)
    iam = member_iam(aws, member)
    iam.create_user(UserName="deployer")
    key = iam.create_access_key(UserName="deployer")["AccessKey"]
    creds = {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}
    assert _identity(aws, creds)["Account"] == member
    iam.delete_access_key(UserName="deployer", AccessKeyId=key["AccessKeyId"])
    # An unknown key belongs to the default (hub) account, as in moto.
    assert _identity(aws, creds)["Account"] == HUB


def test_sessions_from_before_a_reset_are_unknown_after_it(aws):
    (member,) = new_organization(aws, 1)
    creds = credentials_for(aws, f"arn:aws:iam::{member}:role/{ORG_ROLE}")
    assert _identity(aws, creds)["Account"] == member
    status, _ = aws.control("POST", "/_strict/reset")
    assert status == 200
    assert _identity(aws, creds)["Account"] == HUB
    # A new organization's account with the same role name does not adopt the old session.
    (other,) = new_organization(aws, 1)
    assert _identity(aws, credentials_for(aws, f"arn:aws:iam::{other}:role/{ORG_ROLE}"))["Account"] == other
    assert _identity(aws, creds)["Account"] == HUB


def test_every_session_of_an_account_is_told_apart(aws):
    (member,) = new_organization(aws, 1)
    arn = f"arn:aws:iam::{member}:role/{ORG_ROLE}"
    sessions = [
        aws.client("sts").assume_role(RoleArn=arn, RoleSessionName=f"s{i}")["Credentials"] for i in range(30)
    ]
    for i, c in enumerate(sessions):
        creds = {
            "aws_access_key_id": c["AccessKeyId"],
            "aws_secret_access_key": c["SecretAccessKey"],
            "aws_session_token": c["SessionToken"],
        }
        assert _identity(aws, creds)["Arn"].endswith(f":assumed-role/{ORG_ROLE}/s{i}")


def test_a_deleted_or_retrusted_role_is_judged_afresh(aws):
    (member,) = new_organization(aws, 1)
    arn = f"arn:aws:iam::{member}:role/linked"
    body = {"account": member, "name": "linked", "trust_policy": trust(f"arn:aws:iam::{HUB}:root", "one")}
    assert aws.control("PUT", "/_strict/iam/roles", body)[0] == 200
    sts = aws.client("sts")
    sts.assume_role(RoleArn=arn, RoleSessionName="ab", ExternalId="one")
    body["trust_policy"] = trust(f"arn:aws:iam::{HUB}:root", "two")
    assert aws.control("PUT", "/_strict/iam/roles", body)[0] == 200
    with pytest.raises(ClientError) as err:
        sts.assume_role(RoleArn=arn, RoleSessionName="ab", ExternalId="one")
    assert error_code(err) == "AccessDenied"
    sts.assume_role(RoleArn=arn, RoleSessionName="ab", ExternalId="two")
    assert aws.control("DELETE", f"/_strict/iam/roles?account={member}&name=linked")[1] == {"deleted": True}
    with pytest.raises(ClientError) as err:
        sts.assume_role(RoleArn=arn, RoleSessionName="ab", ExternalId="two")
    assert error_code(err) == "AccessDenied"


def _create(org, email: str) -> dict[str, str]:
    request = org.create_account(AccountName=email.split("@")[0], Email=email)["CreateAccountStatus"]
    return org.describe_create_account_status(CreateAccountRequestId=request["Id"])["CreateAccountStatus"]


def test_a_removed_account_is_gone_and_frees_its_email(aws):
    members = new_organization(aws, 3)
    org = aws.client("organizations")
    assert org.describe_account(AccountId=members[1])["Account"]["Email"] == "member1@example.com"
    assert _create(org, "MEMBER1@example.com")["FailureReason"] == "EMAIL_ALREADY_EXISTS"
    org.remove_account_from_organization(AccountId=members[1])
    with pytest.raises(ClientError) as err:
        org.describe_account(AccountId=members[1])
    assert error_code(err) == "AccountNotFoundException"
    with pytest.raises(ClientError) as err:
        org.list_tags_for_resource(ResourceId=members[1])
    assert error_code(err) == "TargetNotFoundException"
    assert _create(org, "member1@example.com")["State"] == "SUCCEEDED"
    # The others are still found, and a new account is found at once.
    assert org.describe_account(AccountId=members[2])["Account"]["Id"] == members[2]
    new = _create(org, "late@example.com")["AccountId"]
    org.tag_resource(ResourceId=new, Tags=[{"Key": "k", "Value": "v"}])
    assert org.list_tags_for_resource(ResourceId=new)["Tags"] == [{"Key": "k", "Value": "v"}]


def test_a_moved_account_is_listed_under_its_new_parent(aws):
    members = new_organization(aws, 2)
    org = aws.client("organizations")
    root = org.list_roots()["Roots"][0]["Id"]
    ou = org.create_organizational_unit(ParentId=root, Name="team")["OrganizationalUnit"]["Id"]
    org.move_account(AccountId=members[0], SourceParentId=root, DestinationParentId=ou)
    under_ou = [a["Id"] for a in org.list_accounts_for_parent(ParentId=ou)["Accounts"]]
    under_root = [a["Id"] for a in org.list_accounts_for_parent(ParentId=root)["Accounts"]]
    assert under_ou == [members[0]]
    assert members[0] not in under_root and members[1] in under_root
    assert org.list_parents(ChildId=members[0])["Parents"][0]["Id"] == ou


def test_policies_attach_to_accounts_found_by_id(aws):
    members = new_organization(aws, 2)
    org = aws.client("organizations")
    org.enable_policy_type(RootId=org.list_roots()["Roots"][0]["Id"], PolicyType="SERVICE_CONTROL_POLICY")
    policy = org.create_policy(
        Content=json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
        Description="d",
        Name="p",
        Type="SERVICE_CONTROL_POLICY",
    )["Policy"]["PolicySummary"]["Id"]
    org.attach_policy(PolicyId=policy, TargetId=members[1])
    targets = org.list_targets_for_policy(PolicyId=policy)["Targets"]
    assert [t["TargetId"] for t in targets] == [members[1]]
    with pytest.raises(ClientError) as err:
        org.attach_policy(PolicyId=policy, TargetId="999999999999")
    assert error_code(err) == "AccountNotFoundException"


def test_indexed_lists_follow_every_change():
    from strictaws.speed import _AccountList, _KeyDict, _KEY_OWNERS

    class Account:
        def __init__(self, id: str, email: str):
            self.id, self.email = id, email

    a, b, c = Account("1", "A@x"), Account("2", "b@x"), Account("3", "c@x")
    accounts = _AccountList([a])
    assert accounts.find("1") is a and accounts.email_in_use("a@X")
    accounts.append(b)
    assert accounts.find("2") is b and accounts.email_in_use("b@x")
    accounts.remove(a)
    assert accounts.find("1") is None and not accounts.email_in_use("a@x")
    accounts[0] = c
    assert accounts.find("2") is None and accounts.find("3") is c
    accounts += [a]
    assert accounts.find("1") is a
    del accounts[:]
    assert accounts.find("3") is None and not accounts.email_in_use("c@x")

    class Backend:
        account_id = "111111111111"

    keys = _KeyDict(Backend(), [("K1", 1)])
    assert any(o() is keys for o in _KEY_OWNERS["K1"])
    keys["K2"] = 2
    keys.pop("K1")
    assert "K1" not in _KEY_OWNERS and any(o() is keys for o in _KEY_OWNERS["K2"])
    keys.clear()
    assert "K2" not in _KEY_OWNERS


def test_a_reset_leaves_no_backend_behind_in_the_key_index(aws):
    (member,) = new_organization(aws, 1)
    credentials_for(aws, f"arn:aws:iam::{member}:role/{ORG_ROLE}")
    # Many resets later the emulator still answers (the index neither grows without bound nor
    # keeps reset backends alive; checked in-process by forget_dead_keys' own test below).
    for _ in range(3):
        assert aws.control("POST", "/_strict/reset")[0] == 200
    assert _identity(aws, {"aws_access_key_id": "AKIAIOSFODNN7EXAMPLE", "aws_secret_access_key": "x"})["Account"] == HUB


def test_forget_dead_keys_drops_replaced_backends():
    import gc

    from strictaws.speed import _KEY_OWNERS, _KeyDict, forget_dead_keys

    class Backend:
        account_id = "222222222222"

    keys = _KeyDict(Backend(), [("KDEAD", 1)])
    keys.backend.access_keys = keys
    assert "KDEAD" in _KEY_OWNERS
    forget_dead_keys()  # not the key dict of any live IAM backend
    assert "KDEAD" not in _KEY_OWNERS
    again = _KeyDict(Backend(), [("KGONE", 1)])
    del again
    gc.collect()
    # The index held it weakly: it is gone, and the next sweep drops its entry.
    assert all(o() is None for o in _KEY_OWNERS.get("KGONE", []))
    forget_dead_keys()
    assert "KGONE" not in _KEY_OWNERS


def environ(key: str, body: bytes) -> dict[str, object]:
    """A WSGI environ of one STS query call signed (as far as the emulator reads it) with `key`."""
    return {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/", "QUERY_STRING": "",
        "CONTENT_TYPE": "application/x-www-form-urlencoded; charset=utf-8",
        "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
        "HTTP_HOST": "127.0.0.1:1", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "1",
        "wsgi.url_scheme": "http",
        "HTTP_AUTHORIZATION": f"AWS4-HMAC-SHA256 Credential={key}/20260101/us-east-1/sts/aws4_request, "
        "SignedHeaders=host, Signature=0",
    }


def _in_process_app() -> tuple[Any, str]:
    """A StrictApp in this process (to compare its answers with moto's own), with one member account."""
    from moto.organizations.models import organizations_backends

    from strictaws.app import StrictApp

    app = StrictApp()
    app.reset_moto()
    org = organizations_backends[HUB]["aws"]
    org.create_organization(region="us-east-1", FeatureSet="ALL")
    account = org.create_account(AccountName="a", Email="a@example.com")["CreateAccountStatus"]["AccountId"]
    return app, account


def test_get_caller_identity_answers_as_moto_does():
    """The strict layer answers GetCallerIdentity itself; the body must be moto's, byte for byte
    (the request id aside), for the hub's key and for an assumed-role session."""
    from strictaws.protocol import AwsRequest

    def ours(key: str, body: bytes) -> bytes:
        env = environ(key, body)
        reply = app.handle(AwsRequest.from_environ(env), env)
        assert reply.status == 200, reply.body
        return reply.body

    def without_request_id(body: bytes) -> bytes:
        return re.sub(rb"<RequestId>.*?</RequestId>", b"", body)

    app, account = _in_process_app()
    try:
        assumed = ours(
            "AKIAIOSFODNN7EXAMPLE",
            b"Action=AssumeRole&Version=2011-06-15&RoleSessionName=xx&RoleArn=arn:aws:iam::"
            + account.encode() + b":role/OrganizationAccountAccessRole",
        )
        session_key = re.search(rb"<AccessKeyId>(.*?)</AccessKeyId>", assumed).group(1).decode()
        call = b"Action=GetCallerIdentity&Version=2011-06-15"
        for key in ("AKIAIOSFODNN7EXAMPLE", session_key):
            answered = ours(key, call)
            assert without_request_id(answered) == without_request_id(app.forward(environ(key, call)).body)
        assert f"<Account>{account}</Account>".encode() in ours(session_key, call)
    finally:
        app.reset_moto()


def test_assume_role_answers_as_moto_does():
    """The strict layer also answers an admitted AssumeRole itself: the same elements in the same
    order as moto's answer, fresh credentials each time, usable at once."""
    from strictaws.protocol import AwsRequest

    def shape(body: bytes) -> bytes:
        # Element names and fixed values; the generated ones (keys, token, times, ids) blanked.
        return re.sub(
            rb"<(AccessKeyId|SecretAccessKey|SessionToken|Expiration|RequestId)>.*?</\1>", rb"<\1/>", body
        )

    app, account = _in_process_app()
    try:
        call = (
            b"Action=AssumeRole&Version=2011-06-15&RoleSessionName=xx&DurationSeconds=1800&RoleArn=arn:aws:iam::"
            + account.encode() + b":role/OrganizationAccountAccessRole"
        )
        env = environ("AKIAIOSFODNN7EXAMPLE", call)
        ours = app.handle(AwsRequest.from_environ(env), env)
        moto = app.forward(environ("AKIAIOSFODNN7EXAMPLE", call))
        assert ours.status == moto.status == 200
        assert shape(ours.body) == shape(moto.body)
        keys = [re.search(rb"<AccessKeyId>(.*?)</AccessKeyId>", r.body).group(1) for r in (ours, moto)]
        assert keys[0] != keys[1]
        who = environ(keys[0].decode(), b"Action=GetCallerIdentity&Version=2011-06-15")
        answer = app.handle(AwsRequest.from_environ(who), who).body
        assert f"<Account>{account}</Account>".encode() in answer and b"assumed-role/OrganizationAccountAccessRole/xx" in answer
    finally:
        app.reset_moto()


def _listing(method: Any, org: Any, **kwargs: Any) -> Any:
    """One ListAccountsForParent call: (account ids, token), or the error it raised."""
    try:
        items, token = method(org, **kwargs)
    except Exception as err:  # noqa: BLE001 - the error is the answer compared
        return (type(err).__name__, str(err))
    return [a.id for a in items], token


def _walk(method: Any, org: Any, parent: str, size: int | None) -> list[Any]:
    answers, token = [], None
    while True:
        answer = _listing(method, org, max_results=size, next_token=token, parent_id=parent)
        answers.append(answer)
        if not isinstance(answer[0], list) or not answer[1]:
            return answers
        token = answer[1]


def test_accounts_for_parent_pages_are_moto_s_after_every_change():
    """The index by parent answers every page as moto's own scan does (the same accounts, order,
    tokens and errors) after creates, moves both ways, removals, closes, changed create times,
    moves between the pages of a walk, and a reset."""
    import datetime
    import random

    from moto.organizations.models import OrganizationsBackend, organizations_backends

    from strictaws import speed
    from strictaws.app import StrictApp

    indexed = OrganizationsBackend.list_accounts_for_parent
    moto = speed.moto_list_accounts_for_parent
    assert moto is not None and indexed is not moto

    app = StrictApp()
    rng = random.Random(20261202)

    def organization() -> tuple[Any, str, list[str]]:
        app.reset_moto()
        org = organizations_backends[HUB]["aws"]
        org.create_organization(region="us-east-1", FeatureSet="ALL")
        root = org.org.root_id
        ous = [org.create_organizational_unit(ParentId=root, Name=f"ou{i}")["OrganizationalUnit"]["Id"] for i in range(3)]
        return org, root, ous

    def same(org: Any, parents: list[str]) -> None:
        for parent in parents:
            for size in (None, 1, 3, 7):
                assert _walk(indexed, org, parent, size) == _walk(moto, org, parent, size), (parent, size)

    def create(org: Any, n: int) -> None:
        for _ in range(n):
            i = len(org.accounts)
            org.create_account(AccountName=f"a{i}", Email=f"a{i}-{rng.random()}@example.com")

    try:
        org, root, ous = organization()
        parents = [root, *ous]
        create(org, 30)
        same(org, parents)  # builds the index
        for step in range(120):
            members = [a for a in org.accounts if a.id != org.org.master_account_id]
            account = rng.choice(members)
            action = rng.random()
            if action < 0.45:
                org.move_account(AccountId=account.id, SourceParentId=account.parent_id, DestinationParentId=rng.choice(parents))
            elif action < 0.6:
                create(org, 2)
            elif action < 0.7:
                org.remove_account_from_organization(AccountId=account.id)
            elif action < 0.8:
                if account.status == "ACTIVE":
                    org.close_account(AccountId=account.id)
            elif action < 0.9:
                # create times that tie (moto's sort keeps the list order) or go back
                other = rng.choice(members)
                account.create_time = other.create_time - datetime.timedelta(microseconds=rng.choice((0, 1)))
            else:
                # a move in the middle of a walk: the page after it answers as moto's
                parent = rng.choice(parents)
                answer = _listing(indexed, org, max_results=2, next_token=None, parent_id=parent)
                assert answer == _listing(moto, org, max_results=2, next_token=None, parent_id=parent)
                under = [a for a in org.accounts if a.parent_id == parent]
                if under:
                    moved = rng.choice(under)
                    org.move_account(AccountId=moved.id, SourceParentId=parent, DestinationParentId=rng.choice(parents))
                if isinstance(answer[0], list) and answer[1]:
                    for p in parents:
                        kwargs = dict(max_results=2, next_token=answer[1], parent_id=p)
                        assert _listing(indexed, org, **kwargs) == _listing(moto, org, **kwargs)
            if step % 10 == 0:
                same(org, parents)
        same(org, parents)

        # Errors: an unknown parent, a token that does not decode, one of another parent, MaxResults 0.
        token = _listing(moto, org, max_results=1, next_token=None, parent_id=root)[1]
        assert token
        for kwargs in (
            dict(max_results=None, next_token=None, parent_id="ou-zzzz-zzzzzzzz"),
            dict(max_results=None, next_token=None, parent_id="nonsense"),
            dict(max_results=None, next_token="garbage", parent_id=root),
            dict(max_results=1, next_token=token, parent_id=ous[0]),
            dict(max_results=1, next_token=token, parent_id="ou-zzzz-zzzzzzzz"),
            dict(max_results=0, next_token=None, parent_id=root),
            dict(max_results=0, next_token=token, parent_id=root),
        ):
            assert _listing(indexed, org, **kwargs) == _listing(moto, org, **kwargs), kwargs

        # After a reset: a new organization, indexed afresh; an account of the old one moved
        # meanwhile is no account of the new one.
        old = org.accounts[-1]
        org, root, ous = organization()
        old.parent_id = root
        create(org, 12)
        org.move_account(AccountId=org.accounts[3].id, SourceParentId=root, DestinationParentId=ous[1])
        same(org, [root, *ous])
    finally:
        app.reset_moto()


def test_accounts_for_parent_lists_follow_changes_through_the_api(aws):
    """Pages listed through the API equal the accounts under each parent as ListAccounts and
    ListParents tell them, in the order of their JoinedTimestamp, after creates, moves both ways,
    a removal, a close, and a reset."""
    org = aws.client("organizations")

    def reference(parent: str) -> list[str]:
        accounts = org.list_accounts()["Accounts"]  # moto sorts them by JoinedTimestamp
        return [a["Id"] for a in accounts if org.list_parents(ChildId=a["Id"])["Parents"][0]["Id"] == parent]

    def listed(parent: str, size: int) -> list[str]:
        ids: list[str] = []
        kwargs: dict[str, Any] = {"ParentId": parent, "MaxResults": size}
        while True:
            page = org.list_accounts_for_parent(**kwargs)
            assert len(page["Accounts"]) <= size
            ids += [a["Id"] for a in page["Accounts"]]
            if not page.get("NextToken"):
                return ids
            assert len(page["Accounts"]) == size
            kwargs["NextToken"] = page["NextToken"]

    def check(parents: list[str]) -> None:
        for parent in parents:
            expected = reference(parent)
            for size in (1, 2, 20):
                assert listed(parent, size) == expected, (parent, size)

    for _ in range(2):
        members = new_organization(aws, 8)
        root = org.list_roots()["Roots"][0]["Id"]
        a = org.create_organizational_unit(ParentId=root, Name="a")["OrganizationalUnit"]["Id"]
        b = org.create_organizational_unit(ParentId=a, Name="b")["OrganizationalUnit"]["Id"]
        check([root, a, b])
        for m in members[:5]:
            org.move_account(AccountId=m, SourceParentId=root, DestinationParentId=a)
        org.move_account(AccountId=members[1], SourceParentId=a, DestinationParentId=b)
        org.move_account(AccountId=members[2], SourceParentId=a, DestinationParentId=root)
        check([root, a, b])
        org.remove_account_from_organization(AccountId=members[3])
        org.close_account(AccountId=members[4])
        new = _create(org, "late@example.com")["AccountId"]
        org.move_account(AccountId=new, SourceParentId=root, DestinationParentId=a)
        check([root, a, b])
        assert members[3] not in listed(a, 2) and members[4] in listed(a, 2) and new in listed(a, 2)

        # A walk with a move between its pages: the account next in line moved away makes the
        # token unusable (as moto answers); one moved from the pages already read changes nothing.
        first = org.list_accounts_for_parent(ParentId=a, MaxResults=1)
        rest = reference(a)
        org.move_account(AccountId=rest[0], SourceParentId=a, DestinationParentId=b)
        second = org.list_accounts_for_parent(ParentId=a, MaxResults=1, NextToken=first["NextToken"])
        assert [x["Id"] for x in second["Accounts"]] == [rest[1]]
        org.move_account(AccountId=rest[2], SourceParentId=a, DestinationParentId=root)
        with pytest.raises(ClientError) as err:
            org.list_accounts_for_parent(ParentId=a, MaxResults=1, NextToken=second["NextToken"])
        assert error_code(err) == "InvalidToken"
        with pytest.raises(ClientError) as err:
            org.list_accounts_for_parent(ParentId="ou-zzzz-zzzzzzzz")
        assert error_code(err) == "ParentNotFoundException"
        with pytest.raises(ClientError) as err:
            org.list_accounts_for_parent(ParentId=b, NextToken=first["NextToken"])
        assert error_code(err) == "InvalidToken"
        check([root, a, b])
        assert aws.control("POST", "/_strict/reset")[0] == 200
