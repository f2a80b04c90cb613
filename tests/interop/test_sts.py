"""STS on the KMS endpoint: GetCallerIdentity, AssumeRole with trust policies, and the session tokens
that requests signed with temporary credentials carry (boto3 and `aws sts`)."""

import base64
import json
import os
import subprocess
import sys
import time

import pytest

from conftest import STORES, start_server, ACCOUNT, REGION, error_code, unique
from test_iam import ALLOW_ALL, as_user, client, new_user

ASSUME_ONLY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]}


@pytest.fixture(scope="module", params=STORES)
def server(request, tmp_path_factory):
    """This module's server, on SQLite and (with ENVELOPE_TEST_POSTGRES_URL) on PostgreSQL."""
    s = start_server(tmp_path_factory, request.param)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def iam(server):
    return client("iam", server.endpoint, *server.credentials)


def trust(principal, condition=None):
    st = {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}
    if condition:
        st["Condition"] = condition
    return json.dumps({"Version": "2012-10-17", "Statement": [st]})


def role(iam, trust_doc, policy=None, **kw):
    name = unique("role")
    r = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust_doc, **kw)["Role"]
    if policy is not None:
        iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    return r


def session(server, creds, service="sts"):
    return client(service, server.endpoint, creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])


def test_get_caller_identity(server):
    sts = client("sts", server.endpoint, *server.credentials)
    me = sts.get_caller_identity()
    assert me["Account"] == ACCOUNT
    assert me["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/admin"
    assert me["UserId"].startswith("AIDA")


def test_get_caller_identity_is_never_denied(server, iam):
    _, key = new_user(iam, {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]})
    me = as_user(server, key, "sts").get_caller_identity()
    assert me["Arn"].startswith(f"arn:aws:iam::{ACCOUNT}:user/")


