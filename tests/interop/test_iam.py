"""IAM on the KMS endpoint: boto3's `iam` client and `aws iam` against `envelope serve`.

Every action is decided by the policy engine on identity-based policies; a denied call changes nothing."""

import json
import os
import subprocess
import sys
import threading
import time
from xml.etree import ElementTree

import boto3
import pytest
from botocore.config import Config

from conftest import STORES, start_server, ACCOUNT, REGION, audit_records, envelope_bin, error_code, kms_client, unique

ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
ADMIN_ARN = "arn:aws:iam::aws:policy/AdministratorAccess"


def client(service, endpoint, ak, sk, token=None):
    return boto3.session.Session().client(
        service, endpoint_url=endpoint, region_name=REGION, aws_access_key_id=ak,
        aws_secret_access_key=sk, aws_session_token=token,
        # No client-side validation: out-of-range values must reach the server, which answers them.
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, parameter_validation=False))


@pytest.fixture(scope="module", params=STORES)
def server(request, tmp_path_factory):
    """This module's server, on SQLite and (with ENVELOPE_TEST_POSTGRES_URL) on PostgreSQL."""
    s = start_server(tmp_path_factory, request.param)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def iam(server):
    return client("iam", server.endpoint, *server.credentials)


def new_user(iam, policy=None, **kw):
    """A user with an access key, and (optionally) an inline policy. Returns (name, iam client as it)."""
    name = unique("u")
    iam.create_user(UserName=name, **kw)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    if policy is not None:
        iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    return name, key


def as_user(server, key, service="iam"):
    return client(service, server.endpoint, key["AccessKeyId"], key["SecretAccessKey"])


def user_names(iam):
    return {u["UserName"] for u in iam.list_users()["Users"]}


def test_user_lifecycle(iam):
    name = unique("alice")
    u = iam.create_user(UserName=name, Path="/eng/", Tags=[{"Key": "team", "Value": "red"}])["User"]
    assert u["UserName"] == name
    assert u["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/eng/{name}"
    assert u["UserId"].startswith("AIDA") and len(u["UserId"]) == 21
    assert u["Path"] == "/eng/"
    got = iam.get_user(UserName=name)["User"]
    assert got["UserId"] == u["UserId"] and got["Tags"] == [{"Key": "team", "Value": "red"}]
    # Names are unique whatever their case, and found whatever their case.
    assert iam.get_user(UserName=name.upper())["User"]["UserId"] == u["UserId"]
    with pytest.raises(iam.exceptions.EntityAlreadyExistsException):
        iam.create_user(UserName=name.upper())
    assert name in user_names(iam)
    assert name in {u["UserName"] for u in iam.list_users(PathPrefix="/eng/")["Users"]}
    assert name not in {u["UserName"] for u in iam.list_users(PathPrefix="/ops/")["Users"]}
    iam.delete_user(UserName=name)
    with pytest.raises(iam.exceptions.NoSuchEntityException) as e:
        iam.get_user(UserName=name)
    assert e.value.response["Error"]["Message"] == f"The user with name {name} cannot be found."
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert e.value.response["ResponseMetadata"]["RequestId"]


def test_get_user_without_name_is_the_caller(server, iam):
    me = iam.get_user()["User"]
    assert me["UserName"] == "admin"
    assert me["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/admin"


@pytest.mark.parametrize("bad", ["has space", "x" * 65, "slash/name"])
def test_invalid_user_names(iam, bad):
    with pytest.raises(iam.exceptions.ClientError) as e:
        iam.create_user(UserName=bad)
    assert error_code(e.value) == "ValidationError"


def test_list_users_pages(iam):
    prefix = f"/page{unique('p')}/"
    names = sorted(unique("pg") for _ in range(5))
    for n in names:
        iam.create_user(UserName=n, Path=prefix)
    first = iam.list_users(PathPrefix=prefix, MaxItems=2)
    assert first["IsTruncated"] and len(first["Users"]) == 2
    seen = [u["UserName"] for u in first["Users"]]
    marker = first["Marker"]
    while marker:
        page = iam.list_users(PathPrefix=prefix, MaxItems=2, Marker=marker)
        seen += [u["UserName"] for u in page["Users"]]
        marker = page.get("Marker")
    assert seen == names
    paginated = [u["UserName"] for p in iam.get_paginator("list_users").paginate(PathPrefix=prefix,
                                                                              PaginationConfig={"PageSize": 2})
                 for u in p["Users"]]
    assert paginated == names


def test_access_keys(server, iam):
    name, key = new_user(iam, ALLOW_ALL)
    me = as_user(server, key)
    assert me.get_user()["User"]["UserName"] == name
    keys = iam.list_access_keys(UserName=name)["AccessKeyMetadata"]
    assert [(k["AccessKeyId"], k["Status"], k["UserName"]) for k in keys] == [(key["AccessKeyId"], "Active", name)]
    assert key["AccessKeyId"].startswith("AKIA") and len(key["SecretAccessKey"]) == 40
    second = iam.create_access_key(UserName=name)["AccessKey"]
    with pytest.raises(iam.exceptions.LimitExceededException) as e:
        iam.create_access_key(UserName=name)
    assert "AccessKeysPerUser: 2" in e.value.response["Error"]["Message"]
    assert len(iam.list_access_keys(UserName=name)["AccessKeyMetadata"]) == 2
    # Inactive: refused at once (this node), by IAM and by KMS, each with its own error name.
    iam.update_access_key(UserName=name, AccessKeyId=key["AccessKeyId"], Status="Inactive")
    with pytest.raises(me.exceptions.ClientError) as e:
        me.get_user()
    assert error_code(e.value) == "InvalidClientTokenId"
    kms = kms_client(server.endpoint, key["AccessKeyId"], key["SecretAccessKey"])
    with pytest.raises(kms.exceptions.ClientError) as e:
        kms.list_keys()
    assert error_code(e.value) == "UnrecognizedClientException"
    iam.update_access_key(UserName=name, AccessKeyId=key["AccessKeyId"], Status="Active")
    me.get_user()
    # The user's own key manages its keys (no UserName: the caller).
    as_user(server, second).delete_access_key(AccessKeyId=key["AccessKeyId"])
    with pytest.raises(me.exceptions.ClientError) as e:
        me.get_user()
    assert error_code(e.value) == "InvalidClientTokenId"
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])


