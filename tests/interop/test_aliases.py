"""CreateAlias, UpdateAlias, DeleteAlias, ListAliases with boto3. Runs on every store."""

import pytest

from conftest import alias_arn, error_code, unchanged, unique


def alias_name(prefix="a"):
    return "alias/" + unique(prefix)


def aliases_of(kms, **kw):
    """Every alias (all pages), by name."""
    out, marker = {}, None
    for _ in range(1000):
        resp = kms.list_aliases(**kw, **({"Marker": marker} if marker else {}))
        out.update({a["AliasName"]: a for a in resp["Aliases"]})
        if not resp["Truncated"]:
            return out
        marker = resp["NextMarker"]
    raise AssertionError("ListAliases never stopped paging")


def test_create_alias_and_list(skms):
    md = skms.create_key()["KeyMetadata"]
    name = alias_name()
    skms.create_alias(AliasName=name, TargetKeyId=md["KeyId"])
    got = aliases_of(skms)[name]
    assert got["AliasArn"] == alias_arn(name)
    assert got["TargetKeyId"] == md["KeyId"]
    assert "CreationDate" in got
    # Target given as the key ARN works too.
    name2 = alias_name()
    skms.create_alias(AliasName=name2, TargetKeyId=md["Arn"])
    assert aliases_of(skms)[name2]["TargetKeyId"] == md["KeyId"]


def test_list_aliases_filtered_by_key(skms):
    md = skms.create_key()["KeyMetadata"]
    names = {alias_name("f") for _ in range(3)}
    for n in names:
        skms.create_alias(AliasName=n, TargetKeyId=md["KeyId"])
    for ident in (md["KeyId"], md["Arn"]):
        got = skms.list_aliases(KeyId=ident)["Aliases"]
        assert {a["AliasName"] for a in got} == names
        assert all(a["TargetKeyId"] == md["KeyId"] for a in got)
    other = skms.create_key()["KeyMetadata"]
    assert skms.list_aliases(KeyId=other["KeyId"])["Aliases"] == []


def test_list_aliases_unknown_key(skms):
    with pytest.raises(skms.exceptions.NotFoundException):
        skms.list_aliases(KeyId="0b7fa5ab-0000-4000-8000-0000000000a1")


def test_list_aliases_paging(skms):
    md = skms.create_key()["KeyMetadata"]
    for _ in range(5):
        skms.create_alias(AliasName=alias_name("p"), TargetKeyId=md["KeyId"])
    full = list(aliases_of(skms, Limit=100))
    seen, marker, pages = [], None, 0
    while True:
        kw = {"Limit": 2}
        if marker:
            kw["Marker"] = marker
        resp = skms.list_aliases(**kw)
        pages += 1
        assert len(resp["Aliases"]) <= 2
        seen += [a["AliasName"] for a in resp["Aliases"]]
        if not resp["Truncated"]:
            break
        marker = resp["NextMarker"]
        assert pages < 1000
    assert len(seen) == len(set(seen))
    assert set(seen) == set(full)
    assert pages >= 3
    # Paging within one key's aliases.
    resp = skms.list_aliases(KeyId=md["KeyId"], Limit=3)
    assert len(resp["Aliases"]) == 3 and resp["Truncated"] is True
    rest = skms.list_aliases(KeyId=md["KeyId"], Limit=3, Marker=resp["NextMarker"])
    assert len(rest["Aliases"]) == 2 and rest["Truncated"] is False
    assert {a["AliasName"] for a in resp["Aliases"]}.isdisjoint({a["AliasName"] for a in rest["Aliases"]})


def test_list_aliases_bad_marker(skms):
    with pytest.raises(skms.exceptions.InvalidMarkerException):
        skms.list_aliases(Marker="not-a-marker!!")


def test_list_aliases_limit_out_of_range(skms):
    for limit in (0, 101):
        with pytest.raises(skms.exceptions.ClientError) as e:
            skms.list_aliases(Limit=limit)
        assert error_code(e.value) == "ValidationException", limit


def test_create_alias_already_exists(skms):
    md = skms.create_key()["KeyMetadata"]
    name = alias_name()
    skms.create_alias(AliasName=name, TargetKeyId=md["KeyId"])
    with unchanged(skms, md["KeyId"]), pytest.raises(skms.exceptions.AlreadyExistsException):
        skms.create_alias(AliasName=name, TargetKeyId=md["KeyId"])
    other = skms.create_key()["KeyMetadata"]
    with unchanged(skms, md["KeyId"], other["KeyId"]), pytest.raises(skms.exceptions.AlreadyExistsException):
        skms.create_alias(AliasName=name, TargetKeyId=other["KeyId"])
    assert aliases_of(skms)[name]["TargetKeyId"] == md["KeyId"]


