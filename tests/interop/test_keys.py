"""Key lifecycle with boto3: CreateKey, DescribeKey, ListKeys, UpdateKeyDescription, EnableKey, DisableKey,
ScheduleKeyDeletion, CancelKeyDeletion. Runs on every store."""

import datetime
import re

import pytest

from conftest import ACCOUNT, REGION, alias_arn, error_code, key_arn, unchanged, unique

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def test_create_key_defaults(skms):
    before = now() - datetime.timedelta(minutes=1)
    md = skms.create_key(Description="app key")["KeyMetadata"]
    assert UUID_RE.match(md["KeyId"]), md["KeyId"]
    assert md["Arn"] == key_arn(md["KeyId"])
    assert md["AWSAccountId"] == ACCOUNT
    assert md["Description"] == "app key"
    assert md["Enabled"] is True
    assert md["KeyState"] == "Enabled"
    assert md["KeyUsage"] == "ENCRYPT_DECRYPT"
    assert md["KeySpec"] == "SYMMETRIC_DEFAULT"
    assert md["Origin"] == "AWS_KMS"
    assert md["KeyManager"] == "CUSTOMER"
    assert md["EncryptionAlgorithms"] == ["SYMMETRIC_DEFAULT"]
    assert md.get("MultiRegion") in (False, None)
    assert before <= md["CreationDate"] <= now() + datetime.timedelta(minutes=1)


def test_create_key_explicit_symmetric_options(skms):
    md = skms.create_key(KeySpec="SYMMETRIC_DEFAULT", KeyUsage="ENCRYPT_DECRYPT", Origin="AWS_KMS",
                         MultiRegion=False)["KeyMetadata"]
    assert md["KeyState"] == "Enabled"
    # Description defaults to the empty string, as in AWS.
    assert md.get("Description", "") == ""


def test_create_key_with_tags(skms):
    md = skms.create_key(Tags=[{"TagKey": "team", "TagValue": "core"}, {"TagKey": "env", "TagValue": ""}])[
        "KeyMetadata"]
    tags = skms.list_resource_tags(KeyId=md["KeyId"])["Tags"]
    assert sorted((t["TagKey"], t["TagValue"]) for t in tags) == [("env", ""), ("team", "core")]


@pytest.mark.parametrize("kwargs", [
    {"KeySpec": "RSA_2048"},
    {"KeySpec": "ECC_NIST_P256"},
    {"KeySpec": "HMAC_256"},
    {"Origin": "EXTERNAL"},
    # Origin AWS_CLOUDHSM without CustomKeyStoreId: test_custom_key_store.py (ValidationException).
    {"MultiRegion": True},
])
def test_create_key_unsupported(skms, kwargs):
    with unchanged(skms), pytest.raises(skms.exceptions.UnsupportedOperationException):
        skms.create_key(Tags=[{"TagKey": "t", "TagValue": "v"}], **kwargs)


def test_create_key_description_too_long(skms):
    with unchanged(skms), pytest.raises(skms.exceptions.ClientError) as e:
        skms.create_key(Description="d" * 8193)
    assert error_code(e.value) == "ValidationException"
    md = skms.create_key(Description="d" * 8192)["KeyMetadata"]
    assert md["Description"] == "d" * 8192
    with unchanged(skms, md["KeyId"]), pytest.raises(skms.exceptions.ClientError) as e:
        skms.update_key_description(KeyId=md["KeyId"], Description="e" * 8193)
    assert error_code(e.value) == "ValidationException"


def test_describe_key_identifier_forms(skms):
    md = skms.create_key(Description="forms")["KeyMetadata"]
    alias = "alias/" + unique("describe")
    skms.create_alias(AliasName=alias, TargetKeyId=md["KeyId"])
    for ident in (md["KeyId"], md["Arn"], alias, alias_arn(alias)):
        got = skms.describe_key(KeyId=ident)["KeyMetadata"]
        assert got["KeyId"] == md["KeyId"], ident
        assert got["Arn"] == md["Arn"]
        assert got["Description"] == "forms"


@pytest.mark.parametrize("ident", [
    "0b7fa5ab-0000-4000-8000-000000000000",
    key_arn("0b7fa5ab-0000-4000-8000-000000000000"),
    "alias/does-not-exist",
    alias_arn("alias/does-not-exist"),
])
def test_describe_key_not_found(skms, ident):
    with pytest.raises(skms.exceptions.NotFoundException):
        skms.describe_key(KeyId=ident)


def test_describe_key_missing_key_id_is_validation_error(skms):
    with pytest.raises(skms.exceptions.ClientError) as e:
        skms.describe_key()
    assert error_code(e.value) == "ValidationException"


def test_update_key_description(skms):
    md = skms.create_key(Description="old")["KeyMetadata"]
    assert skms.update_key_description(KeyId=md["KeyId"], Description="new")["ResponseMetadata"][
        "HTTPStatusCode"] == 200
    assert skms.describe_key(KeyId=md["KeyId"])["KeyMetadata"]["Description"] == "new"
    skms.update_key_description(KeyId=md["Arn"], Description="by arn")
    assert skms.describe_key(KeyId=md["KeyId"])["KeyMetadata"]["Description"] == "by arn"
    with unchanged(skms, md["KeyId"]), pytest.raises(skms.exceptions.NotFoundException):
        skms.update_key_description(KeyId="0b7fa5ab-0000-4000-8000-000000000001", Description="x")