def test_assume_role_and_act_as_the_session(server, iam):
    name, key = new_user(iam)
    user_arn = f"arn:aws:iam::{ACCOUNT}:user/{name}"
    r = role(iam, trust(user_arn), {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iam:ListUsers", "Resource": "*"}]})
    out = as_user(server, key, "sts").assume_role(RoleArn=r["Arn"], RoleSessionName="app-1", DurationSeconds=900)
    creds = out["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA") and len(creds["SecretAccessKey"]) == 40
    assert creds["SessionToken"]
    assert 800 < creds["Expiration"].timestamp() - time.time() <= 900
    session_arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/{r['RoleName']}/app-1"
    assert out["AssumedRoleUser"] == {"AssumedRoleId": f"{r['RoleId']}:app-1", "Arn": session_arn}
    who = session(server, creds).get_caller_identity()
    assert who == {**who, "Arn": session_arn, "Account": ACCOUNT, "UserId": f"{r['RoleId']}:app-1"}
    # The session acts with the role's policies, and is refused the rest with its own ARN named.
    s_iam = session(server, creds, "iam")
    assert name in {u["UserName"] for u in s_iam.list_users()["Users"]}
    victim = unique("v")
    with pytest.raises(s_iam.exceptions.ClientError) as e:
        s_iam.create_user(UserName=victim)
    assert e.value.response["Error"]["Message"] == (
        f"User: {session_arn} is not authorized to perform: iam:CreateUser on resource: "
        f"arn:aws:iam::{ACCOUNT}:user/{victim} because no identity-based policy allows the iam:CreateUser action")
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_user(UserName=victim)
    # A policy change of the role reaches its sessions (at once on this node).
    iam.delete_role_policy(RoleName=r["RoleName"], PolicyName="p")
    with pytest.raises(s_iam.exceptions.ClientError) as e:
        s_iam.list_users()
    assert error_code(e.value) == "AccessDenied"
    # Session credentials authenticate KMS requests too.
    kms = session(server, creds, "kms")
    try:
        kms.list_keys(Limit=1)
    except kms.exceptions.ClientError as e:
        # Once KMS requests are authorized, the session (without KMS permissions) is denied: still
        # authenticated.
        assert error_code(e) == "AccessDeniedException", e.response


def test_trust_policy_decides(server, iam):
    name, key = new_user(iam)
    sts = as_user(server, key, "sts")
    # Trusting the account delegates to the caller's identity policies: none yet, so denied.
    r = role(iam, trust(ACCOUNT))
    with pytest.raises(sts.exceptions.ClientError) as e:
        sts.assume_role(RoleArn=r["Arn"], RoleSessionName="s1")
    assert error_code(e.value) == "AccessDenied"
    assert e.value.response["Error"]["Message"] == (
        f"User: arn:aws:iam::{ACCOUNT}:user/{name} is not authorized to perform: sts:AssumeRole on resource: "
        f"{r['Arn']} because no identity-based policy allows the sts:AssumeRole action")
    iam.put_user_policy(UserName=name, PolicyName="assume", PolicyDocument=json.dumps(ASSUME_ONLY))
    sts.assume_role(RoleArn=r["Arn"], RoleSessionName="s1")
    # Trusting someone else: denied whatever the caller's identity policies say.
    other = role(iam, trust(f"arn:aws:iam::{ACCOUNT}:user/someone-else"))
    with pytest.raises(sts.exceptions.ClientError) as e:
        sts.assume_role(RoleArn=other["Arn"], RoleSessionName="s1")
    assert e.value.response["Error"]["Message"].endswith("because no resource-based policy allows the sts:AssumeRole action")
    # A role that does not exist is answered as one that does not trust the caller.
    missing = f"arn:aws:iam::{ACCOUNT}:role/{unique('none')}"
    with pytest.raises(sts.exceptions.ClientError) as e:
        sts.assume_role(RoleArn=missing, RoleSessionName="s1")
    assert error_code(e.value) == "AccessDenied"
    # An explicit deny in the trust policy wins.
    denied = role(iam, json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "sts:AssumeRole"},
        {"Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/{name}"}, "Action": "sts:AssumeRole"}]}))
    with pytest.raises(sts.exceptions.ClientError) as e:
        sts.assume_role(RoleArn=denied["Arn"], RoleSessionName="s1")
    assert e.value.response["Error"]["Message"].endswith("with an explicit deny in a resource-based policy")


def test_external_id(server, iam):
    name, key = new_user(iam, ASSUME_ONLY)
    sts = as_user(server, key, "sts")
    r = role(iam, trust(ACCOUNT, {"StringEquals": {"sts:ExternalId": "tenant-42"}}))
    for kw in ({}, {"ExternalId": "tenant-43"}):
        with pytest.raises(sts.exceptions.ClientError) as e:
            sts.assume_role(RoleArn=r["Arn"], RoleSessionName="s1", **kw)
        assert error_code(e.value) == "AccessDenied"
    sts.assume_role(RoleArn=r["Arn"], RoleSessionName="s1", ExternalId="tenant-42")


def test_duration_and_session_name_rules(server, iam):
    r = role(iam, trust(ACCOUNT), ASSUME_ONLY, MaxSessionDuration=7200)
    sts = client("sts", server.endpoint, *server.credentials)
    out = sts.assume_role(RoleArn=r["Arn"], RoleSessionName="long", DurationSeconds=7200)
    exp = out["Credentials"]["Expiration"].timestamp()
    assert 7100 < exp - time.time() <= 7200
    for kw in ({"DurationSeconds": 7201}, {"DurationSeconds": 899}, {"RoleSessionName": "x"},
               {"RoleSessionName": "has space"}, {"RoleSessionName": "y" * 65}):
        args = {"RoleArn": r["Arn"], "RoleSessionName": "ok", **kw}
        with pytest.raises(sts.exceptions.ClientError) as e:
            sts.assume_role(**args)
        assert error_code(e.value) == "ValidationError", (kw, e.value.response)
    # Role chaining: a session (whose role may assume roles) may assume a role for at most an hour.
    creds = out["Credentials"]
    chained = session(server, creds)
    with pytest.raises(chained.exceptions.ClientError) as e:
        chained.assume_role(RoleArn=r["Arn"], RoleSessionName="c", DurationSeconds=3601)
    assert error_code(e.value) == "ValidationError"


