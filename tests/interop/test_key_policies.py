"""Key policies and access control through the endpoint, with boto3 and the AWS CLI: the default key
policy, PutKeyPolicy/GetKeyPolicy/ListKeyPolicies, the lockout check, AccessDeniedException with AWS's
message for a caller the key policy shuts out (and nothing changed by the refused call), and
`envelope authz explain` agreeing with the endpoint."""

import json
import os
import subprocess

import pytest

from conftest import ACCOUNT, ensure_principals, envelope_bin, error_code, kms_client, unique


def envelope(server, *args, check=True):
    env = dict(os.environ)
    env.pop("ENVELOPE_ROOT_KEY", None)
    env.pop("ENVELOPE_DATA_DIR", None)
    r = subprocess.run([envelope_bin(), *args, "--data-dir", str(server.data_dir)],
                       capture_output=True, text=True, timeout=60, env=env)
    if check:
        assert r.returncode == 0, f"envelope {args} exited {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture(scope="module")
def bob(server):
    r = envelope(server, "principal", "create", "kp-bob")
    creds = json.loads(r.stdout)
    return creds["Arn"], kms_client(server.endpoint, creds["AccessKeyId"], creds["SecretAccessKey"])


def admin_only_policy(admin_arn: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "AdminOnly", "Effect": "Allow", "Principal": {"AWS": admin_arn},
         "Action": "kms:*", "Resource": "*"}]})


def test_default_key_policy_and_list_key_policies(kms):
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    doc = json.loads(kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"])
    assert doc["Statement"][0]["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    assert doc["Statement"][0]["Action"] == "kms:*"
    assert kms.list_key_policies(KeyId=key)["PolicyNames"] == ["default"]
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.get_key_policy(KeyId=key, PolicyName="other")


def test_a_key_policy_that_shuts_a_user_out_is_enforced_and_changes_nothing(server, kms, bob):
    bob_arn, bob_kms = bob
    admin_arn = f"arn:aws:iam::{ACCOUNT}:user/admin"
    key = kms.create_key(Policy=admin_only_policy(admin_arn), Tags=[{"TagKey": "t", "TagValue": "1"}])
    arn = key["KeyMetadata"]["Arn"]
    with pytest.raises(bob_kms.exceptions.ClientError) as e:
        bob_kms.encrypt(KeyId=arn, Plaintext=b"x")
    assert error_code(e.value) == "AccessDeniedException"
    assert e.value.response["Error"]["Message"] == (
        f"User: {bob_arn} is not authorized to perform: kms:Encrypt on resource: {arn} "
        "because no resource-based policy allows the kms:Encrypt action")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    before = (kms.describe_key(KeyId=arn)["KeyMetadata"], kms.list_resource_tags(KeyId=arn)["Tags"],
              kms.get_key_policy(KeyId=arn, PolicyName="default")["Policy"],
              kms.get_key_rotation_status(KeyId=arn)["KeyRotationEnabled"])
    refused = [
        lambda: bob_kms.schedule_key_deletion(KeyId=arn, PendingWindowInDays=7),
        lambda: bob_kms.disable_key(KeyId=arn),
        lambda: bob_kms.tag_resource(KeyId=arn, Tags=[{"TagKey": "t", "TagValue": "2"}]),
        lambda: bob_kms.untag_resource(KeyId=arn, TagKeys=["t"]),
        lambda: bob_kms.enable_key_rotation(KeyId=arn),
        lambda: bob_kms.put_key_policy(KeyId=arn, PolicyName="default",
                                       Policy=admin_only_policy(bob_arn)),
        lambda: bob_kms.update_key_description(KeyId=arn, Description="mine"),
    ]
    for call in refused:
        with pytest.raises(bob_kms.exceptions.ClientError) as e:
            call()
        assert error_code(e.value) == "AccessDeniedException"
    after = (kms.describe_key(KeyId=arn)["KeyMetadata"], kms.list_resource_tags(KeyId=arn)["Tags"],
             kms.get_key_policy(KeyId=arn, PolicyName="default")["Policy"],
             kms.get_key_rotation_status(KeyId=arn)["KeyRotationEnabled"])
    assert after == before
    # A ciphertext under that key is refused to bob as AccessDenied, never a hint about the key.
    blob = kms.encrypt(KeyId=arn, Plaintext=b"secret")["CiphertextBlob"]
    with pytest.raises(bob_kms.exceptions.ClientError) as e:
        bob_kms.decrypt(CiphertextBlob=blob)
    assert error_code(e.value) == "AccessDeniedException"
    # The admin lets bob decrypt; the change is effective at once.
    kms.put_key_policy(KeyId=arn, PolicyName="default", Policy=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": admin_arn}, "Action": "kms:*", "Resource": "*"},
            {"Effect": "Allow", "Principal": {"AWS": bob_arn}, "Action": "kms:Decrypt", "Resource": "*"}]}))
    assert bob_kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"secret"


