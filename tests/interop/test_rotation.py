"""EnableKeyRotation, DisableKeyRotation, GetKeyRotationStatus, RotateKeyOnDemand, ListKeyRotations.
Runs on every store."""

import os

import pytest

from conftest import error_code, unchanged


def test_rotation_status_default_and_toggle(skms):
    md = skms.create_key()["KeyMetadata"]
    st = skms.get_key_rotation_status(KeyId=md["KeyId"])
    assert st["KeyRotationEnabled"] is False
    skms.enable_key_rotation(KeyId=md["KeyId"])
    st = skms.get_key_rotation_status(KeyId=md["Arn"])
    assert st["KeyRotationEnabled"] is True
    assert st.get("RotationPeriodInDays", 365) == 365
    if "KeyId" in st:
        assert st["KeyId"] in (md["KeyId"], md["Arn"])
    skms.disable_key_rotation(KeyId=md["Arn"])
    assert skms.get_key_rotation_status(KeyId=md["KeyId"])["KeyRotationEnabled"] is False


@pytest.mark.parametrize("days", [90, 180, 2560])
def test_rotation_period(skms, days):
    md = skms.create_key()["KeyMetadata"]
    skms.enable_key_rotation(KeyId=md["KeyId"], RotationPeriodInDays=days)
    st = skms.get_key_rotation_status(KeyId=md["KeyId"])
    assert st["KeyRotationEnabled"] is True
    assert st["RotationPeriodInDays"] == days
    assert "NextRotationDate" in st


@pytest.mark.parametrize("days", [0, 89, 2561])
def test_rotation_period_out_of_range(skms, days):
    md = skms.create_key()["KeyMetadata"]
    with unchanged(skms, md["KeyId"]), pytest.raises(skms.exceptions.ClientError) as e:
        skms.enable_key_rotation(KeyId=md["KeyId"], RotationPeriodInDays=days)
    assert error_code(e.value) == "ValidationException"
    assert skms.get_key_rotation_status(KeyId=md["KeyId"])["KeyRotationEnabled"] is False


def test_rotation_unknown_key(skms):
    kid = "0b7fa5ab-0000-4000-8000-0000000000c1"
    for op in (skms.enable_key_rotation, skms.disable_key_rotation, skms.get_key_rotation_status,
               skms.rotate_key_on_demand, skms.list_key_rotations):
        with unchanged(skms), pytest.raises(skms.exceptions.NotFoundException):
            op(KeyId=kid)


def test_rotate_on_demand_keeps_old_ciphertexts(skms):
    md = skms.create_key()["KeyMetadata"]
    assert skms.list_key_rotations(KeyId=md["KeyId"])["Rotations"] == []
    ctx = {"v": "1"}
    old = [(pt, skms.encrypt(KeyId=md["KeyId"], Plaintext=pt, EncryptionContext=ctx)["CiphertextBlob"])
           for pt in (os.urandom(10), os.urandom(100))]
    old_dk = skms.generate_data_key(KeyId=md["KeyId"], KeySpec="AES_256")

    resp = skms.rotate_key_on_demand(KeyId=md["KeyId"])
    assert resp["KeyId"] in (md["KeyId"], md["Arn"])

    rot = skms.list_key_rotations(KeyId=md["KeyId"])
    assert len(rot["Rotations"]) == 1, rot
    r = rot["Rotations"][0]
    assert r["RotationType"] == "ON_DEMAND"
    assert "RotationDate" in r
    assert r["KeyId"] in (md["KeyId"], md["Arn"])
    assert rot["Truncated"] is False

    new_blob = skms.encrypt(KeyId=md["KeyId"], Plaintext=b"after", EncryptionContext=ctx)["CiphertextBlob"]
    for pt, blob in old:
        assert skms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx)["Plaintext"] == pt
        assert skms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx, KeyId=md["Arn"])["Plaintext"] == pt
    assert skms.decrypt(CiphertextBlob=old_dk["CiphertextBlob"])["Plaintext"] == old_dk["Plaintext"]
    assert skms.decrypt(CiphertextBlob=new_blob, EncryptionContext=ctx)["Plaintext"] == b"after"

    # A second rotation, then paging over the rotations; everything still decrypts.
    skms.rotate_key_on_demand(KeyId=md["Arn"])
    rots = skms.list_key_rotations(KeyId=md["Arn"])["Rotations"]
    assert len(rots) == 2
    page1 = skms.list_key_rotations(KeyId=md["KeyId"], Limit=1)
    assert len(page1["Rotations"]) == 1 and page1["Truncated"] is True
    page2 = skms.list_key_rotations(KeyId=md["KeyId"], Limit=1, Marker=page1["NextMarker"])
    assert len(page2["Rotations"]) == 1 and page2["Truncated"] is False
    assert page1["Rotations"][0]["RotationDate"] <= page2["Rotations"][0]["RotationDate"]
    for pt, blob in old:
        assert skms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx)["Plaintext"] == pt
    assert skms.decrypt(CiphertextBlob=new_blob, EncryptionContext=ctx)["Plaintext"] == b"after"
    # Re-encrypting an old ciphertext under the same key moves it to the newest material.
    re = skms.re_encrypt(CiphertextBlob=old[0][1], SourceEncryptionContext=ctx, DestinationKeyId=md["KeyId"])
    assert skms.decrypt(CiphertextBlob=re["CiphertextBlob"])["Plaintext"] == old[0][0]