def test_delete_user_conflicts(iam):
    name, key = new_user(iam, ALLOW_ALL)
    with pytest.raises(iam.exceptions.DeleteConflictException) as e:
        iam.delete_user(UserName=name)
    assert "access keys" in e.value.response["Error"]["Message"]
    iam.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])
    with pytest.raises(iam.exceptions.DeleteConflictException):
        iam.delete_user(UserName=name)
    iam.delete_user_policy(UserName=name, PolicyName="p")
    iam.delete_user(UserName=name)
    assert name not in user_names(iam)


@pytest.mark.parametrize("kind", ["user", "group", "role"])
def test_inline_policies(iam, kind):
    name = unique(kind[0])
    trust = {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "sts:AssumeRole"}]}
    create = {"user": lambda: iam.create_user(UserName=name),
              "group": lambda: iam.create_group(GroupName=name),
              "role": lambda: iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))}
    create[kind]()
    K = kind.capitalize()
    owner = {f"{K}Name": name}
    doc = {"Version": "2012-10-17", "Statement": [
        {"Sid": "Enc", "Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*",
         "Condition": {"StringEquals": {"kms:EncryptionContext:app": "a b&c%d"}}}]}
    put = getattr(iam, f"put_{kind}_policy")
    put(**owner, PolicyName="enc", PolicyDocument=json.dumps(doc))
    got = getattr(iam, f"get_{kind}_policy")(**owner, PolicyName="enc")
    assert got["PolicyName"] == "enc" and got[f"{K}Name"] == name
    assert got["PolicyDocument"] == doc  # botocore URL-decodes and parses it
    assert getattr(iam, f"list_{kind}_policies")(**owner)["PolicyNames"] == ["enc"]
    with pytest.raises(iam.exceptions.MalformedPolicyDocumentException):
        put(**owner, PolicyName="bad", PolicyDocument="{not json")
    with pytest.raises(iam.exceptions.MalformedPolicyDocumentException):
        put(**owner, PolicyName="bad", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Maybe", "Action": "*", "Resource": "*"}]}))
    assert getattr(iam, f"list_{kind}_policies")(**owner)["PolicyNames"] == ["enc"]
    getattr(iam, f"delete_{kind}_policy")(**owner, PolicyName="enc")
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        getattr(iam, f"get_{kind}_policy")(**owner, PolicyName="enc")
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        put(**{f"{K}Name": name + "-missing"}, PolicyName="enc", PolicyDocument=json.dumps(doc))


def test_inline_policy_size_limit(iam):
    name = unique("big")
    iam.create_user(UserName=name)
    big = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "kms:Encrypt", "Resource": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{i:036d}"}
        for i in range(30)]}
    with pytest.raises(iam.exceptions.LimitExceededException):
        iam.put_user_policy(UserName=name, PolicyName="big", PolicyDocument=json.dumps(big))
    assert iam.list_user_policies(UserName=name)["PolicyNames"] == []


