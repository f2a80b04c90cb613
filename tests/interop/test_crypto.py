"""Encrypt, Decrypt, ReEncrypt, GenerateDataKey, GenerateDataKeyWithoutPlaintext, GenerateRandom with boto3.
Runs on every store."""

import os

import pytest

from conftest import alias_arn, error_code, key_arn, unchanged, unique


@pytest.fixture(scope="module")
def key(skms):
    md = skms.create_key(Description="crypto")["KeyMetadata"]
    alias = "alias/" + unique("crypto")
    skms.create_alias(AliasName=alias, TargetKeyId=md["KeyId"])
    md = dict(md)
    md["Alias"] = alias
    return md


@pytest.fixture(scope="module")
def other_key(skms):
    return skms.create_key(Description="other")["KeyMetadata"]


def identifiers(key):
    return [key["KeyId"], key["Arn"], key["Alias"], alias_arn(key["Alias"])]


def test_encrypt_decrypt_round_trip_every_identifier(skms, key):
    for ident in identifiers(key):
        pt = os.urandom(100)
        resp = skms.encrypt(KeyId=ident, Plaintext=pt)
        assert resp["KeyId"] == key["Arn"], ident
        assert resp["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
        blob = resp["CiphertextBlob"]
        assert pt not in blob
        dec = skms.decrypt(CiphertextBlob=blob)
        assert dec["Plaintext"] == pt
        assert dec["KeyId"] == key["Arn"]
        assert dec["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
        # Decrypt with an explicit KeyId in every form that matches.
        for ident2 in identifiers(key):
            assert skms.decrypt(CiphertextBlob=blob, KeyId=ident2)["Plaintext"] == pt, (ident, ident2)


def test_encrypt_is_randomized(skms, key):
    a = skms.encrypt(KeyId=key["KeyId"], Plaintext=b"same")["CiphertextBlob"]
    b = skms.encrypt(KeyId=key["KeyId"], Plaintext=b"same")["CiphertextBlob"]
    assert a != b


def test_encrypt_size_limits(skms, key):
    pt = os.urandom(4096)
    blob = skms.encrypt(KeyId=key["KeyId"], Plaintext=pt)["CiphertextBlob"]
    assert skms.decrypt(CiphertextBlob=blob)["Plaintext"] == pt
    assert skms.decrypt(CiphertextBlob=skms.encrypt(KeyId=key["KeyId"], Plaintext=b"\x00")["CiphertextBlob"])[
        "Plaintext"] == b"\x00"
    for bad in (os.urandom(4097), b""):
        with pytest.raises(skms.exceptions.ClientError) as e:
            skms.encrypt(KeyId=key["KeyId"], Plaintext=bad)
        assert error_code(e.value) == "ValidationException", len(bad)


def test_encrypt_unknown_key(skms):
    for ident in ("0b7fa5ab-0000-4000-8000-00000000000a", key_arn("0b7fa5ab-0000-4000-8000-00000000000a"),
                  "alias/no-such-alias", alias_arn("alias/no-such-alias")):
        with pytest.raises(skms.exceptions.NotFoundException):
            skms.encrypt(KeyId=ident, Plaintext=b"x")


def test_encrypt_missing_key_id_is_validation_error(skms):
    with pytest.raises(skms.exceptions.ClientError) as e:
        skms.encrypt(Plaintext=b"x")
    assert error_code(e.value) == "ValidationException"


def test_asymmetric_algorithm_on_symmetric_key(skms, key):
    with pytest.raises(skms.exceptions.InvalidKeyUsageException):
        skms.encrypt(KeyId=key["KeyId"], Plaintext=b"x", EncryptionAlgorithm="RSAES_OAEP_SHA_256")
    blob = skms.encrypt(KeyId=key["KeyId"], Plaintext=b"x", EncryptionAlgorithm="SYMMETRIC_DEFAULT")[
        "CiphertextBlob"]
    with pytest.raises(skms.exceptions.InvalidKeyUsageException):
        skms.decrypt(CiphertextBlob=blob, KeyId=key["KeyId"], EncryptionAlgorithm="RSAES_OAEP_SHA_1")
    assert skms.decrypt(CiphertextBlob=blob, EncryptionAlgorithm="SYMMETRIC_DEFAULT")["Plaintext"] == b"x"


def test_encryption_context_is_bound(skms, key):
    ctx = {"purpose": "test", "tenant": "42"}
    blob = skms.encrypt(KeyId=key["KeyId"], Plaintext=b"secret", EncryptionContext=ctx)["CiphertextBlob"]
    assert skms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx)["Plaintext"] == b"secret"
    # Key order does not matter.
    assert skms.decrypt(CiphertextBlob=blob, EncryptionContext={"tenant": "42", "purpose": "test"})[
        "Plaintext"] == b"secret"
    for wrong in (None, {}, {"purpose": "test"}, {"purpose": "test", "tenant": "43"},
                  {"purpose": "test", "tenant": "42", "extra": "x"}, {"Purpose": "test", "tenant": "42"}):
        kw = {} if wrong is None else {"EncryptionContext": wrong}
        with pytest.raises(skms.exceptions.InvalidCiphertextException):
            skms.decrypt(CiphertextBlob=blob, **kw)


def test_encryption_context_encoding_is_unambiguous(skms, key):
    blob = skms.encrypt(KeyId=key["KeyId"], Plaintext=b"p", EncryptionContext={"ab": "c"})["CiphertextBlob"]
    with pytest.raises(skms.exceptions.InvalidCiphertextException):
        skms.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "bc"})
    blob2 = skms.encrypt(KeyId=key["KeyId"], Plaintext=b"p", EncryptionContext={"a": "b", "c": "d"})[
        "CiphertextBlob"]
    with pytest.raises(skms.exceptions.InvalidCiphertextException):
        skms.decrypt(CiphertextBlob=blob2, EncryptionContext={"a": "bcd"})


