"""Grants with boto3 and the `aws kms` CLI: CreateGrant, ListGrants, ListRetirableGrants, RetireGrant,
RevokeGrant, grant tokens on cryptographic operations, and every refusal with AWS's error name, each
followed by ListGrants to show that the refused call changed nothing."""

import base64
import json

import pytest

from conftest import ACCOUNT, aws_cli, ensure_principals, error_code, error_type, key_arn, unique

ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
BOB = "arn:aws:iam::444455556666:user/bob"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/App"


def grant_ids(kms, key_id, **kw):
    return sorted(g["GrantId"] for g in kms.list_grants(KeyId=key_id, **kw)["Grants"])


def forge(token: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[-1] ^= 1
    return base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


@pytest.fixture(scope="module", autouse=True)
def principals(server):
    """The principals the grants name (a grant may name only a principal that exists)."""
    ensure_principals(server, ALICE, BOB, ROLE)


def test_create_list_retire_revoke(skms, store_server):
    kms = skms
    ensure_principals(store_server, ALICE, BOB, ROLE)
    md = kms.create_key()["KeyMetadata"]
    out = kms.create_grant(KeyId=md["KeyId"], GranteePrincipal=ALICE, RetiringPrincipal=BOB,
                           Operations=["Encrypt", "Decrypt", "GenerateDataKey"], Name="app",
                           Constraints={"EncryptionContextEquals": {"tenant": "t1"}})
    gid, token = out["GrantId"], out["GrantToken"]
    assert len(gid) == 64 and int(gid, 16) >= 0
    listed = kms.list_grants(KeyId=md["Arn"])
    assert listed["Truncated"] is False
    [g] = listed["Grants"]
    assert g["KeyId"] == md["Arn"]
    assert g["GrantId"] == gid
    assert g["Name"] == "app"
    assert g["GranteePrincipal"] == ALICE
    assert g["RetiringPrincipal"] == BOB
    assert g["IssuingAccount"] == f"arn:aws:iam::{ACCOUNT}:root"
    assert g["Operations"] == ["Encrypt", "Decrypt", "GenerateDataKey"]
    assert g["Constraints"] == {"EncryptionContextEquals": {"tenant": "t1"}}
    assert g["CreationDate"].year >= 2024
    # Filters.
    assert grant_ids(kms, md["KeyId"], GrantId=gid) == [gid]
    assert grant_ids(kms, md["KeyId"], GranteePrincipal=BOB) == []
    # The token works on a cryptographic operation and retires the grant.
    kms.encrypt(KeyId=md["KeyId"], Plaintext=b"x", GrantTokens=[token],
                EncryptionContext={"tenant": "t1"})
    kms.retire_grant(GrantToken=token)
    assert grant_ids(kms, md["KeyId"]) == []
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.retire_grant(GrantToken=token)
    # RevokeGrant by key and id; RetireGrant by key ARN and id.
    g1 = kms.create_grant(KeyId=md["KeyId"], GranteePrincipal=ROLE, Operations=["DescribeKey"])["GrantId"]
    g2 = kms.create_grant(KeyId=md["KeyId"], GranteePrincipal=ROLE, Operations=["DescribeKey"])["GrantId"]
    assert g1 != g2
    kms.revoke_grant(KeyId=md["KeyId"], GrantId=g1)
    kms.retire_grant(KeyId=md["Arn"], GrantId=g2)
    assert grant_ids(kms, md["KeyId"]) == []


def test_name_makes_create_grant_idempotent(kms, new_key):
    key = new_key()["KeyId"]
    args = dict(KeyId=key, GranteePrincipal=ALICE, Operations=["Decrypt", "Encrypt"], Name=unique("g"),
                Constraints={"EncryptionContextSubset": {"a": "1"}})
    first = kms.create_grant(**args)
    again = kms.create_grant(**{**args, "Operations": ["Encrypt", "Decrypt"]})
    assert again["GrantId"] == first["GrantId"]
    assert again["GrantToken"] != first["GrantToken"]
    other = kms.create_grant(**{**args, "Constraints": {"EncryptionContextSubset": {"a": "2"}}})
    assert other["GrantId"] != first["GrantId"]
    assert grant_ids(kms, key) == sorted([first["GrantId"], other["GrantId"]])
    # Both tokens of one grant name it: the second retires what the first created.
    kms.retire_grant(GrantToken=again["GrantToken"])
    assert grant_ids(kms, key) == [other["GrantId"]]


def test_paging_and_retirable_grants(server, kms, new_key):
    key = new_key()["KeyId"]
    retiring = f"arn:aws:iam::{ACCOUNT}:user/{unique('r')}"
    ensure_principals(server, retiring)
    made = sorted(kms.create_grant(KeyId=key, GranteePrincipal=ALICE, RetiringPrincipal=retiring,
                                   Operations=["Decrypt"])["GrantId"] for _ in range(5))
    for lister, kw in [(kms.list_grants, {"KeyId": key}),
                       (kms.list_retirable_grants, {"RetiringPrincipal": retiring})]:
        got, marker, pages = [], None, 0
        while True:
            resp = lister(**kw, Limit=2, **({"Marker": marker} if marker else {}))
            pages += 1
            assert len(resp["Grants"]) <= 2
            got += [g["GrantId"] for g in resp["Grants"]]
            if not resp["Truncated"]:
                assert "NextMarker" not in resp
                break
            marker = resp["NextMarker"]
        assert sorted(got) == made and pages == 3
    # The paginators boto3 ships work too.
    pages = kms.get_paginator("list_grants").paginate(KeyId=key, PaginationConfig={"PageSize": 2})
    assert sorted(g["GrantId"] for p in pages for g in p["Grants"]) == made


def test_key_states(kms, new_key):
    md = new_key()
    kms.disable_key(KeyId=md["KeyId"])
    gid = kms.create_grant(KeyId=md["KeyId"], GranteePrincipal=ALICE, Operations=["Decrypt"])["GrantId"]
    kms.schedule_key_deletion(KeyId=md["KeyId"], PendingWindowInDays=7)
    with pytest.raises(kms.exceptions.KMSInvalidStateException):
        kms.create_grant(KeyId=md["KeyId"], GranteePrincipal=ALICE, Operations=["Decrypt"])
    # Listing and revoking work while the key is pending deletion.
    assert grant_ids(kms, md["KeyId"]) == [gid]
    kms.revoke_grant(KeyId=md["KeyId"], GrantId=gid)
    assert grant_ids(kms, md["KeyId"]) == []


def test_dry_run(kms, new_key):
    """A dry run that would succeed is DryRunOperationException with HTTP 412, KMS's status for it."""
    key = new_key()["KeyId"]
    with pytest.raises(kms.exceptions.DryRunOperationException) as e:
        kms.create_grant(KeyId=key, GranteePrincipal=ALICE, Operations=["Decrypt"], DryRun=True)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert grant_ids(kms, key) == []
    out = kms.create_grant(KeyId=key, GranteePrincipal=ALICE, Operations=["Decrypt"])
    with pytest.raises(kms.exceptions.DryRunOperationException):
        kms.revoke_grant(KeyId=key, GrantId=out["GrantId"], DryRun=True)
    with pytest.raises(kms.exceptions.DryRunOperationException):
        kms.retire_grant(GrantToken=out["GrantToken"], DryRun=True)
    assert grant_ids(kms, key) == [out["GrantId"]]


# -- refusals -----------------------------------------------------------------------------------------

BASE = {"GranteePrincipal": ALICE, "Operations": ["Decrypt"]}

CREATE_REFUSALS = [
    ("no-key", {"KeyId": None}, "ValidationException"),
    ("no-grantee", {"GranteePrincipal": None}, "ValidationException"),
    ("no-operations", {"Operations": None}, "ValidationException"),
    ("unknown-operation", {"Operations": ["Decrypt", "Fly"]}, "ValidationException"),
    ("asymmetric-operation", {"Operations": ["Sign"]}, "ValidationException"),
    ("hmac-operation", {"Operations": ["GenerateMac"]}, "ValidationException"),
    ("only-create-grant", {"Operations": ["CreateGrant"]}, "ValidationException"),
    ("empty-operations", {"Operations": []}, "ValidationException"),
    ("grantee-pattern", {"GranteePrincipal": "alice smith"}, "ValidationException"),
    ("grantee-empty", {"GranteePrincipal": ""}, "ValidationException"),
    ("grantee-not-arn", {"GranteePrincipal": "alice"}, "InvalidArnException"),
    ("grantee-not-principal", {"GranteePrincipal": "arn:aws:s3:::bucket"}, "InvalidArnException"),
    ("retiring-not-arn", {"RetiringPrincipal": "bob"}, "InvalidArnException"),
    ("name-pattern", {"Name": "has space"}, "ValidationException"),
    ("name-too-long", {"Name": "n" * 257}, "ValidationException"),
    ("nine-pairs", {"Constraints": {"EncryptionContextSubset": {f"k{i}": "v" for i in range(9)}}},
     "ValidationException"),
    ("long-value", {"Constraints": {"EncryptionContextEquals": {"k": "v" * 385}}}, "ValidationException"),
    ("grantee-missing", {"GranteePrincipal": f"arn:aws:iam::{ACCOUNT}:user/nobody-here"}, "InvalidArnException"),
    ("grantee-other-account-missing", {"GranteePrincipal": "arn:aws:iam::444455556666:user/alice"},
     "InvalidArnException"),
    ("retiring-role-missing", {"RetiringPrincipal": f"arn:aws:iam::{ACCOUNT}:role/NoSuchRole"},
     "InvalidArnException"),
    ("grantee-session-of-missing-role", {"GranteePrincipal": f"arn:aws:sts::{ACCOUNT}:assumed-role/NoSuchRole/s"},
     "InvalidArnException"),
    ("source-arn", {"Constraints": {"SourceArn": "arn:aws:s3:::bucket"}}, "UnsupportedOperationException"),
    ("service-grantee", {"GranteePrincipal": None, "GranteeServicePrincipal": "s3.amazonaws.com"},
     "UnsupportedOperationException"),
    ("unknown-key", {"KeyId": "0b7fa5ab-0000-4000-8000-0000000000d1"}, "NotFoundException"),
    ("alias-as-key", {"KeyId": "alias/not-for-grants"}, "NotFoundException"),
    ("malformed-token", {"GrantTokens": ["not a token"]}, "InvalidGrantTokenException"),
    ("forged-token", {"GrantTokens": ["FORGED"]}, "InvalidGrantTokenException"),
    ("eleven-tokens", {"GrantTokens": ["t"] * 11}, "ValidationException"),
    ("dry-run", {"DryRun": True}, "DryRunOperationException"),
]


@pytest.fixture(scope="module")
def refusal_key(kms):
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    kept = kms.create_grant(KeyId=key, **BASE)
    return key, kept["GrantId"], kept["GrantToken"]


@pytest.mark.parametrize("case,change,name", CREATE_REFUSALS, ids=[c[0] for c in CREATE_REFUSALS])
def test_create_grant_refusals_change_nothing(kms, refusal_key, case, change, name):
    key, kept, token = refusal_key
    args = {"KeyId": key, **BASE, **change}
    if case == "forged-token":
        args["GrantTokens"] = [forge(token)]
    args = {k: v for k, v in args.items() if v is not None}
    with pytest.raises(kms.exceptions.ClientError) as e:
        kms.create_grant(**args)
    assert error_code(e.value) == name, e.value
    # A dry run that would succeed is 412 (KMS's status for DryRunOperationException), the rest 400.
    status = 412 if name == "DryRunOperationException" else 400
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert grant_ids(kms, key) == [kept]


OTHER_REFUSALS = [
    ("list-no-key", "ListGrants", {}, "ValidationException"),
    ("list-limit-0", "ListGrants", {"KeyId": "{key}", "Limit": 0}, "ValidationException"),
    ("list-limit-1001", "ListGrants", {"KeyId": "{key}", "Limit": 1001}, "ValidationException"),
    ("list-bad-marker", "ListGrants", {"KeyId": "{key}", "Marker": "!!!"}, "InvalidMarkerException"),
    ("list-bad-grant-id", "ListGrants", {"KeyId": "{key}", "GrantId": "xyz"}, "InvalidGrantIdException"),
    ("list-unknown-key", "ListGrants", {"KeyId": "0b7fa5ab-0000-4000-8000-0000000000d2"}, "NotFoundException"),
    ("retirable-no-principal", "ListRetirableGrants", {}, "ValidationException"),
    ("retire-nothing", "RetireGrant", {}, "ValidationException"),
    ("retire-junk-token", "RetireGrant", {"GrantToken": "junk"}, "InvalidGrantTokenException"),
    ("retire-forged-token", "RetireGrant", {"GrantToken": "{forged}"}, "InvalidGrantTokenException"),
    ("retire-bad-id", "RetireGrant", {"KeyId": "{key}", "GrantId": "abc"}, "InvalidGrantIdException"),
    ("retire-unknown-id", "RetireGrant", {"KeyId": "{key}", "GrantId": "0" * 64}, "NotFoundException"),
    ("retire-token-other-id", "RetireGrant", {"GrantToken": "{token}", "GrantId": "0" * 64},
     "InvalidGrantIdException"),
    ("revoke-no-grant", "RevokeGrant", {"KeyId": "{key}"}, "ValidationException"),
    ("revoke-unknown-id", "RevokeGrant", {"KeyId": "{key}", "GrantId": "0" * 64}, "NotFoundException"),
    ("revoke-bad-id", "RevokeGrant", {"KeyId": "{key}", "GrantId": "g" * 64}, "InvalidGrantIdException"),
    ("revoke-other-key", "RevokeGrant", {"KeyId": "{other}", "GrantId": "{kept}"}, "NotFoundException"),
    ("encrypt-forged-token", "Encrypt", {"KeyId": "{key}", "Plaintext": "eA==", "GrantTokens": ["{forged}"]},
     "InvalidGrantTokenException"),
    ("data-key-junk-token", "GenerateDataKey", {"KeyId": "{key}", "KeySpec": "AES_256", "GrantTokens": ["x"]},
     "InvalidGrantTokenException"),
]


@pytest.mark.parametrize("case,op,body,name", OTHER_REFUSALS, ids=[c[0] for c in OTHER_REFUSALS])
def test_other_refusals_change_nothing(server, kms, new_key, refusal_key, case, op, body, name):
    key, kept, token = refusal_key
    values = {"key": key, "kept": kept, "token": token, "forged": forge(token), "other": new_key()["KeyId"]}
    text = json.dumps(body)
    for k, v in values.items():
        text = text.replace("{" + k + "}", v)
    status, _, parsed = server.raw(f"TrentService.{op}", text)
    assert (status, error_type(parsed)) == (400, name), parsed
    assert grant_ids(kms, key) == [kept]


# -- the aws CLI --------------------------------------------------------------------------------------

def test_awscli_grants(server, kms, new_key):
    aws = aws_cli(server)
    key = new_key()["KeyId"]
    out = json.loads(aws("kms", "create-grant", "--key-id", key, "--grantee-principal", ALICE,
                         "--retiring-principal", ALICE, "--operations", "Encrypt", "Decrypt",
                         "--constraints", "EncryptionContextSubset={team=red}", "--name", "cli").stdout)
    gid, token = out["GrantId"], out["GrantToken"]
    grants = json.loads(aws("kms", "list-grants", "--key-id", key_arn(key)).stdout)["Grants"]
    assert [(g["GrantId"], g["Name"], g["Constraints"]) for g in grants] == \
        [(gid, "cli", {"EncryptionContextSubset": {"team": "red"}})]
    retirable = json.loads(aws("kms", "list-retirable-grants", "--retiring-principal", ALICE).stdout)["Grants"]
    assert gid in [g["GrantId"] for g in retirable]
    # Only for a principal of the caller's account, as AWS requires.
    r = aws("kms", "list-retirable-grants", "--retiring-principal", BOB, check=False)
    assert r.returncode != 0 and "AccessDeniedException" in r.stderr, r.stderr
    # A token on a cryptographic operation.
    aws("kms", "encrypt", "--key-id", key, "--plaintext", base64.b64encode(b"hi").decode(),
        "--encryption-context", "team=red", "--grant-tokens", token)
    # A refusal: the CLI fails with AWS's error name, and nothing changed.
    r = aws("kms", "revoke-grant", "--key-id", key, "--grant-id", "0" * 64, check=False)
    assert r.returncode != 0 and "NotFoundException" in r.stderr, r.stderr
    r = aws("kms", "create-grant", "--key-id", key, "--grantee-principal", "nobody", "--operations", "Decrypt",
            check=False)
    assert r.returncode != 0 and "InvalidArnException" in r.stderr, r.stderr
    assert grant_ids(kms, key) == [gid]
    aws("kms", "retire-grant", "--grant-token", token)
    second = json.loads(aws("kms", "create-grant", "--key-id", key, "--grantee-principal", ALICE,
                            "--operations", "DescribeKey").stdout)["GrantId"]
    aws("kms", "revoke-grant", "--key-id", key, "--grant-id", second)
    assert grant_ids(kms, key) == []
