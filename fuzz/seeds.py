#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets from the project's golden vectors and test inputs.

    fuzz/seeds.py OUT_DIR     one directory per target under OUT_DIR

The committed corpora (fuzz/corpus/<target>) are these seeds after fuzzing, minimised with
`cargo fuzz cmin` (scripts/fuzz --cmin); run this again only to re-seed from changed vectors.
Python standard library only. The input formats are described at the top of each target.
"""

import hashlib
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SEP = b"\xff"
# Seeds larger than this are left out (the committed corpora stay small).
MAX_SEED = 8 * 1024

# fuzz_targets/kms_request.rs's OPERATIONS, in order.
OPERATIONS = re.findall(
    r'^    "(\w+)",$',
    (ROOT / "fuzz/fuzz_targets/kms_request.rs").read_text(),
    re.M,
)


def write(out, target, data):
    if len(data) > MAX_SEED:
        return
    d = out / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


def kms_blob(out):
    for f in sorted((ROOT / "kms-core/tests/testdata").glob("*.json")):
        v = json.loads(f.read_text())
        if "blob" in v:
            write(out, "kms_blob", bytes.fromhex(v["blob"]))
    # A version 2 blob: header, format byte, IV, 5 bytes, tag.
    write(out, "kms_blob", b"\x02" + bytes(range(16)) + b"\x00\x00\x00\x01\x02" + bytes(33))


def kms_request(out):
    blobs = []
    for f in sorted((ROOT / "kms-core/tests/testdata").glob("*.json")):
        v = json.loads(f.read_text())
        if "blob" in v:
            import base64

            blobs.append(base64.b64encode(bytes.fromhex(v["blob"])).decode())
    key = "alias/fuzz-1"
    bodies = {
        "CreateKey": [{"Description": "d", "Tags": [{"TagKey": "k", "TagValue": "v"}]}],
        "DescribeKey": [{"KeyId": key}],
        "ListKeys": [{"Limit": 2}],
        "UpdateKeyDescription": [{"KeyId": key, "Description": "x"}],
        "EnableKey": [{"KeyId": key}],
        "DisableKey": [{"KeyId": "alias/fuzz-3"}],
        "ScheduleKeyDeletion": [{"KeyId": "alias/fuzz-3", "PendingWindowInDays": 7}],
        "CancelKeyDeletion": [{"KeyId": "alias/fuzz-3"}],
        "CreateAlias": [{"AliasName": "alias/a", "TargetKeyId": key}],
        "UpdateAlias": [{"AliasName": "alias/a", "TargetKeyId": "alias/fuzz-2"}],
        "DeleteAlias": [{"AliasName": "alias/a"}],
        "ListAliases": [{"KeyId": key, "Limit": 1}],
        "Encrypt": [{"KeyId": key, "Plaintext": "aGVsbG8=", "EncryptionContext": {"a": "b"}}],
        "Decrypt": [{"CiphertextBlob": b, "EncryptionContext": {"purpose": "test", "app": "envelope"}} for b in blobs],
        "ReEncrypt": [{"CiphertextBlob": blobs[0] if blobs else "", "DestinationKeyId": key}],
        "GenerateDataKey": [{"KeyId": key, "KeySpec": "AES_256"}, {"KeyId": key, "NumberOfBytes": 64}],
        "GenerateDataKeyWithoutPlaintext": [{"KeyId": key, "KeySpec": "AES_128"}],
        "GenerateRandom": [{"NumberOfBytes": 32}],
        "EnableKeyRotation": [{"KeyId": key, "RotationPeriodInDays": 90}],
        "DisableKeyRotation": [{"KeyId": key}],
        "GetKeyRotationStatus": [{"KeyId": key}],
        "RotateKeyOnDemand": [{"KeyId": key}],
        "ListKeyRotations": [{"KeyId": key, "Limit": 5}],
        "TagResource": [{"KeyId": key, "Tags": [{"TagKey": "k", "TagValue": "v"}]}],
        "UntagResource": [{"KeyId": key, "TagKeys": ["k"]}],
        "ListResourceTags": [{"KeyId": key}],
        "CreateCustomKeyStore": [{"CustomKeyStoreName": "s", "CloudHsmClusterId": "cluster-1234567abcd",
                                  "TrustAnchorCertificate": "x", "KeyStorePassword": "password1"}],
        "DescribeCustomKeyStores": [{}],
        "ConnectCustomKeyStore": [{"CustomKeyStoreId": "cks-1234567890abcdef0"}],
        "UpdateCustomKeyStore": [{"CustomKeyStoreId": "cks-1234567890abcdef0", "NewCustomKeyStoreName": "t"}],
        "Sign": [{"KeyId": key, "Message": "eA==", "SigningAlgorithm": "ECDSA_SHA_256"}],
    }
    for op, reqs in bodies.items():
        for r in reqs:
            write(out, "kms_request", bytes([OPERATIONS.index(op)]) + json.dumps(r).encode())
    for op in OPERATIONS:
        write(out, "kms_request", bytes([OPERATIONS.index(op)]) + b"{}")
    # The malformed-request corpus the interop tests send to a real server.
    for f in sorted((ROOT / "tests/interop/malformed").glob("*.jsonl")):
        for line in f.read_text().splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            case = json.loads(line)
            body = case.get("body")
            target = case.get("target") or ""
            if not isinstance(body, str):
                continue
            op = target.split(".", 1)[-1]
            i = OPERATIONS.index(op) if op in OPERATIONS else len(OPERATIONS) - 1
            body = body.replace("${key_id}", key).replace("${uniq}", "u")
            body = re.sub(r"\$\{\w+\}", "x", body)
            write(out, "kms_request", bytes([i]) + body.encode("utf-8", "surrogateescape"))


def sigv4(out):
    example = [
        b"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, "
        b"SignedHeaders=content-type;host;x-amz-date, "
        b"Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
        b"20150830T123600Z",
        b"GET",
        b"/",
        b"Action=ListUsers&Version=2010-05-08",
        b"",
        b"content-type:application/x-www-form-urlencoded; charset=utf-8",
        b"host:iam.amazonaws.com",
        b"x-amz-date:20150830T123600Z",
    ]
    write(out, "sigv4", SEP.join(example))
    kms = [
        b"AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20261205/us-east-1/kms/aws4_request,"
        b"SignedHeaders=content-type;host;x-amz-date;x-amz-target,Signature=" + b"0" * 64,
        b"20261205T000000Z",
        b"POST",
        b"/a%20b/../c",
        b"b=2&a=1&c=%7E+x",
        b'{"KeyId":"alias/x"}',
        b"content-type:application/x-amz-json-1.1",
        b"host:localhost:8080",
        b"x-amz-date:20261205T000000Z",
        b"x-amz-target:TrentService.Encrypt",
        b"x-amz-target:  two   spaces ",
    ]
    write(out, "sigv4", SEP.join(kms))
    # The signer differential: access key, -, operation, host, region, body.
    write(out, "sigv4", SEP.join([b"AKIAEXAMPLE", b"", b"TrentService.Encrypt", b"kms.local", b"us-east-1", b"hello"]))


def policy(out):
    docs = set()
    for f in sorted((ROOT / "kms-core/src/policy/tests").glob("*.rs")):
        for m in re.finditer(r'r#"(\{.*?)"#', f.read_text(), re.S):
            text = m.group(1)
            try:
                json.loads(text)
            except ValueError:
                continue
            if '"Statement"' in text:
                docs.add(text)
    for text in sorted(docs):
        for pick in (0, 4, 8):  # identity/user, key policy/role session, trust policy/service
            fields = [
                text.encode(),
                b"kms:Decrypt",
                b"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                b"kms:EncryptionContext:purpose=test",
                b"aws:SourceIp=192.0.2.7",
                b"aws:CurrentTime=2026-12-05T00:00:00Z",
            ]
            write(out, "policy", bytes([pick]) + SEP.join(fields))


def esdk(out):
    data = ROOT / "s3-crypto/tests/testdata"
    bins = sorted(data.glob("*.bin"))
    for f in bins:
        write(out, "esdk_decrypt", f.read_bytes())
    import struct

    for f in bins:
        if f.name.startswith("fail_") or f.stat().st_size > 2048:
            continue
        m = f.read_bytes()
        for kind, a, b in ((0, 3, 700), (0, 0, 0), (2, 255, 0), (4, 10, 0)):
            write(out, "esdk_range", bytes([kind]) + struct.pack("<QQ", a, b) + m)
    for kind, a, b in ((1, 0, 300), (1, 100, 4), (3, 5, 0), (5, 17, 0)):
        write(out, "esdk_range", bytes([kind]) + struct.pack("<QQ", a, b) + bytes(range(256)) * 3)
    for seed in (b"", b"\x09\x00\x10\x01abc\x01def", b"\x0a\x05\x00\x00" + bytes(300), b"\x03\x01\x00\x02" + b"x" * 40):
        write(out, "esdk_roundtrip", seed)


def s3ec(out):
    d = ROOT / "s3-crypto/tests/testdata/s3ec"
    for f in sorted(d.glob("*.json")):
        v = json.loads(f.read_text())
        body = f.with_suffix(".body")
        body = body.read_bytes() if body.exists() else b""
        if len(body) > 2048:
            body = body[:64]
        fields = [body, (v.get("instruction_file") or "").encode()]
        fields += [f"{k}={val}".encode() for k, val in sorted(v.get("metadata", {}).items())]
        write(out, "s3ec_metadata", b"\x00" + SEP.join(fields))
    # RFC 2047 values, as S3 returns non-ASCII metadata.
    rfc = [b"", b"", b"x-amz-c=115", b"x-amz-t==?UTF-8?B?eyJrIjoiw6kifQ==?=", b"x-amz-m==?UTF-8?Q?{=22a=22:=22=C3=A9_b=22}?="]
    write(out, "s3ec_metadata", b"\x00" + SEP.join(rfc))
    for mode in (1, 3):
        write(out, "s3ec_metadata", bytes([mode]) + SEP.join([b"hello, S3", b"", b"purpose=test", b"tenant=t-1"]))


def iam_query(out):
    """One body per IAM and STS action, for both services and both callers (first byte)."""
    from urllib.parse import urlencode
    trust = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "111122223333"}, "Action": "sts:AssumeRole"}]})
    doc = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "kms:Encrypt", "Resource": "*",
         "Condition": {"StringEquals": {"aws:username": "${aws:username}"}}}]})
    user, role, group = {"UserName": "fuzz-user"}, {"RoleName": "fuzz-role"}, {"GroupName": "fuzz-group"}
    admin = {"PolicyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}
    iam = [
        ("CreateUser", {"UserName": "u2", "Path": "/eng/", "Tags.member.1.Key": "k", "Tags.member.1.Value": "v"}),
        ("GetUser", user), ("ListUsers", {"MaxItems": "2"}), ("DeleteUser", {"UserName": "u2"}),
        ("CreateAccessKey", user), ("ListAccessKeys", user),
        ("UpdateAccessKey", {**user, "AccessKeyId": "AKIAAAAAAAAAAAAAAAAA", "Status": "Inactive"}),
        ("DeleteAccessKey", {**user, "AccessKeyId": "AKIAAAAAAAAAAAAAAAAA"}),
        ("CreateGroup", {"GroupName": "g2"}), ("GetGroup", group), ("ListGroups", {}),
        ("ListGroupsForUser", user), ("DeleteGroup", {"GroupName": "g2"}),
        ("AddUserToGroup", {**user, **group}), ("RemoveUserFromGroup", {**user, **group}),
        ("CreateRole", {"RoleName": "r2", "AssumeRolePolicyDocument": trust, "MaxSessionDuration": "3600"}),
        ("GetRole", role), ("ListRoles", {}), ("DeleteRole", {"RoleName": "r2"}),
        ("PutUserPolicy", {**user, "PolicyName": "p", "PolicyDocument": doc}),
        ("GetUserPolicy", {**user, "PolicyName": "p"}), ("ListUserPolicies", user),
        ("DeleteUserPolicy", {**user, "PolicyName": "p"}),
        ("PutGroupPolicy", {**group, "PolicyName": "p", "PolicyDocument": doc}),
        ("GetGroupPolicy", {**group, "PolicyName": "p"}), ("ListGroupPolicies", group),
        ("DeleteGroupPolicy", {**group, "PolicyName": "p"}),
        ("PutRolePolicy", {**role, "PolicyName": "p", "PolicyDocument": doc}),
        ("GetRolePolicy", {**role, "PolicyName": "p"}), ("ListRolePolicies", role),
        ("DeleteRolePolicy", {**role, "PolicyName": "p"}),
        ("CreatePolicy", {"PolicyName": "mp", "PolicyDocument": doc}),
        ("GetPolicy", {"PolicyArn": "arn:aws:iam::111122223333:policy/mp"}),
        ("GetPolicyVersion", {"PolicyArn": "arn:aws:iam::111122223333:policy/mp", "VersionId": "v1"}),
        ("ListPolicies", {"Scope": "Local"}), ("DeletePolicy", {"PolicyArn": "arn:aws:iam::111122223333:policy/mp"}),
        ("AttachUserPolicy", {**user, **admin}), ("DetachUserPolicy", {**user, **admin}),
        ("ListAttachedUserPolicies", user), ("AttachGroupPolicy", {**group, **admin}),
        ("DetachGroupPolicy", {**group, **admin}), ("ListAttachedGroupPolicies", group),
        ("AttachRolePolicy", {**role, **admin}), ("DetachRolePolicy", {**role, **admin}),
        ("ListAttachedRolePolicies", role),
        ("SimulatePrincipalPolicy", {"PolicySourceArn": "arn:aws:iam::111122223333:user/fuzz-user",
                                     "ActionNames.member.1": "kms:Encrypt", "ResourceArns.member.1": "*",
                                     "PolicyInputList.member.1": doc,
                                     "ContextEntries.member.1.ContextKeyName": "kms:EncryptionContext:a",
                                     "ContextEntries.member.1.ContextKeyValues.member.1": "b",
                                     "ContextEntries.member.1.ContextKeyType": "string"}),
    ]
    sts = [
        ("GetCallerIdentity", {}),
        ("AssumeRole", {"RoleArn": "arn:aws:iam::111122223333:role/fuzz-role", "RoleSessionName": "s",
                        "DurationSeconds": "900", "ExternalId": "x"}),
    ]
    for service, actions, version in ((0, iam, "2010-05-08"), (1, sts, "2011-06-15")):
        for action, params in actions:
            body = urlencode({"Action": action, "Version": version, **params}).encode()
            for who in (0, 2):
                write(out, "iam_query", bytes([service | who]) + body)


def byte_range(out):
    for r in (b"bytes=0-99", b"bytes=100-", b"bytes=-5", b"bytes=5-1", b"0-0"):
        write(out, "byte_range", r + bytes(8))


def main():
    out = pathlib.Path(sys.argv[1])
    for f in (kms_blob, kms_request, sigv4, policy, esdk, s3ec, byte_range, iam_query):
        f(out)
    for d in sorted(out.iterdir()):
        print(f"{d.name}: {len(list(d.iterdir()))} seeds")


if __name__ == "__main__":
    main()