def test_forged_and_foreign_session_tokens(server, iam):
    r = role(iam, trust(ACCOUNT), ALLOW_ALL)
    sts = client("sts", server.endpoint, *server.credentials)
    creds = sts.assume_role(RoleArn=r["Arn"], RoleSessionName="s0")["Credentials"]
    session(server, creds).get_caller_identity()
    raw = bytearray(base64.b64decode(creds["SessionToken"]))
    raw[len(raw) // 2] ^= 1
    forged = dict(creds, SessionToken=base64.b64encode(bytes(raw)).decode())
    other = sts.assume_role(RoleArn=r["Arn"], RoleSessionName="t0")["Credentials"]
    # Another session's token with this session's key: refused too.
    swapped = dict(creds, SessionToken=other["SessionToken"])
    for bad in (forged, swapped, dict(creds, SessionToken="bm90IGEgdG9rZW4=")):
        with pytest.raises(sts.exceptions.ClientError) as e:
            session(server, bad).get_caller_identity()
        assert error_code(e.value) == "InvalidClientTokenId"
        kms = session(server, bad, "kms")
        with pytest.raises(kms.exceptions.ClientError) as e:
            kms.list_keys()
        assert error_code(e.value) == "UnrecognizedClientException"
    # Session credentials without their token are unknown access keys.
    bare = client("sts", server.endpoint, creds["AccessKeyId"], creds["SecretAccessKey"])
    with pytest.raises(bare.exceptions.ClientError) as e:
        bare.get_caller_identity()
    assert error_code(e.value) == "InvalidClientTokenId"


def test_session_of_a_deleted_role_has_no_rights(server, iam):
    r = role(iam, trust(ACCOUNT), {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iam:ListRoles", "Resource": "*"}]})
    sts = client("sts", server.endpoint, *server.credentials)
    creds = sts.assume_role(RoleArn=r["Arn"], RoleSessionName="s0")["Credentials"]
    s_iam = session(server, creds, "iam")
    s_iam.list_roles()
    iam.delete_role_policy(RoleName=r["RoleName"], PolicyName="p")
    iam.delete_role(RoleName=r["RoleName"])
    # Made again under the same name, it is another role: the old session gets none of its rights.
    iam.create_role(RoleName=r["RoleName"], AssumeRolePolicyDocument=trust(ACCOUNT))
    iam.put_role_policy(RoleName=r["RoleName"], PolicyName="p", PolicyDocument=json.dumps(ALLOW_ALL))
    with pytest.raises(s_iam.exceptions.ClientError) as e:
        s_iam.list_roles()
    assert error_code(e.value) == "AccessDenied"


def test_awscli_sts(server, iam):
    r = role(iam, trust(ACCOUNT))
    ak, sk = server.credentials
    aws = os.path.join(os.path.dirname(sys.executable), "aws")
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ak, AWS_SECRET_ACCESS_KEY=sk, AWS_DEFAULT_REGION=REGION,
               AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    run = lambda *a, e=env: subprocess.run([aws, "sts", *a, "--endpoint-url", server.endpoint, "--output", "json"],
                                           capture_output=True, text=True, env=e, timeout=60)
    out = run("assume-role", "--role-arn", r["Arn"], "--role-session-name", "cli")
    assert out.returncode == 0, out.stderr
    creds = json.loads(out.stdout)["Credentials"]
    senv = dict(env, AWS_ACCESS_KEY_ID=creds["AccessKeyId"], AWS_SECRET_ACCESS_KEY=creds["SecretAccessKey"],
                AWS_SESSION_TOKEN=creds["SessionToken"])
    who = run("get-caller-identity", e=senv)
    assert who.returncode == 0, who.stderr
    assert json.loads(who.stdout)["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{r['RoleName']}/cli"