def test_groups(server, iam):
    group = unique("g")
    g = iam.create_group(GroupName=group)["Group"]
    assert g["GroupId"].startswith("AGPA") and g["Arn"] == f"arn:aws:iam::{ACCOUNT}:group/{group}"
    with pytest.raises(iam.exceptions.EntityAlreadyExistsException):
        iam.create_group(GroupName=group)
    name, key = new_user(iam)
    me = as_user(server, key)
    with pytest.raises(me.exceptions.ClientError) as e:
        me.list_users()
    assert error_code(e.value) == "AccessDenied"
    iam.put_group_policy(GroupName=group, PolicyName="list", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iam:ListUsers", "Resource": "*"}]}))
    iam.add_user_to_group(GroupName=group, UserName=name)
    assert [u["UserName"] for u in iam.get_group(GroupName=group)["Users"]] == [name]
    assert group in {x["GroupName"] for x in iam.list_groups()["Groups"]}
    assert [x["GroupName"] for x in iam.list_groups_for_user(UserName=name)["Groups"]] == [group]
    # The group's policy applies to its member at once (this node drops its cache on a change).
    assert name in {u["UserName"] for u in me.list_users()["Users"]}
    with pytest.raises(iam.exceptions.DeleteConflictException):
        iam.delete_group(GroupName=group)
    iam.remove_user_from_group(GroupName=group, UserName=name)
    with pytest.raises(me.exceptions.ClientError) as e:
        me.list_users()
    assert error_code(e.value) == "AccessDenied"
    iam.delete_group_policy(GroupName=group, PolicyName="list")
    iam.delete_group(GroupName=group)
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_group(GroupName=group)


def test_managed_policies(server, iam):
    pname = unique("pol")
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iam:GetUser", "Resource": "*"}]}
    p = iam.create_policy(PolicyName=pname, PolicyDocument=json.dumps(doc), Description="read users")["Policy"]
    assert p["Arn"] == f"arn:aws:iam::{ACCOUNT}:policy/{pname}"
    assert p["DefaultVersionId"] == "v1" and p["AttachmentCount"] == 0 and p["IsAttachable"]
    with pytest.raises(iam.exceptions.EntityAlreadyExistsException):
        iam.create_policy(PolicyName=pname, PolicyDocument=json.dumps(doc))
    assert iam.get_policy_version(PolicyArn=p["Arn"], VersionId="v1")["PolicyVersion"]["Document"] == doc
    name, key = new_user(iam)
    me = as_user(server, key)
    with pytest.raises(me.exceptions.ClientError):
        me.get_user()
    iam.attach_user_policy(UserName=name, PolicyArn=p["Arn"])
    assert iam.list_attached_user_policies(UserName=name)["AttachedPolicies"] == [
        {"PolicyName": pname, "PolicyArn": p["Arn"]}]
    assert iam.get_policy(PolicyArn=p["Arn"])["Policy"]["AttachmentCount"] == 1
    assert me.get_user()["User"]["UserName"] == name
    with pytest.raises(iam.exceptions.DeleteConflictException):
        iam.delete_policy(PolicyArn=p["Arn"])
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.attach_user_policy(UserName=name, PolicyArn=f"arn:aws:iam::{ACCOUNT}:policy/none-such")
    iam.detach_user_policy(UserName=name, PolicyArn=p["Arn"])
    with pytest.raises(me.exceptions.ClientError):
        me.get_user()
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.detach_user_policy(UserName=name, PolicyArn=p["Arn"])
    # AdministratorAccess is built in, and attaches to groups and roles as to users.
    group = unique("g")
    iam.create_group(GroupName=group)
    iam.attach_group_policy(GroupName=group, PolicyArn=ADMIN_ARN)
    assert iam.list_attached_group_policies(GroupName=group)["AttachedPolicies"] == [
        {"PolicyName": "AdministratorAccess", "PolicyArn": ADMIN_ARN}]
    iam.add_user_to_group(GroupName=group, UserName=name)
    me.create_user(UserName=unique("by-admin-group"))
    iam.remove_user_from_group(GroupName=group, UserName=name)
    iam.detach_group_policy(GroupName=group, PolicyArn=ADMIN_ARN)
    arns = {x["Arn"] for x in iam.list_policies(Scope="Local")["Policies"]}
    assert p["Arn"] in arns and ADMIN_ARN not in arns
    iam.delete_policy(PolicyArn=p["Arn"])
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_policy(PolicyArn=p["Arn"])


def test_roles(iam):
    name = unique("r")
    trust = {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                            "Action": "sts:AssumeRole"}]}
    r = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust), Description="app",
                        MaxSessionDuration=7200)["Role"]
    assert r["RoleId"].startswith("AROA") and r["Arn"] == f"arn:aws:iam::{ACCOUNT}:role/{name}"
    got = iam.get_role(RoleName=name)["Role"]
    assert got["AssumeRolePolicyDocument"] == trust
    assert got["MaxSessionDuration"] == 7200 and got["Description"] == "app"
    assert name in {x["RoleName"] for x in iam.list_roles()["Roles"]}
    with pytest.raises(iam.exceptions.EntityAlreadyExistsException):
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
    for bad in (3599, 43201):
        with pytest.raises(iam.exceptions.ClientError) as e:
            iam.create_role(RoleName=unique("r"), AssumeRolePolicyDocument=json.dumps(trust),
                            MaxSessionDuration=bad)
        assert error_code(e.value) == "ValidationError"
    with pytest.raises(iam.exceptions.MalformedPolicyDocumentException):
        # A trust policy names a principal and no resource.
        iam.create_role(RoleName=unique("r"), AssumeRolePolicyDocument=json.dumps(ALLOW_ALL))
    iam.attach_role_policy(RoleName=name, PolicyArn=ADMIN_ARN)
    with pytest.raises(iam.exceptions.DeleteConflictException):
        iam.delete_role(RoleName=name)
    assert iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"][0]["PolicyArn"] == ADMIN_ARN
    iam.detach_role_policy(RoleName=name, PolicyArn=ADMIN_ARN)
    iam.delete_role(RoleName=name)
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_role(RoleName=name)


def test_a_user_without_policies_is_denied_and_changes_nothing(server, iam):
    name, key = new_user(iam)
    me = as_user(server, key)
    before = user_names(iam)
    victim = unique("victim")
    for call in (lambda: me.create_user(UserName=victim),
                 lambda: me.delete_user(UserName=name),
                 lambda: me.create_access_key(UserName="admin"),
                 lambda: me.put_user_policy(UserName=name, PolicyName="mine", PolicyDocument=json.dumps(ALLOW_ALL)),
                 lambda: me.attach_user_policy(UserName=name, PolicyArn=ADMIN_ARN),
                 lambda: me.list_users()):
        with pytest.raises(me.exceptions.ClientError) as e:
            call()
        assert error_code(e.value) == "AccessDenied", e.value.response
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert user_names(iam) == before
    assert len(iam.list_access_keys(UserName="admin")["AccessKeyMetadata"]) == 1
    assert iam.list_user_policies(UserName=name)["PolicyNames"] == []
    assert iam.list_attached_user_policies(UserName=name)["AttachedPolicies"] == []
    # AWS's message: who, what, on which resource, and why.
    with pytest.raises(me.exceptions.ClientError) as e:
        me.create_user(UserName=victim)
    assert e.value.response["Error"]["Message"] == (
        f"User: arn:aws:iam::{ACCOUNT}:user/{name} is not authorized to perform: iam:CreateUser on resource: "
        f"arn:aws:iam::{ACCOUNT}:user/{victim} because no identity-based policy allows the iam:CreateUser action")
    # Denied whether the user exists or not: no hint either way.
    with pytest.raises(me.exceptions.ClientError) as e:
        me.get_user(UserName="no-such-user-here")
    assert error_code(e.value) == "AccessDenied"
    # Every call is audited with its outcome, as KMS calls are.
    deadline = time.monotonic() + 5
    while True:
        records = audit_records(server.data_dir)
        mine = [r for r in records if r["principalArn"] == f"arn:aws:iam::{ACCOUNT}:user/{name}"]
        if len(mine) >= 8 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert [r["eventName"] for r in mine[:2]] == ["CreateUser", "DeleteUser"]
    assert all(r["errorCode"] == "AccessDenied" for r in mine)
    assert all(r["accessKeyId"] == key["AccessKeyId"] for r in mine)
    assert key["SecretAccessKey"] not in (server.data_dir / "audit.log").read_text()