def test_the_lockout_check_and_malformed_policies(server, kms):
    n = len(kms.list_keys(Limit=1000)["Keys"])
    someone_else = f"arn:aws:iam::{ACCOUNT}:user/{unique('else')}"
    ensure_principals(server, someone_else)
    locked = admin_only_policy(someone_else)
    lockout = "The new key policy will not allow you to update the key policy in the future."
    invalid = "Policy contains a statement with one or more invalid principals."
    for policy, message in [(locked, lockout),
                            (admin_only_policy(f"arn:aws:iam::{ACCOUNT}:user/{unique('missing')}"), invalid),
                            (admin_only_policy(f"arn:aws:iam::{ACCOUNT}:role/{unique('Missing')}"), invalid),
                            ("{", None),
                            (json.dumps({"Version": "2012-10-17", "Statement": [
                                {"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]}), None)]:
        with pytest.raises(kms.exceptions.ClientError) as e:
            kms.create_key(Policy=policy)
        assert error_code(e.value) == "MalformedPolicyDocumentException"
        if message:
            assert e.value.response["Error"]["Message"] == message
    assert len(kms.list_keys(Limit=1000)["Keys"]) == n
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    with pytest.raises(kms.exceptions.MalformedPolicyDocumentException):
        kms.put_key_policy(KeyId=key, PolicyName="default", Policy=locked)
    assert "key-default-1" in kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"]
    kms.put_key_policy(KeyId=key, PolicyName="default", Policy=locked, BypassPolicyLockoutSafetyCheck=True)
    with pytest.raises(kms.exceptions.ClientError) as e:
        kms.describe_key(KeyId=key)
    assert error_code(e.value) == "AccessDeniedException"


def test_authz_explain_agrees_with_the_endpoint(server, kms, bob):
    bob_arn, bob_kms = bob
    admin_arn = f"arn:aws:iam::{ACCOUNT}:user/admin"
    arn = kms.create_key(Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "Admin", "Effect": "Allow", "Principal": {"AWS": admin_arn}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "BobIT", "Effect": "Allow", "Principal": {"AWS": bob_arn}, "Action": "kms:Encrypt",
         "Resource": "*", "Condition": {"StringEquals": {"kms:EncryptionContext:dept": "IT"}}}]}
    ))["KeyMetadata"]["Arn"]
    for dept, want in [("IT", "Allow"), ("HR", "Deny")]:
        out = envelope(server, "authz", "explain", "--principal", bob_arn, "--action", "kms:Encrypt",
                       "--resource", arn, "--context", f"kms:EncryptionContext:dept={dept}")
        got = json.loads(out.stdout)
        assert got["Decision"] == want, got
        try:
            bob_kms.encrypt(KeyId=arn, Plaintext=b"p", EncryptionContext={"dept": dept})
            endpoint = "Allow"
        except bob_kms.exceptions.ClientError as e:
            assert error_code(e) == "AccessDeniedException"
            assert e.response["Error"]["Message"] == got["Message"]
            endpoint = "Deny"
        assert endpoint == want
    allow = json.loads(envelope(server, "authz", "explain", "--principal", bob_arn, "--action", "kms:Encrypt",
                                "--resource", arn, "--context", "kms:EncryptionContext:dept=IT").stdout)
    assert allow["DecidedBy"] == f'key policy of {arn} statement 1 (Sid "BobIT")'
    bad = envelope(server, "authz", "explain", "--principal", "bob", "--action", "kms:Encrypt", check=False)
    assert bad.returncode != 0 and "--principal bob" in bad.stderr


def test_key_policies_are_accepted_and_checked_as_aws_does(kms):
    key = kms.create_key(Tags=[{"TagKey": "team", "TagValue": "a"}])["KeyMetadata"]["KeyId"]
    root = {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
            "Action": "kms:*", "Resource": "*"}
    # Characters as they are, not \u escapes (which are ASCII, and fine with AWS too).
    policy = lambda *st: json.dumps({"Version": "2012-10-17", "Statement": list(st)}, ensure_ascii=False)  # noqa: E731
    current = lambda: kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"]  # noqa: E731
    # A statement without Resource or Action is accepted, and has no effect (AWS: "the policy statement
    # has no effect ... the CreateKey and PutKeyPolicy API requests succeed").
    for ineffective in ({"Sid": "NoResource", "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "kms:*"},
                        {"Sid": "NoAction", "Effect": "Deny", "Principal": {"AWS": "*"}, "Resource": "*"}):
        kms.put_key_policy(KeyId=key, PolicyName="default", Policy=policy(root, ineffective))
        kms.describe_key(KeyId=key)
    # The lockout check judges the later PutKeyPolicy as it will be decided: from this address, on this
    # key with its tags. A policy that lets the caller in only from here and only on keys tagged team=a
    # passes without the bypass; one that names another network is refused, and changes nothing.
    here = {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:*", "Resource": "*",
            "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.0/8"},
                          "StringEquals": {"aws:ResourceTag/team": "a"}}}
    kms.put_key_policy(KeyId=key, PolicyName="default", Policy=policy(here))
    before = current()
    elsewhere = dict(here, Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}})
    with pytest.raises(kms.exceptions.MalformedPolicyDocumentException):
        kms.put_key_policy(KeyId=key, PolicyName="default", Policy=policy(elsewhere))
    assert current() == before
    # PolicyName AWS_RAM: AWS's other name, which cannot be set (ValidationException) and is not there.
    with pytest.raises(kms.exceptions.ClientError) as e:
        kms.put_key_policy(KeyId=key, PolicyName="AWS_RAM", Policy=policy(root))
    assert error_code(e.value) == "ValidationException"
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.get_key_policy(KeyId=key, PolicyName="AWS_RAM")
    # Only tab, line feed, carriage return, printable ASCII and Latin-1 (the API's pattern).
    with pytest.raises(kms.exceptions.ClientError) as e:
        kms.put_key_policy(KeyId=key, PolicyName="default", Policy=policy(dict(root, Sid="Root\u2014all")))
    assert error_code(e.value) == "ValidationException"
    kms.put_key_policy(KeyId=key, PolicyName="default", Policy=policy(dict(here, Sid="Caf\u00e9")))
    assert "Caf\u00e9" in current()