@pytest.mark.parametrize("bad", [
    "alias/aws/mine",
    "alias/aws/ebs",
    "no-prefix",
    "alias/",
    "alias/has space",
    "alias/bad*char",
    "alias/" + "x" * 251,
])
def test_create_alias_invalid_name(skms, bad):
    md = skms.create_key()["KeyMetadata"]
    with unchanged(skms, md["KeyId"]), pytest.raises(skms.exceptions.ClientError) as e:
        skms.create_alias(AliasName=bad, TargetKeyId=md["KeyId"])
    code = error_code(e.value)
    if bad.startswith("alias/aws/"):
        # AWS answers NotAuthorizedException for its reserved prefix (issue 14).
        assert code == "NotAuthorizedException", code
    else:
        # AWS answers a missing prefix, a bad character and a bad length with ValidationException
        # (issue 14: not InvalidAliasNameException).
        assert code == "ValidationException", code
    assert bad not in aliases_of(skms)


def test_create_alias_unknown_target(skms):
    with unchanged(skms), pytest.raises(skms.exceptions.NotFoundException):
        skms.create_alias(AliasName=alias_name(), TargetKeyId="0b7fa5ab-0000-4000-8000-0000000000a2")


def test_update_alias(skms):
    a = skms.create_key()["KeyMetadata"]
    b = skms.create_key()["KeyMetadata"]
    name = alias_name("u")
    skms.create_alias(AliasName=name, TargetKeyId=a["KeyId"])
    assert skms.encrypt(KeyId=name, Plaintext=b"x")["KeyId"] == a["Arn"]
    skms.update_alias(AliasName=name, TargetKeyId=b["Arn"])
    assert aliases_of(skms)[name]["TargetKeyId"] == b["KeyId"]
    assert skms.describe_key(KeyId=name)["KeyMetadata"]["KeyId"] == b["KeyId"]
    assert skms.encrypt(KeyId=name, Plaintext=b"x")["KeyId"] == b["Arn"]
    skms.update_alias(AliasName=name, TargetKeyId=a["KeyId"])
    assert skms.describe_key(KeyId=alias_arn(name))["KeyMetadata"]["KeyId"] == a["KeyId"]


def test_update_alias_errors(skms):
    a = skms.create_key()["KeyMetadata"]
    with unchanged(skms, a["KeyId"]), pytest.raises(skms.exceptions.NotFoundException):
        skms.update_alias(AliasName=alias_name("missing"), TargetKeyId=a["KeyId"])
    name = alias_name("u")
    skms.create_alias(AliasName=name, TargetKeyId=a["KeyId"])
    with unchanged(skms, a["KeyId"]), pytest.raises(skms.exceptions.NotFoundException):
        skms.update_alias(AliasName=name, TargetKeyId="0b7fa5ab-0000-4000-8000-0000000000a3")
    # An alias is not a target: neither for CreateAlias nor for UpdateAlias (AWS: ValidationException).
    b = skms.create_key()["KeyMetadata"]
    other = alias_name("o")
    skms.create_alias(AliasName=other, TargetKeyId=b["KeyId"])
    with unchanged(skms, a["KeyId"], b["KeyId"]), pytest.raises(skms.exceptions.ClientError) as e:
        skms.update_alias(AliasName=name, TargetKeyId=other)
    assert error_code(e.value) == "ValidationException"
    with unchanged(skms, a["KeyId"], b["KeyId"]), pytest.raises(skms.exceptions.ClientError) as e:
        skms.create_alias(AliasName=alias_name("n"), TargetKeyId=other)
    assert error_code(e.value) == "ValidationException"
    assert aliases_of(skms)[name]["TargetKeyId"] == a["KeyId"]


def test_delete_alias(skms):
    md = skms.create_key()["KeyMetadata"]
    name = alias_name("d")
    skms.create_alias(AliasName=name, TargetKeyId=md["KeyId"])
    skms.delete_alias(AliasName=name)
    assert name not in aliases_of(skms)
    with pytest.raises(skms.exceptions.NotFoundException):
        skms.describe_key(KeyId=name)
    with unchanged(skms, md["KeyId"]), pytest.raises(skms.exceptions.NotFoundException):
        skms.delete_alias(AliasName=name)
    # The key itself is untouched, and the name can be reused.
    assert skms.describe_key(KeyId=md["KeyId"])["KeyMetadata"]["KeyState"] == "Enabled"
    skms.create_alias(AliasName=name, TargetKeyId=md["KeyId"])


def test_alias_to_disabled_key(skms):
    md = skms.create_key()["KeyMetadata"]
    name = alias_name("dis")
    skms.create_alias(AliasName=name, TargetKeyId=md["KeyId"])
    skms.disable_key(KeyId=md["KeyId"])
    with pytest.raises(skms.exceptions.DisabledException):
        skms.encrypt(KeyId=name, Plaintext=b"x")
    assert skms.describe_key(KeyId=name)["KeyMetadata"]["KeyState"] == "Disabled"


def test_delete_alias_missing_name_is_validation_error(skms):
    with unchanged(skms), pytest.raises(skms.exceptions.ClientError) as e:
        skms.delete_alias()
    assert error_code(e.value) == "ValidationException"