def test_identity_policy_scopes_and_explicit_deny(server, iam):
    name, key = new_user(iam, {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["iam:CreateUser", "iam:GetUser", "iam:DeleteUser"],
         "Resource": f"arn:aws:iam::{ACCOUNT}:user/team-${{aws:username}}-*"},
        {"Effect": "Allow", "Action": "iam:*", "Resource": f"arn:aws:iam::{ACCOUNT}:user/open-*"},
        {"Effect": "Deny", "Action": "iam:DeleteUser", "Resource": "*"}]})
    me = as_user(server, key)
    mine = f"team-{name}-1"
    me.create_user(UserName=mine)
    assert me.get_user(UserName=mine)["User"]["UserName"] == mine
    with pytest.raises(me.exceptions.ClientError) as e:
        me.create_user(UserName="team-someone-else-1")
    assert error_code(e.value) == "AccessDenied"
    with pytest.raises(me.exceptions.ClientError) as e:
        me.delete_user(UserName=mine)
    assert e.value.response["Error"]["Message"].endswith("with an explicit deny in an identity-based policy")
    assert mine in user_names(iam)
    opened = unique("open")
    me.create_user(UserName=opened)
    with pytest.raises(me.exceptions.ClientError):
        me.delete_user(UserName=opened)
    assert opened in user_names(iam)


def test_unknown_action_and_bad_credentials(server, iam):
    with pytest.raises(iam.exceptions.ClientError):
        iam.list_open_id_connect_providers()
    bad = client("iam", server.endpoint, "AKIANOSUCHKEY0000000", "x" * 40)
    with pytest.raises(bad.exceptions.ClientError) as e:
        bad.list_users()
    assert error_code(e.value) == "InvalidClientTokenId"
    wrong = client("iam", server.endpoint, server.credentials[0], "y" * 40)
    with pytest.raises(wrong.exceptions.ClientError) as e:
        wrong.list_users()
    assert error_code(e.value) == "SignatureDoesNotMatch"


def aws_iam(server, *args, creds=None):
    ak, sk = creds or server.credentials
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ak, AWS_SECRET_ACCESS_KEY=sk, AWS_DEFAULT_REGION=REGION,
               AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    aws = os.path.join(os.path.dirname(sys.executable), "aws")
    r = subprocess.run([aws, "iam", *args, "--endpoint-url", server.endpoint, "--output", "json"],
                       capture_output=True, text=True, env=env, timeout=60)
    return r


def test_awscli_iam(server, tmp_path):
    name = unique("cli")
    r = aws_iam(server, "create-user", "--user-name", name)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["User"]["UserName"] == name
    doc = tmp_path / "p.json"
    doc.write_text(json.dumps(ALLOW_ALL))
    r = aws_iam(server, "put-user-policy", "--user-name", name, "--policy-name", "all",
                "--policy-document", f"file://{doc}")
    assert r.returncode == 0, r.stderr
    r = aws_iam(server, "get-user-policy", "--user-name", name, "--policy-name", "all")
    assert json.loads(r.stdout)["PolicyDocument"] == ALLOW_ALL
    r = aws_iam(server, "create-access-key", "--user-name", name)
    key = json.loads(r.stdout)["AccessKey"]
    r = aws_iam(server, "list-users", creds=(key["AccessKeyId"], key["SecretAccessKey"]))
    assert r.returncode == 0, r.stderr
    assert name in {u["UserName"] for u in json.loads(r.stdout)["Users"]}
    r = aws_iam(server, "get-user", "--user-name", "nobody-x")
    assert r.returncode != 0 and "NoSuchEntity" in r.stderr