def test_rotate_on_demand_does_not_enable_automatic_rotation(skms):
    md = skms.create_key()["KeyMetadata"]
    skms.rotate_key_on_demand(KeyId=md["KeyId"])
    assert skms.get_key_rotation_status(KeyId=md["KeyId"])["KeyRotationEnabled"] is False


def test_rotate_on_demand_disabled_key(skms):
    md = skms.create_key()["KeyMetadata"]
    skms.disable_key(KeyId=md["KeyId"])
    with unchanged(skms, md["KeyId"]), pytest.raises(skms.exceptions.ClientError) as e:
        skms.rotate_key_on_demand(KeyId=md["KeyId"])
    assert error_code(e.value) in ("DisabledException", "KMSInvalidStateException")
    # EnableKeyRotation on a disabled key is refused too (AWS: DisabledException), and changes nothing.
    with unchanged(skms, md["KeyId"]), pytest.raises(skms.exceptions.ClientError) as e:
        skms.enable_key_rotation(KeyId=md["KeyId"])
    assert error_code(e.value) in ("DisabledException", "KMSInvalidStateException")


def test_list_key_rotations_bad_marker(skms):
    md = skms.create_key()["KeyMetadata"]
    with pytest.raises(skms.exceptions.InvalidMarkerException):
        skms.list_key_rotations(KeyId=md["KeyId"], Marker="bogus!!")


ON_DEMAND_ROTATIONS = 25  # AWS's quota: "On-demand rotation | 25 | not adjustable"


def test_on_demand_rotation_limit_changes_nothing(skms):
    """The 26th on-demand rotation of a key is LimitExceededException and adds no material."""
    md = skms.create_key()["KeyMetadata"]
    for _ in range(ON_DEMAND_ROTATIONS):
        skms.rotate_key_on_demand(KeyId=md["KeyId"])
    with unchanged(skms, md["KeyId"]) as before, pytest.raises(skms.exceptions.LimitExceededException):
        skms.rotate_key_on_demand(KeyId=md["KeyId"])
    assert len(before["detail"][md["KeyId"]]["rotations"]) == ON_DEMAND_ROTATIONS


def test_rotation_status_is_false_while_the_key_is_pending_deletion(skms):
    """AWS: while pending deletion the rotation status is false; cancelling brings it back."""
    key = skms.create_key()["KeyMetadata"]["KeyId"]
    skms.enable_key_rotation(KeyId=key, RotationPeriodInDays=180)
    skms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    status = skms.get_key_rotation_status(KeyId=key)
    assert status["KeyRotationEnabled"] is False
    assert "RotationPeriodInDays" not in status and "NextRotationDate" not in status
    skms.cancel_key_deletion(KeyId=key)
    status = skms.get_key_rotation_status(KeyId=key)
    assert status["KeyRotationEnabled"] is True and status["RotationPeriodInDays"] == 180