def test_disable_and_enable_key(skms):
    md = skms.create_key()["KeyMetadata"]
    skms.disable_key(KeyId=md["KeyId"])
    got = skms.describe_key(KeyId=md["KeyId"])["KeyMetadata"]
    assert got["KeyState"] == "Disabled" and got["Enabled"] is False
    with pytest.raises(skms.exceptions.DisabledException):
        skms.encrypt(KeyId=md["KeyId"], Plaintext=b"x")
    # Idempotent, as in AWS.
    skms.disable_key(KeyId=md["Arn"])
    skms.enable_key(KeyId=md["Arn"])
    got = skms.describe_key(KeyId=md["KeyId"])["KeyMetadata"]
    assert got["KeyState"] == "Enabled" and got["Enabled"] is True
    skms.enable_key(KeyId=md["KeyId"])
    skms.encrypt(KeyId=md["KeyId"], Plaintext=b"x")


def test_enable_disable_unknown_key(skms):
    for op in (skms.enable_key, skms.disable_key):
        with unchanged(skms), pytest.raises(skms.exceptions.NotFoundException):
            op(KeyId="0b7fa5ab-0000-4000-8000-000000000002")


def test_schedule_key_deletion_default_30_days(skms):
    md = skms.create_key()["KeyMetadata"]
    t0 = now()
    resp = skms.schedule_key_deletion(KeyId=md["KeyId"])
    assert resp["KeyId"] == md["Arn"]
    assert resp["KeyState"] == "PendingDeletion"
    assert resp["PendingWindowInDays"] == 30
    expected = t0 + datetime.timedelta(days=30)
    assert abs((resp["DeletionDate"] - expected).total_seconds()) < 86400 + 120, resp["DeletionDate"]
    got = skms.describe_key(KeyId=md["KeyId"])["KeyMetadata"]
    assert got["KeyState"] == "PendingDeletion"
    assert got["Enabled"] is False
    assert "DeletionDate" in got
    assert got.get("PendingDeletionWindowInDays", 30) == 30


@pytest.mark.parametrize("days", [7, 30])
def test_schedule_key_deletion_window_bounds_ok(skms, days):
    md = skms.create_key()["KeyMetadata"]
    t0 = now()
    resp = skms.schedule_key_deletion(KeyId=md["Arn"], PendingWindowInDays=days)
    assert resp["PendingWindowInDays"] == days
    expected = t0 + datetime.timedelta(days=days)
    assert abs((resp["DeletionDate"] - expected).total_seconds()) < 86400 + 120


@pytest.mark.parametrize("days", [0, 6, 31, 365])
def test_schedule_key_deletion_window_out_of_range(skms, days):
    md = skms.create_key()["KeyMetadata"]
    with unchanged(skms, md["KeyId"]), pytest.raises(skms.exceptions.ClientError) as e:
        skms.schedule_key_deletion(KeyId=md["KeyId"], PendingWindowInDays=days)
    assert error_code(e.value) == "ValidationException"
    assert skms.describe_key(KeyId=md["KeyId"])["KeyMetadata"]["KeyState"] == "Enabled"


def test_pending_deletion_key_state_errors(skms):
    md = skms.create_key()["KeyMetadata"]
    blob = skms.encrypt(KeyId=md["KeyId"], Plaintext=b"before deletion")["CiphertextBlob"]
    skms.schedule_key_deletion(KeyId=md["KeyId"], PendingWindowInDays=7)
    ex = skms.exceptions.KMSInvalidStateException
    with pytest.raises(ex):
        skms.encrypt(KeyId=md["KeyId"], Plaintext=b"x")
    with pytest.raises(ex):
        skms.decrypt(CiphertextBlob=blob)
    with pytest.raises(ex):
        skms.generate_data_key(KeyId=md["KeyId"], KeySpec="AES_256")
    with pytest.raises(ex):
        skms.generate_data_key_without_plaintext(KeyId=md["KeyId"], KeySpec="AES_256")
    with unchanged(skms, md["KeyId"]), pytest.raises(ex):
        skms.enable_key(KeyId=md["KeyId"])
    with unchanged(skms, md["KeyId"]), pytest.raises(ex):
        skms.disable_key(KeyId=md["KeyId"])
    # Scheduling again does not move the deletion date (AWS: KMSInvalidStateException).
    with unchanged(skms, md["KeyId"]), pytest.raises(ex):
        skms.schedule_key_deletion(KeyId=md["KeyId"], PendingWindowInDays=30)
    # DescribeKey still works on a key pending deletion.
    assert skms.describe_key(KeyId=md["KeyId"])["KeyMetadata"]["KeyState"] == "PendingDeletion"