def test_principal_create_in_another_account_with_a_policy(server, tmp_path):
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iam:GetUser", "Resource": "*"}]}))
    env = {k: v for k, v in os.environ.items() if k not in ("ENVELOPE_ROOT_KEY", "ENVELOPE_DATA_DIR")}
    store = ["--data-dir", str(server.data_dir)]
    if server.database_url:
        store += ["--database-url", server.database_url]
    r = subprocess.run([envelope_bin(), "principal", "create", "ops", "--account-id", "444455556666",
                        "--policy-file", str(policy), *store],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["Arn"] == "arn:aws:iam::444455556666:user/ops" and out["Account"] == "444455556666"
    deadline = time.monotonic() + 5
    other = client("iam", server.endpoint, out["AccessKeyId"], out["SecretAccessKey"])
    while True:
        try:
            me = other.get_user()["User"]
            break
        except other.exceptions.ClientError:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert me["Arn"] == "arn:aws:iam::444455556666:user/ops"
    # Its account is its own: the home account's users are not listed, and it may not list anyway.
    with pytest.raises(other.exceptions.ClientError) as e:
        other.list_users()
    assert error_code(e.value) == "AccessDenied"
    assert "arn:aws:iam::444455556666:user/" in e.value.response["Error"]["Message"]
    # A user of the same name in the home account is another user.
    iam = client("iam", server.endpoint, *server.credentials)
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_user(UserName="ops")
    # Without --admin or --policy-file: no policy, and a note says so.
    r = subprocess.run([envelope_bin(), "principal", "create", "bare", *store],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0 and "has no policy" in r.stderr
    assert iam.list_attached_user_policies(UserName="bare")["AttachedPolicies"] == []
    assert iam.list_user_policies(UserName="bare")["PolicyNames"] == []
    # A policy over a user's 2,048 characters of inline policy (whitespace not counted) is refused
    # as PutUserPolicy refuses it, and no user is made.
    policy.write_text(json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "s" * 2000, "Effect": "Allow", "Action": "iam:GetUser", "Resource": "*"}]}))
    r = subprocess.run([envelope_bin(), "principal", "create", "big", "--account-id", "444455556666",
                        "--policy-file", str(policy), *store],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode != 0 and "2048" in r.stderr, r.stderr
    # No user "big" was left behind: the name is free for the next try.
    policy.write_text(json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iam:GetUser", "Resource": "*"}]}))
    r = subprocess.run([envelope_bin(), "principal", "create", "big", "--account-id", "444455556666",
                        "--policy-file", str(policy), *store],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr


def test_policy_arn_condition_limits_what_may_be_attached(server, iam):
    pname = unique("ro")
    ro = iam.create_policy(PolicyName=pname, PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iam:GetUser", "Resource": "*"}]}))
    name, key = new_user(iam, {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["iam:AttachUserPolicy", "iam:DetachUserPolicy"],
         "Resource": "*", "Condition": {"ArnEquals": {"iam:PolicyARN": ro["Policy"]["Arn"]}}}]})
    me = as_user(server, key)
    with pytest.raises(me.exceptions.ClientError) as e:
        me.attach_user_policy(UserName=name, PolicyArn=ADMIN_ARN)
    assert error_code(e.value) == "AccessDenied"
    assert iam.list_attached_user_policies(UserName=name)["AttachedPolicies"] == []
    me.attach_user_policy(UserName=name, PolicyArn=ro["Policy"]["Arn"])
    assert me.get_user()["User"]["UserName"] == name
    me.detach_user_policy(UserName=name, PolicyArn=ro["Policy"]["Arn"])


# -- the policy simulator ------------------------------------------------------------------------------

SIMULATED = {"Version": "2012-10-17", "Statement": [
    {"Sid": "EncryptForWeb", "Effect": "Allow", "Action": "kms:Encrypt", "Resource": "*",
     "Condition": {"StringEquals": {"kms:EncryptionContext:app": "web"}}},
    {"Sid": "NeverDecrypt", "Effect": "Deny", "Action": "kms:Decrypt", "Resource": "*"}]}


def decisions(out):
    return {(r["EvalActionName"], r["EvalResourceName"]): r["EvalDecision"] for r in out["EvaluationResults"]}


def test_simulate_principal_policy(server, iam):
    name, _ = new_user(iam, SIMULATED)
    arn = iam.get_user(UserName=name)["User"]["Arn"]
    key = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    web = [{"ContextKeyName": "kms:EncryptionContext:app", "ContextKeyValues": ["web"], "ContextKeyType": "string"}]
    out = iam.simulate_principal_policy(PolicySourceArn=arn, ActionNames=["kms:Encrypt", "kms:Decrypt", "kms:CreateKey"],
                                        ResourceArns=[key], ContextEntries=web)
    assert out["IsTruncated"] is False
    assert decisions(out) == {("kms:Encrypt", key): "allowed", ("kms:Decrypt", key): "explicitDeny",
                              ("kms:CreateKey", key): "implicitDeny"}
    by_action = {r["EvalActionName"]: r for r in out["EvaluationResults"]}
    assert by_action["kms:Encrypt"]["MatchedStatements"] == [
        {"SourcePolicyId": "user inline policy p", "SourcePolicyType": "user"}]
    assert by_action["kms:Decrypt"]["MatchedStatements"] == [
        {"SourcePolicyId": "user inline policy p", "SourcePolicyType": "user"}]
    assert by_action["kms:CreateKey"]["MatchedStatements"] == []
    # Without the context the condition fails; the default resource is "*".
    out = iam.simulate_principal_policy(PolicySourceArn=arn, ActionNames=["kms:Encrypt"])
    assert decisions(out) == {("kms:Encrypt", "*"): "implicitDeny"}
    # A policy from the input list takes part; an explicit Deny still wins over it.
    extra = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["kms:CreateKey", "kms:Decrypt"], "Resource": "*"}]})
    out = iam.simulate_principal_policy(PolicySourceArn=arn, ActionNames=["kms:CreateKey", "kms:Decrypt"],
                                        PolicyInputList=[extra])
    assert decisions(out) == {("kms:CreateKey", "*"): "allowed", ("kms:Decrypt", "*"): "explicitDeny"}
    assert by_type(out, "kms:CreateKey") == [("PolicyInputList.1", "none")]
    # A resource policy takes part as a key policy: one naming the user allows it directly.
    key_policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "UserReEncrypts", "Effect": "Allow", "Principal": {"AWS": arn}, "Action": "kms:ReEncrypt*",
         "Resource": "*"}]})
    out = iam.simulate_principal_policy(PolicySourceArn=arn, ActionNames=["kms:ReEncryptFrom", "kms:Encrypt"],
                                        ResourceArns=[key], ResourcePolicy=key_policy, ContextEntries=web)
    assert decisions(out) == {("kms:ReEncryptFrom", key): "allowed", ("kms:Encrypt", key): "implicitDeny"}
    assert by_type(out, "kms:ReEncryptFrom") == [("ResourcePolicy", "resource")]
    # The simulator answers as the engine does for real requests: the user is refused Decrypt.
    user_kms = kms_client(server.endpoint, *new_access_key(iam, name))
    k = server.client().create_key()["KeyMetadata"]["KeyId"]
    with pytest.raises(user_kms.exceptions.ClientError) as e:
        user_kms.decrypt(CiphertextBlob=server.client().encrypt(KeyId=k, Plaintext=b"x")["CiphertextBlob"])
    assert "with an explicit deny in an identity-based policy" in e.value.response["Error"]["Message"]


