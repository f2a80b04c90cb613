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
    someone_else = unique("else")
    iam.create_user(UserName=someone_else)
    other = role(iam, trust(f"arn:aws:iam::{ACCOUNT}:user/{someone_else}"))
    with pytest.raises(sts.exceptions.ClientError) as e:
        sts.assume_role(RoleArn=other["Arn"], RoleSessionName="s1")
    assert e.value.response["Error"]["Message"].endswith("because no resource-based policy allows the sts:AssumeRole action")
    # A trust policy may name only principals that exist (IAM's own check and message).
    roles_before = iam.list_roles()["Roles"]
    with pytest.raises(iam.exceptions.MalformedPolicyDocumentException) as e:
        role(iam, trust(f"arn:aws:iam::{ACCOUNT}:user/{unique('nobody')}"))
    assert e.value.response["Error"]["Message"].startswith('Invalid principal in policy: "AWS":"arn:aws:iam::')
    assert iam.list_roles()["Roles"] == roles_before
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


def test_a_deleted_roles_sessions_are_refused_even_where_a_key_policy_names_the_role(server, iam):
    r = role(iam, trust(ACCOUNT), {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iam:ListRoles", "Resource": "*"}]})
    admin_kms = server.client()
    # A key whose policy lets the role in by its ARN (no identity policy needed).
    key_policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": r["Arn"]}, "Action": "kms:Encrypt", "Resource": "*"}]}
    key = admin_kms.create_key(Policy=json.dumps(key_policy))["KeyMetadata"]["KeyId"]
    sts = client("sts", server.endpoint, *server.credentials)
    creds = sts.assume_role(RoleArn=r["Arn"], RoleSessionName="s0")["Credentials"]
    s_iam, s_kms = session(server, creds, "iam"), session(server, creds, "kms")
    s_iam.list_roles()
    s_kms.encrypt(KeyId=key, Plaintext=b"x")
    iam.delete_role_policy(RoleName=r["RoleName"], PolicyName="p")
    iam.delete_role(RoleName=r["RoleName"])
    # Made again under the same name, it is another role (a new unique id): the old session is not
    # its session, so neither the key policy nor the new role's policies let it in.
    iam.create_role(RoleName=r["RoleName"], AssumeRolePolicyDocument=trust(ACCOUNT))
    iam.put_role_policy(RoleName=r["RoleName"], PolicyName="p", PolicyDocument=json.dumps(ALLOW_ALL))
    for call, service, code in [(s_iam.list_roles, s_iam, "InvalidClientTokenId"),
                                (lambda: s_kms.encrypt(KeyId=key, Plaintext=b"x"), s_kms, "UnrecognizedClientException"),
                                (session(server, creds).get_caller_identity, sts, "InvalidClientTokenId")]:
        with pytest.raises(service.exceptions.ClientError) as e:
            call()
        assert error_code(e.value) == code
    # A session of the new role works.
    fresh = sts.assume_role(RoleArn=r["Arn"], RoleSessionName="s1")["Credentials"]
    session(server, fresh, "iam").list_roles()


def test_revoking_a_roles_older_sessions_with_aws_token_issue_time(server, iam):
    """AWS's "Revoke active sessions": an inline policy denying everything to sessions issued
    before a time (aws:TokenIssueTime)."""
    r = role(iam, trust(ACCOUNT), ALLOW_ALL)
    sts = client("sts", server.endpoint, *server.credentials)
    old = sts.assume_role(RoleArn=r["Arn"], RoleSessionName="old")["Credentials"]
    key = session(server, old, "kms").create_key()["KeyMetadata"]["KeyId"]
    time.sleep(1.1)  # token issue times are whole seconds
    revoked_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    iam.put_role_policy(RoleName=r["RoleName"], PolicyName="AWSRevokeOlderSessions", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": ["*"], "Resource": ["*"],
                                                 "Condition": {"DateLessThan": {"aws:TokenIssueTime": revoked_at}}}]}))
    time.sleep(1.1)
    new = sts.assume_role(RoleArn=r["Arn"], RoleSessionName="new")["Credentials"]
    old_kms = session(server, old, "kms")
    with pytest.raises(old_kms.exceptions.ClientError) as e:
        old_kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    assert error_code(e.value) == "AccessDeniedException"
    assert "with an explicit deny in an identity-based policy" in e.value.response["Error"]["Message"]
    assert server.client().describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Enabled"
    session(server, new, "kms").describe_key(KeyId=key)