def test_cancel_key_deletion_returns_key_disabled(skms):
    md = skms.create_key()["KeyMetadata"]
    blob = skms.encrypt(KeyId=md["KeyId"], Plaintext=b"survives")["CiphertextBlob"]
    skms.schedule_key_deletion(KeyId=md["KeyId"], PendingWindowInDays=7)
    resp = skms.cancel_key_deletion(KeyId=md["Arn"])
    assert resp["KeyId"] == md["Arn"]
    got = skms.describe_key(KeyId=md["KeyId"])["KeyMetadata"]
    assert got["KeyState"] == "Disabled"
    assert got["Enabled"] is False
    assert "DeletionDate" not in got
    with pytest.raises(skms.exceptions.DisabledException):
        skms.decrypt(CiphertextBlob=blob)
    skms.enable_key(KeyId=md["KeyId"])
    assert skms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"survives"


def test_cancel_key_deletion_on_enabled_key_is_invalid_state(skms):
    md = skms.create_key()["KeyMetadata"]
    with unchanged(skms, md["KeyId"]), pytest.raises(skms.exceptions.KMSInvalidStateException):
        skms.cancel_key_deletion(KeyId=md["KeyId"])


def test_schedule_and_cancel_unknown_key(skms):
    with unchanged(skms), pytest.raises(skms.exceptions.NotFoundException):
        skms.schedule_key_deletion(KeyId="0b7fa5ab-0000-4000-8000-000000000003")
    with unchanged(skms), pytest.raises(skms.exceptions.NotFoundException):
        skms.cancel_key_deletion(KeyId="0b7fa5ab-0000-4000-8000-000000000003")


def list_all_keys(kms, limit):
    seen, marker, pages = [], None, 0
    while True:
        kw = {"Limit": limit}
        if marker:
            kw["Marker"] = marker
        resp = kms.list_keys(**kw)
        pages += 1
        assert len(resp["Keys"]) <= limit
        for k in resp["Keys"]:
            assert k["KeyArn"] == key_arn(k["KeyId"])
        seen += [k["KeyId"] for k in resp["Keys"]]
        if not resp["Truncated"]:
            assert "NextMarker" not in resp
            return seen, pages
        assert resp["NextMarker"]
        marker = resp["NextMarker"]
        assert pages < 1000


def test_list_keys_paging(skms):
    created = {skms.create_key()["KeyMetadata"]["KeyId"] for _ in range(5)}
    everything = skms.list_keys()
    assert everything["Truncated"] is False
    all_ids = [k["KeyId"] for k in everything["Keys"]]
    assert created <= set(all_ids)
    paged, pages = list_all_keys(skms, 2)
    assert len(paged) == len(set(paged)), "a key was listed twice"
    assert set(paged) == set(all_ids)
    assert pages >= 3
    one, _ = list_all_keys(skms, 1)
    assert set(one) == set(all_ids)


def test_list_keys_limit_out_of_range(skms):
    for limit in (0, 1001):
        with pytest.raises(skms.exceptions.ClientError) as e:
            skms.list_keys(Limit=limit)
        assert error_code(e.value) == "ValidationException", limit


def test_list_keys_bad_marker(skms):
    with pytest.raises(skms.exceptions.InvalidMarkerException):
        skms.list_keys(Marker="this-is-not-a-marker!!")


def test_region_and_account_in_arns(skms):
    md = skms.create_key()["KeyMetadata"]
    assert md["Arn"].startswith(f"arn:aws:kms:{REGION}:{ACCOUNT}:key/")


def test_asymmetric_and_hmac_operations_on_a_symmetric_key(skms):
    # Every key here is a symmetric encryption key: AWS's answers for such a key, after the key is
    # found (an unknown key is NotFoundException first).
    key_id = skms.create_key()["KeyMetadata"]["KeyId"]
    calls = [
        ("InvalidKeyUsageException", skms.sign, dict(Message=b"m", SigningAlgorithm="ECDSA_SHA_256")),
        ("InvalidKeyUsageException", skms.verify, dict(Message=b"m", Signature=b"s", SigningAlgorithm="ECDSA_SHA_256")),
        ("InvalidKeyUsageException", skms.generate_mac, dict(Message=b"m", MacAlgorithm="HMAC_SHA_256")),
        ("InvalidKeyUsageException", skms.verify_mac, dict(Message=b"m", Mac=b"x", MacAlgorithm="HMAC_SHA_256")),
        ("UnsupportedOperationException", skms.get_public_key, {}),
        ("UnsupportedOperationException", skms.generate_data_key_pair, dict(KeyPairSpec="ECC_NIST_P256")),
        ("UnsupportedOperationException", skms.generate_data_key_pair_without_plaintext,
         dict(KeyPairSpec="ECC_NIST_P256")),
    ]
    for code, call, kwargs in calls:
        with unchanged(skms, key_id), pytest.raises(Exception) as e:
            call(KeyId=key_id, **kwargs)
        assert error_code(e.value) == code, call
        with pytest.raises(Exception) as e:
            call(KeyId="11111111-2222-3333-4444-555555555555", **kwargs)
        assert error_code(e.value) == "NotFoundException", call