def test_simulate_names_where_each_matched_statement_is(server, iam):
    """SourcePolicyType is the kind of policy the statement is in: a group's inline policy, a customer
    managed one, an AWS managed one, a role's inline policy."""
    allow = lambda action: json.dumps({"Version": "2012-10-17", "Statement": [  # noqa: E731
        {"Effect": "Allow", "Action": action, "Resource": "*"}]})
    name, _ = new_user(iam)
    arn = iam.get_user(UserName=name)["User"]["Arn"]
    group = unique("g")
    iam.create_group(GroupName=group)
    iam.put_group_policy(GroupName=group, PolicyName="enc", PolicyDocument=allow("kms:Encrypt"))
    iam.add_user_to_group(GroupName=group, UserName=name)
    managed = iam.create_policy(PolicyName=unique("dec"), PolicyDocument=allow("kms:Decrypt"))["Policy"]["Arn"]
    iam.attach_user_policy(UserName=name, PolicyArn=managed)
    out = iam.simulate_principal_policy(PolicySourceArn=arn, ActionNames=["kms:Encrypt", "kms:Decrypt"])
    assert by_type(out, "kms:Encrypt") == [("group inline policy enc", "group")]
    assert by_type(out, "kms:Decrypt") == [(f"managed policy {managed}", "user-managed")]
    admin, _ = new_user(iam)
    iam.attach_user_policy(UserName=admin, PolicyArn=ADMIN_ARN)
    out = iam.simulate_principal_policy(PolicySourceArn=iam.get_user(UserName=admin)["User"]["Arn"],
                                        ActionNames=["kms:CreateKey"])
    assert by_type(out, "kms:CreateKey") == [(f"managed policy {ADMIN_ARN}", "aws-managed")]
    role = unique("r")
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "sts:AssumeRole"}]}
    role_arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName=role, PolicyName="sign", PolicyDocument=allow("kms:GenerateDataKey"))
    out = iam.simulate_principal_policy(PolicySourceArn=role_arn, ActionNames=["kms:GenerateDataKey"])
    assert by_type(out, "kms:GenerateDataKey") == [("role inline policy sign", "role")]


def test_simulating_a_role_sees_its_tags_as_its_sessions_do(server, iam):
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "sts:AssumeRole"}]}
    name = unique("r")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust),
                          Tags=[{"Key": "team", "Value": "blue"}])["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="abac", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*",
                                                 "Condition": {"StringEquals": {"aws:PrincipalTag/team": "blue"}}}]}))
    out = iam.simulate_principal_policy(PolicySourceArn=arn, ActionNames=["kms:Encrypt"])
    assert decisions(out) == {("kms:Encrypt", "*"): "allowed"}


def by_type(out, action):
    [r] = [r for r in out["EvaluationResults"] if r["EvalActionName"] == action]
    return [(m["SourcePolicyId"], m["SourcePolicyType"]) for m in r["MatchedStatements"]]


def new_access_key(iam, name):
    k = iam.create_access_key(UserName=name)["AccessKey"]
    return k["AccessKeyId"], k["SecretAccessKey"]


def test_simulate_principal_policy_refusals(server, iam):
    name, key = new_user(iam)
    arn = iam.get_user(UserName=name)["User"]["Arn"]
    for kw, code in [
        ({"PolicySourceArn": f"arn:aws:iam::{ACCOUNT}:user/{unique('none')}", "ActionNames": ["kms:Encrypt"]},
         "NoSuchEntity"),
        ({"PolicySourceArn": "arn:aws:iam::444455556666:user/ops", "ActionNames": ["kms:Encrypt"]}, "NoSuchEntity"),
        ({"PolicySourceArn": f"arn:aws:iam::{ACCOUNT}:group/admins", "ActionNames": ["kms:Encrypt"]}, "InvalidInput"),
        ({"PolicySourceArn": arn, "ActionNames": []}, "ValidationError"),
        ({"PolicySourceArn": arn, "ActionNames": ["kms:Encrypt"], "PolicyInputList": ["{"]},
         "MalformedPolicyDocument"),
    ]:
        with pytest.raises(iam.exceptions.ClientError) as e:
            iam.simulate_principal_policy(**kw)
        assert error_code(e.value) == code, (kw, e.value)
    # Simulating needs iam:SimulatePrincipalPolicy: a user without policies may not.
    theirs = client("iam", server.endpoint, key["AccessKeyId"], key["SecretAccessKey"])
    with pytest.raises(theirs.exceptions.ClientError) as e:
        theirs.simulate_principal_policy(PolicySourceArn=arn, ActionNames=["kms:Encrypt"])
    assert error_code(e.value) == "AccessDenied"


def test_awscli_simulate_principal_policy(server, iam):
    name, _ = new_user(iam, SIMULATED)
    arn = iam.get_user(UserName=name)["User"]["Arn"]
    r = aws_iam(server, "simulate-principal-policy", "--policy-source-arn", arn,
                "--action-names", "kms:Encrypt", "kms:Decrypt",
                "--context-entries", "ContextKeyName=kms:EncryptionContext:app,ContextKeyValues=web,ContextKeyType=string")
    assert r.returncode == 0, r.stderr
    assert decisions(json.loads(r.stdout)) == {("kms:Encrypt", "*"): "allowed", ("kms:Decrypt", "*"): "explicitDeny"}