def test_a_sessions_principal_tags_are_its_roles_tags(server, iam):
    deny_restricted = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"},
        {"Effect": "Deny", "Action": "kms:*", "Resource": "*",
         "Condition": {"StringEquals": {"aws:PrincipalTag/restricted": "true"}}}]}
    sts = client("sts", server.endpoint, *server.credentials)
    tagged = role(iam, trust(ACCOUNT), deny_restricted, Tags=[{"Key": "restricted", "Value": "true"}])
    plain = role(iam, trust(ACCOUNT), deny_restricted)
    t = session(server, sts.assume_role(RoleArn=tagged["Arn"], RoleSessionName="tagged")["Credentials"], "kms")
    with pytest.raises(t.exceptions.ClientError) as e:
        t.list_keys()
    assert error_code(e.value) == "AccessDeniedException"
    session(server, sts.assume_role(RoleArn=plain["Arn"], RoleSessionName="plain")["Credentials"], "kms").list_keys()


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


def faketime_lib() -> str:
    """libfaketime (scripts/test installs the faketime package and exports its path)."""
    import glob
    lib = os.environ.get("ENVELOPE_TEST_FAKETIME_LIB") or next(
        iter(glob.glob("/usr/lib/*/faketime/libfaketime.so.1")), None)
    if not lib:
        if os.environ.get("CI"):
            pytest.fail("libfaketime not found under CI (scripts/test installs the faketime package)")
        pytest.skip("libfaketime not installed")
    return lib


def signed_at(server, when, service, creds, headers, body: bytes):
    """A request signed by botocore as at `when` (naive UTC), with `creds` (id, secret, token)."""
    import botocore.auth
    from unittest import mock
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    from conftest import http_post
    req = AWSRequest(method="POST", url=server.endpoint + "/", data=body, headers=dict(headers))
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=when):
        SigV4Auth(Credentials(*creds), service, REGION).add_auth(req)
    return http_post(*server.hostport(), dict(req.headers.items()), body)


def test_an_expired_session_token_is_refused(tmp_path_factory):
    """A session of the shortest duration (900 s), used when its server's clock says twenty minutes
    later (the same data directory served under libfaketime): ExpiredTokenException on KMS,
    ExpiredToken on STS, while the admin's long-term key still works at that time."""
    import datetime
    from conftest import Server
    lib = faketime_lib()
    s = start_server(tmp_path_factory)
    try:
        iam = client("iam", s.endpoint, *s.credentials)
        r = role(iam, trust(ACCOUNT), ALLOW_ALL)
        sts = client("sts", s.endpoint, *s.credentials)
        creds = sts.assume_role(RoleArn=r["Arn"], RoleSessionName="short", DurationSeconds=900)["Credentials"]
        assert session(s, creds, "kms").list_keys()["Keys"] == []
    finally:
        s.stop()
    later = Server(s.data_dir, env={"LD_PRELOAD": lib, "FAKETIME": "+20m",
                                    "FAKETIME_DONT_FAKE_MONOTONIC": "1", "FAKETIME_NO_CACHE": "1"}).start()
    try:
        when = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) + datetime.timedelta(minutes=20)
        temp = (creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
        kms_headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "TrentService.ListKeys"}
        status, _, parsed = signed_at(later, when, "kms", temp, kms_headers, b"{}")
        assert (status, parsed.get("__type", "").split("#")[-1]) == (400, "ExpiredTokenException"), parsed
        form = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
        status, _, body = signed_at(later, when, "sts", temp, form, b"Action=GetCallerIdentity&Version=2011-06-15")
        assert status == 403 and b"<Code>ExpiredToken</Code>" in body, body
        # The server's clock really is ahead: the admin signs at that time and is served.
        status, _, parsed = signed_at(later, when, "kms", (*later.credentials, None), kms_headers, b"{}")
        assert status == 200 and parsed["Keys"] == [], parsed
        # And a request signed at the real time is outside its ±15-minute window.
        now = when - datetime.timedelta(minutes=20)
        status, _, parsed = signed_at(later, now, "kms", (*later.credentials, None), kms_headers, b"{}")
        assert status == 400 and "Signature expired" in parsed.get("message", parsed.get("Message", "")), parsed
    finally:
        later.stop()