def test_encryption_context_unicode(skms, key):
    ctx = {"ключ": "значение", "emoji": "\U0001F510", "empty-ish": " "}
    blob = skms.encrypt(KeyId=key["KeyId"], Plaintext=b"u", EncryptionContext=ctx)["CiphertextBlob"]
    assert skms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx)["Plaintext"] == b"u"
    with pytest.raises(skms.exceptions.InvalidCiphertextException):
        skms.decrypt(CiphertextBlob=blob, EncryptionContext={**ctx, "emoji": "\U0001F511"})


def test_context_free_ciphertext_rejects_a_context(skms, key):
    blob = skms.encrypt(KeyId=key["KeyId"], Plaintext=b"p")["CiphertextBlob"]
    with pytest.raises(skms.exceptions.InvalidCiphertextException):
        skms.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "b"})


def test_decrypt_garbage_and_tampered_blobs(skms, key):
    blob = skms.encrypt(KeyId=key["KeyId"], Plaintext=b"integrity")["CiphertextBlob"]
    candidates = [
        b"garbage",
        os.urandom(200),
        blob[:-1],
        blob[: len(blob) // 2],
        blob + b"\x00",
        blob[:-1] + bytes([blob[-1] ^ 1]),
        blob[:-20] + bytes([blob[-20] ^ 0x80]) + blob[-19:],
    ]
    for bad in candidates:
        with pytest.raises(skms.exceptions.InvalidCiphertextException):
            skms.decrypt(CiphertextBlob=bad)


def test_decrypt_with_mismatched_key_id(skms, key, other_key):
    blob = skms.encrypt(KeyId=key["KeyId"], Plaintext=b"mine")["CiphertextBlob"]
    for ident in (other_key["KeyId"], other_key["Arn"]):
        with pytest.raises(skms.exceptions.IncorrectKeyException):
            skms.decrypt(CiphertextBlob=blob, KeyId=ident)


def test_disabled_key_errors(skms):
    md = skms.create_key()["KeyMetadata"]
    blob = skms.encrypt(KeyId=md["KeyId"], Plaintext=b"d")["CiphertextBlob"]
    other = skms.create_key()["KeyMetadata"]
    skms.disable_key(KeyId=md["KeyId"])
    ex = skms.exceptions.DisabledException
    with unchanged(skms, md["KeyId"], other["KeyId"]):
        with pytest.raises(ex):
            skms.encrypt(KeyId=md["KeyId"], Plaintext=b"x")
        with pytest.raises(ex):
            skms.decrypt(CiphertextBlob=blob)
        with pytest.raises(ex):
            skms.generate_data_key(KeyId=md["KeyId"], KeySpec="AES_256")
        with pytest.raises(ex):
            skms.generate_data_key_without_plaintext(KeyId=md["KeyId"], KeySpec="AES_256")
        with pytest.raises(ex):
            skms.re_encrypt(CiphertextBlob=blob, DestinationKeyId=other["KeyId"])
    skms.enable_key(KeyId=md["KeyId"])
    assert skms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"d"


@pytest.mark.parametrize("spec,size", [("AES_128", 16), ("AES_256", 32)])
def test_generate_data_key_key_spec(skms, key, spec, size):
    for ident in identifiers(key):
        resp = skms.generate_data_key(KeyId=ident, KeySpec=spec)
        assert resp["KeyId"] == key["Arn"]
        assert len(resp["Plaintext"]) == size
        dec = skms.decrypt(CiphertextBlob=resp["CiphertextBlob"])
        assert dec["Plaintext"] == resp["Plaintext"]
        assert dec["KeyId"] == key["Arn"]


@pytest.mark.parametrize("n", [1, 17, 64, 1024])
def test_generate_data_key_number_of_bytes(skms, key, n):
    resp = skms.generate_data_key(KeyId=key["KeyId"], NumberOfBytes=n)
    assert len(resp["Plaintext"]) == n
    assert skms.decrypt(CiphertextBlob=resp["CiphertextBlob"])["Plaintext"] == resp["Plaintext"]


@pytest.mark.parametrize("kwargs", [
    {},
    {"NumberOfBytes": 0},
    {"NumberOfBytes": 1025},
    {"KeySpec": "AES_512"},
    {"KeySpec": "AES_256", "NumberOfBytes": 32},
])
def test_generate_data_key_invalid(skms, key, kwargs):
    with pytest.raises(skms.exceptions.ClientError) as e:
        skms.generate_data_key(KeyId=key["KeyId"], **kwargs)
    assert error_code(e.value) == "ValidationException", kwargs


def test_generate_data_key_with_context(skms, key):
    ctx = {"bucket": "b", "object": "o/k"}
    resp = skms.generate_data_key(KeyId=key["Alias"], KeySpec="AES_256", EncryptionContext=ctx)
    assert skms.decrypt(CiphertextBlob=resp["CiphertextBlob"], EncryptionContext=ctx)["Plaintext"] == \
        resp["Plaintext"]
    with pytest.raises(skms.exceptions.InvalidCiphertextException):
        skms.decrypt(CiphertextBlob=resp["CiphertextBlob"])


def test_generate_data_key_keys_differ(skms, key):
    a = skms.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_256")["Plaintext"]
    b = skms.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_256")["Plaintext"]
    assert a != b


def test_generate_data_key_without_plaintext(skms, key):
    for ident in identifiers(key):
        resp = skms.generate_data_key_without_plaintext(KeyId=ident, KeySpec="AES_256")
        assert "Plaintext" not in resp
        assert resp["KeyId"] == key["Arn"]
        assert len(skms.decrypt(CiphertextBlob=resp["CiphertextBlob"])["Plaintext"]) == 32
    resp = skms.generate_data_key_without_plaintext(KeyId=key["KeyId"], NumberOfBytes=48,
                                                    EncryptionContext={"k": "v"})
    assert len(skms.decrypt(CiphertextBlob=resp["CiphertextBlob"], EncryptionContext={"k": "v"})[
        "Plaintext"]) == 48
    with pytest.raises(skms.exceptions.ClientError) as e:
        skms.generate_data_key_without_plaintext(KeyId=key["KeyId"], NumberOfBytes=2000)
    assert error_code(e.value) == "ValidationException"
    with pytest.raises(skms.exceptions.NotFoundException):
        skms.generate_data_key_without_plaintext(KeyId="alias/nope-nope", KeySpec="AES_256")


def test_generate_data_key_unknown_key(skms):
    with pytest.raises(skms.exceptions.NotFoundException):
        skms.generate_data_key(KeyId="0b7fa5ab-0000-4000-8000-00000000000b", KeySpec="AES_256")


@pytest.mark.parametrize("n", [1, 16, 32, 1024])
def test_generate_random(skms, n):
    out = skms.generate_random(NumberOfBytes=n)["Plaintext"]
    assert len(out) == n


def test_generate_random_is_random(skms):
    assert skms.generate_random(NumberOfBytes=32)["Plaintext"] != skms.generate_random(NumberOfBytes=32)[
        "Plaintext"]


@pytest.mark.parametrize("n", [0, 1025, -1])
def test_generate_random_out_of_range(skms, n):
    with pytest.raises(skms.exceptions.ClientError) as e:
        skms.generate_random(NumberOfBytes=n)
    assert error_code(e.value) == "ValidationException"


def test_re_encrypt(skms, key, other_key):
    ctx = {"a": "1"}
    src = skms.encrypt(KeyId=key["KeyId"], Plaintext=b"move me", EncryptionContext=ctx)["CiphertextBlob"]
    for dest in (other_key["KeyId"], other_key["Arn"]):
        resp = skms.re_encrypt(CiphertextBlob=src, SourceEncryptionContext=ctx, DestinationKeyId=dest,
                               DestinationEncryptionContext={"b": "2"})
        assert resp["KeyId"] == other_key["Arn"]
        assert resp["SourceKeyId"] == key["Arn"]
        assert resp.get("SourceEncryptionAlgorithm", "SYMMETRIC_DEFAULT") == "SYMMETRIC_DEFAULT"
        assert resp.get("DestinationEncryptionAlgorithm", "SYMMETRIC_DEFAULT") == "SYMMETRIC_DEFAULT"
        new = resp["CiphertextBlob"]
        dec = skms.decrypt(CiphertextBlob=new, EncryptionContext={"b": "2"})
        assert dec["Plaintext"] == b"move me"
        assert dec["KeyId"] == other_key["Arn"]
        with pytest.raises(skms.exceptions.InvalidCiphertextException):
            skms.decrypt(CiphertextBlob=new, EncryptionContext=ctx)


def test_re_encrypt_identifier_forms_and_errors(skms, key, other_key):
    src = skms.encrypt(KeyId=other_key["KeyId"], Plaintext=b"p")["CiphertextBlob"]
    for dest in identifiers(key):
        resp = skms.re_encrypt(CiphertextBlob=src, DestinationKeyId=dest, SourceKeyId=other_key["Arn"])
        assert resp["KeyId"] == key["Arn"]
        assert skms.decrypt(CiphertextBlob=resp["CiphertextBlob"])["Plaintext"] == b"p"
    # Wrong source context.
    with pytest.raises(skms.exceptions.InvalidCiphertextException):
        skms.re_encrypt(CiphertextBlob=src, DestinationKeyId=key["KeyId"], SourceEncryptionContext={"x": "y"})
    # SourceKeyId that does not match the blob.
    with pytest.raises(skms.exceptions.IncorrectKeyException):
        skms.re_encrypt(CiphertextBlob=src, DestinationKeyId=key["KeyId"], SourceKeyId=key["KeyId"])
    with pytest.raises(skms.exceptions.NotFoundException):
        skms.re_encrypt(CiphertextBlob=src, DestinationKeyId="alias/none-such")
    with pytest.raises(skms.exceptions.InvalidCiphertextException):
        skms.re_encrypt(CiphertextBlob=b"junk-junk-junk", DestinationKeyId=key["KeyId"])