def test_simulate_pages_its_results(iam):
    """As IAM: MaxItems (default 100) results a call, the rest behind Marker; botocore's paginator
    follows it."""
    name, _ = new_user(iam, SIMULATED)
    arn = iam.get_user(UserName=name)["User"]["Arn"]
    actions = ["kms:Encrypt", "kms:Decrypt", "kms:CreateKey"]
    keys = [f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{unique('k')}" for _ in range(2)]
    first = iam.simulate_principal_policy(PolicySourceArn=arn, ActionNames=actions, ResourceArns=keys, MaxItems=4)
    assert first["IsTruncated"] is True and len(first["EvaluationResults"]) == 4
    rest = iam.simulate_principal_policy(PolicySourceArn=arn, ActionNames=actions, ResourceArns=keys, MaxItems=4,
                                         Marker=first["Marker"])
    assert rest["IsTruncated"] is False and "Marker" not in rest
    got = [(r["EvalActionName"], r["EvalResourceName"]) for r in first["EvaluationResults"] + rest["EvaluationResults"]]
    assert got == [(a, k) for a in actions for k in keys]
    pages = iam.get_paginator("simulate_principal_policy").paginate(
        PolicySourceArn=arn, ActionNames=actions, ResourceArns=keys, PaginationConfig={"PageSize": 5})
    assert [(r["EvalActionName"], r["EvalResourceName"]) for p in pages for r in p["EvaluationResults"]] == got
    for kw in [{"MaxItems": 0}, {"MaxItems": 1001}, {"Marker": "6"}, {"Marker": "x"}]:
        with pytest.raises(iam.exceptions.ClientError) as e:
            iam.simulate_principal_policy(PolicySourceArn=arn, ActionNames=actions, ResourceArns=keys, **kw)
        assert error_code(e.value) in ("ValidationError", "InvalidInput"), kw


def long_wildcards(size):
    """An identity policy of about `size` characters whose wildcards are slow to match a long key ARN:
    `key/*aaaa…b` against `key/aaaa…a` backtracks at every position."""
    stmt = {"Effect": "Deny", "Action": "*", "Resource": "arn:aws:kms:*:*:key/*" + "a" * 200 + "b"}
    n = size // len(json.dumps(stmt))
    return json.dumps({"Version": "2012-10-17", "Statement": [stmt] * n})


def test_simulate_work_is_bounded(server, iam):
    """100 actions on 100 long ARNs against long wildcards took 86 s of CPU in one call, kept running
    past the request timeout and stalled every other request. Now a page ends once its work is spent:
    the call answers quickly, a page at a time, and a KMS call beside it is served at once. Input
    documents are held only to the API's length (131,072): a key policy of 10,000 characters, which
    CreateKey accepts, is a valid ResourcePolicy."""
    arn = iam.get_user(UserName="admin")["User"]["Arn"]
    key_sized = long_wildcards(10000)
    as_key_policy = json.loads(key_sized)
    for st in as_key_policy["Statement"]:
        st["Principal"] = {"AWS": ACCOUNT}
    for kw in [{"PolicyInputList": [key_sized]}, {"ResourcePolicy": json.dumps(as_key_policy)}]:
        out = iam.simulate_principal_policy(PolicySourceArn=arn, ActionNames=["kms:Encrypt"], **kw)
        assert len(out["EvaluationResults"]) == 1, kw
    actions = [f"kms:Action{i}" for i in range(100)]
    keys = [f"arn:aws:kms:{REGION}:{ACCOUNT}:key/" + "a" * 400 + f"{i:03}" for i in range(100)]
    worst = dict(PolicySourceArn=arn, ActionNames=actions, ResourceArns=keys, PolicyInputList=[long_wildcards(6000)])
    kms = server.client()
    result, lags = {}, []

    def simulate():
        t = time.monotonic()
        result["out"] = iam.simulate_principal_policy(**worst)
        result["took"] = time.monotonic() - t

    th = threading.Thread(target=simulate)
    th.start()
    while th.is_alive():
        t = time.monotonic()
        kms.list_keys()
        lags.append(time.monotonic() - t)
    th.join()
    out = result["out"]
    assert result["took"] < 10, result["took"]
    assert out["IsTruncated"] is True and 0 < len(out["EvaluationResults"]) < 100
    assert {r["EvalDecision"] for r in out["EvaluationResults"]} == {"allowed"}
    assert max(lags) < 2, lags
    # The next page starts where this one ended.
    more = iam.simulate_principal_policy(Marker=out["Marker"], MaxItems=1, **worst)
    assert more["EvaluationResults"][0]["EvalResourceName"] == keys[len(out["EvaluationResults"]) % 100]


def test_simulate_source_arn_must_be_the_entitys(server, iam):
    """The call is authorized on PolicySourceArn, so the user or role found by its name must have
    exactly that ARN, path included: a caller allowed to simulate `user/sandbox/*` cannot read the
    permissions of `user/admins/x` by calling it `user/sandbox/x`."""
    sandbox = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iam:SimulatePrincipalPolicy",
         "Resource": [f"arn:aws:iam::{ACCOUNT}:user/sandbox/*", f"arn:aws:iam::{ACCOUNT}:role/sandbox/*"]}]}
    _, key = new_user(iam, sandbox)
    caller = as_user(server, key)
    admin, _ = new_user(iam, ALLOW_ALL, Path="/admins/")
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "sts:AssumeRole"}]}
    role = unique("r")
    iam.create_role(RoleName=role, Path="/admins/", AssumeRolePolicyDocument=json.dumps(trust))
    for kind, name in [("user", admin), ("role", role)]:
        with pytest.raises(caller.exceptions.ClientError) as e:
            caller.simulate_principal_policy(PolicySourceArn=f"arn:aws:iam::{ACCOUNT}:{kind}/sandbox/{name}",
                                             ActionNames=["kms:Decrypt"])
        assert error_code(e.value) == "NoSuchEntity", kind
        # Its real ARN is not the caller's to simulate; the admin may, with the path.
        with pytest.raises(caller.exceptions.ClientError) as e:
            caller.simulate_principal_policy(PolicySourceArn=f"arn:aws:iam::{ACCOUNT}:{kind}/admins/{name}",
                                             ActionNames=["kms:Decrypt"])
        assert error_code(e.value) == "AccessDenied", kind
        out = iam.simulate_principal_policy(PolicySourceArn=f"arn:aws:iam::{ACCOUNT}:{kind}/admins/{name}",
                                            ActionNames=["kms:Decrypt"])
        assert len(out["EvaluationResults"]) == 1
    # A sandbox user of its own is the caller's to simulate.
    mine = unique("s")
    iam.create_user(UserName=mine, Path="/sandbox/")
    out = caller.simulate_principal_policy(PolicySourceArn=f"arn:aws:iam::{ACCOUNT}:user/sandbox/{mine}",
                                           ActionNames=["kms:Decrypt"])
    assert decisions(out) == {("kms:Decrypt", "*"): "implicitDeny"}


FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}


def query(server, body: bytes):
    """A signed IAM request with this form body: (status, body parsed as XML by the standard library)."""
    status, _, raw = server.raw(None, body, service="iam", headers=FORM)
    return status, ElementTree.fromstring(raw)


def test_tags_and_descriptions_are_held_to_iams_patterns(server, iam):
    """Tags and descriptions are stored and answered in XML: a character outside IAM's patterns
    (U+FFFE is not even an XML character) is refused with ValidationError, and listings keep working."""
    trust = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "sts:AssumeRole"}]})
    doc = json.dumps(ALLOW_ALL)
    refused = [
        lambda: iam.create_user(UserName=unique("u"), Tags=[{"Key": "k", "Value": "\ufffea\x01b<"}]),
        lambda: iam.create_user(UserName=unique("u"), Tags=[{"Key": "bad<key", "Value": "v"}]),
        lambda: iam.create_user(UserName=unique("u"), Tags=[{"Key": "", "Value": "v"}]),
        lambda: iam.create_user(UserName=unique("u"), Tags=[{"Key": "k" * 129, "Value": "v"}]),
        lambda: iam.create_user(UserName=unique("u"), Tags=[{"Key": "k", "Value": "v" * 257}]),
        lambda: iam.create_role(RoleName=unique("r"), AssumeRolePolicyDocument=trust, Tags=[{"Key": "\x7f", "Value": ""}]),
        lambda: iam.create_role(RoleName=unique("r"), AssumeRolePolicyDocument=trust, Description="\uffff"),
        lambda: iam.create_role(RoleName=unique("r"), AssumeRolePolicyDocument=trust, Description="a\x0bb"),
        lambda: iam.create_role(RoleName=unique("r"), AssumeRolePolicyDocument=trust, Description="d" * 1001),
        lambda: iam.create_policy(PolicyName=unique("p"), PolicyDocument=doc, Description="A" * 5000),
        lambda: iam.create_policy(PolicyName=unique("p"), PolicyDocument=doc, Description="a\uffffb"),
    ]
    for i, call in enumerate(refused):
        with pytest.raises(iam.exceptions.ClientError) as e:
            call()
        assert error_code(e.value) == "ValidationError", i
    # What the patterns allow is kept as given: letters, separators and digits of any script,
    # `_.:/=+-@`, an empty value; descriptions of Latin-1 with tabs and line ends.
    tags = [{"Key": "Ünïcode κλειδί 1", "Value": ""}, {"Key": "a_.:/=+-@", "Value": "値 ٣\u2003x"}]
    name = unique("u")
    iam.create_user(UserName=name, Tags=tags)
    assert sorted(iam.get_user(UserName=name)["User"]["Tags"], key=lambda t: t["Key"]) == \
        sorted(tags, key=lambda t: t["Key"])
    description = "déjà vu\tline\r\nnext ÿ"
    role = iam.create_role(RoleName=unique("r"), AssumeRolePolicyDocument=trust, Description=description)["Role"]
    assert iam.get_role(RoleName=role["RoleName"])["Role"]["Description"] == description
    policy = iam.create_policy(PolicyName=unique("p"), PolicyDocument=doc, Description="d" * 1000)["Policy"]
    assert iam.get_policy(PolicyArn=policy["Arn"])["Policy"]["Description"] == "d" * 1000
    # A managed policy's description has no pattern in IAM's model, only its length.
    policy = iam.create_policy(PolicyName=unique("p"), PolicyDocument=doc, Description="鍵のアクセス 🔑")["Policy"]
    assert iam.get_policy(PolicyArn=policy["Arn"])["Policy"]["Description"] == "鍵のアクセス 🔑"
    assert name in user_names(iam)
    assert role["RoleName"] in {r["RoleName"] for r in iam.list_roles()["Roles"]}


def test_echoed_characters_give_well_formed_xml(server, iam):
    """An error message that echoes what was sent stays well-formed XML whatever was sent: U+FFFF is
    no XML character and used to reach the answer as it was."""
    status, doc = query(server, b"Action=%EF%BF%BF&Version=2010-05-08")
    ns = "{https://iam.amazonaws.com/doc/2010-05-08/}"
    assert status == 400 and doc.find(f"{ns}Error/{ns}Code").text == "InvalidAction"
    status, doc = query(server, b"Action=GetRole&Version=2010-05-08&RoleName=nope%EF%BF%BF%01")
    assert status == 400 and doc.find(f"{ns}Error/{ns}Code").text == "ValidationError"
    with pytest.raises(iam.exceptions.ClientError) as e:
        iam.get_role(RoleName="nope\uffff")
    assert error_code(e.value) == "ValidationError"


def test_the_home_account_is_the_stores(tmp_path_factory):
    """The first `serve` records the home account: `principal create` without --account-id acts in it
    whatever ENVELOPE_ACCOUNT_ID says, and serving the store as another home account is refused."""
    home = "999988887777"
    s = start_server(tmp_path_factory, extra_args=["--account-id", home])
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENVELOPE_")}
        r = subprocess.run([envelope_bin(), "principal", "create", "carol", "--data-dir", str(s.data_dir)],
                           capture_output=True, text=True, timeout=60, env=env)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["Arn"] == f"arn:aws:iam::{home}:user/carol"
        # ENVELOPE_ACCOUNT_ID names the new user's account, never the store's home account.
        r = subprocess.run([envelope_bin(), "principal", "create", "dave", "--data-dir", str(s.data_dir)],
                           capture_output=True, text=True, timeout=60, env={**env, "ENVELOPE_ACCOUNT_ID": ACCOUNT})
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/dave"
        r = subprocess.run([envelope_bin(), "principal", "list", "--data-dir", str(s.data_dir)],
                           capture_output=True, text=True, timeout=60, env=env)
        assert r.returncode == 0, r.stderr
        assert f"arn:aws:iam::{home}:user/carol" in r.stdout
        assert client("sts", s.endpoint, *s.credentials).get_caller_identity()["Account"] == home
    finally:
        s.stop()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVELOPE_")}
    r = subprocess.run([envelope_bin(), "serve", "--data-dir", str(s.data_dir), "--listen", "127.0.0.1:0"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode != 0
    assert f"the store's home account is {home}" in r.stderr, r.stderr
