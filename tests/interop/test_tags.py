"""TagResource, UntagResource, ListResourceTags with boto3."""

import pytest

from conftest import error_code, unchanged


def tags_of(kms, key_id, **kw):
    return {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=key_id, **kw)["Tags"]}


def test_tag_untag_list(kms):
    md = kms.create_key()["KeyMetadata"]
    assert kms.list_resource_tags(KeyId=md["KeyId"])["Tags"] == []
    kms.tag_resource(KeyId=md["KeyId"], Tags=[{"TagKey": "a", "TagValue": "1"}, {"TagKey": "b", "TagValue": "2"}])
    assert tags_of(kms, md["KeyId"]) == {"a": "1", "b": "2"}
    # Same key again overwrites the value; the ARN form works.
    kms.tag_resource(KeyId=md["Arn"], Tags=[{"TagKey": "a", "TagValue": "one"}])
    assert tags_of(kms, md["Arn"]) == {"a": "one", "b": "2"}
    kms.untag_resource(KeyId=md["KeyId"], TagKeys=["a"])
    assert tags_of(kms, md["KeyId"]) == {"b": "2"}
    # Removing a tag that is not there is not an error.
    kms.untag_resource(KeyId=md["Arn"], TagKeys=["not-there"])
    kms.untag_resource(KeyId=md["Arn"], TagKeys=["b"])
    assert tags_of(kms, md["KeyId"]) == {}


def test_list_resource_tags_paging(kms):
    md = kms.create_key()["KeyMetadata"]
    want = {f"k{i:02d}": f"v{i}" for i in range(7)}
    kms.tag_resource(KeyId=md["KeyId"], Tags=[{"TagKey": k, "TagValue": v} for k, v in want.items()])
    got, marker, pages = {}, None, 0
    while True:
        kw = {"Limit": 3}
        if marker:
            kw["Marker"] = marker
        resp = kms.list_resource_tags(KeyId=md["KeyId"], **kw)
        pages += 1
        assert len(resp["Tags"]) <= 3
        for t in resp["Tags"]:
            assert t["TagKey"] not in got
            got[t["TagKey"]] = t["TagValue"]
        if not resp["Truncated"]:
            break
        marker = resp["NextMarker"]
        assert pages < 100
    assert got == want
    assert pages == 3


def test_tags_unknown_key(kms):
    kid = "0b7fa5ab-0000-4000-8000-0000000000d1"
    with unchanged(kms), pytest.raises(kms.exceptions.NotFoundException):
        kms.tag_resource(KeyId=kid, Tags=[{"TagKey": "a", "TagValue": "1"}])
    with unchanged(kms), pytest.raises(kms.exceptions.NotFoundException):
        kms.untag_resource(KeyId=kid, TagKeys=["a"])
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.list_resource_tags(KeyId=kid)


@pytest.mark.parametrize("tag", [
    {"TagKey": "aws:reserved", "TagValue": "x"},
    {"TagKey": "aws:cloudformation:stack-name", "TagValue": "x"},
])
def test_reserved_tag_key_is_tag_exception(kms, tag):
    md = kms.create_key(Tags=[{"TagKey": "kept", "TagValue": "1"}])["KeyMetadata"]
    with unchanged(kms, md["KeyId"]), pytest.raises(kms.exceptions.TagException):
        kms.tag_resource(KeyId=md["KeyId"], Tags=[{"TagKey": "kept", "TagValue": "2"}, tag])
    assert tags_of(kms, md["KeyId"]) == {"kept": "1"}
    with unchanged(kms), pytest.raises(kms.exceptions.TagException):
        kms.create_key(Tags=[{"TagKey": "fine", "TagValue": "x"}, tag])


@pytest.mark.parametrize("tag", [
    {"TagKey": "", "TagValue": "x"},
    {"TagKey": "k" * 129, "TagValue": "x"},
    {"TagKey": "k", "TagValue": "v" * 257},
])
def test_invalid_tag_is_rejected(kms, tag):
    md = kms.create_key(Tags=[{"TagKey": "kept", "TagValue": "1"}])["KeyMetadata"]
    # A valid tag beside the bad one is not applied either.
    with unchanged(kms, md["KeyId"]), pytest.raises(kms.exceptions.ClientError) as e:
        kms.tag_resource(KeyId=md["KeyId"], Tags=[{"TagKey": "kept", "TagValue": "2"}, tag])
    # AWS answers model-constraint violations with ValidationException; TagException is also acceptable.
    assert error_code(e.value) in ("TagException", "ValidationException")
    assert tags_of(kms, md["KeyId"]) == {"kept": "1"}
    with unchanged(kms), pytest.raises(kms.exceptions.ClientError) as e:
        kms.create_key(Tags=[{"TagKey": "fine", "TagValue": "x"}, tag])
    assert error_code(e.value) in ("TagException", "ValidationException")


def test_tags_on_pending_deletion_key(kms):
    md = kms.create_key(Tags=[{"TagKey": "t", "TagValue": "v"}])["KeyMetadata"]
    kms.schedule_key_deletion(KeyId=md["KeyId"], PendingWindowInDays=7)
    assert tags_of(kms, md["KeyId"]) == {"t": "v"}
    # AWS refuses tag changes on a key pending deletion.
    with unchanged(kms, md["KeyId"]), pytest.raises(kms.exceptions.KMSInvalidStateException):
        kms.tag_resource(KeyId=md["KeyId"], Tags=[{"TagKey": "t", "TagValue": "w"}])
    with unchanged(kms, md["KeyId"]), pytest.raises(kms.exceptions.KMSInvalidStateException):
        kms.untag_resource(KeyId=md["KeyId"], TagKeys=["t"])


def test_too_many_tags_changes_nothing(kms):
    """TagResource that would leave more than 50 tags is refused whole: the values it would update
    keep their old values, and no tag is added (issue 14)."""
    md = kms.create_key(Tags=[{"TagKey": f"t{i:02d}", "TagValue": "old"} for i in range(48)])["KeyMetadata"]
    tags = [{"TagKey": f"t{i:02d}", "TagValue": "new"} for i in range(5)]
    tags += [{"TagKey": f"n{i}", "TagValue": "x"} for i in range(3)]
    with unchanged(kms, md["KeyId"]), pytest.raises(kms.exceptions.TagException):
        kms.tag_resource(KeyId=md["KeyId"], Tags=tags)
    with unchanged(kms), pytest.raises(kms.exceptions.ClientError) as e:
        kms.create_key(Tags=[{"TagKey": f"t{i:02d}", "TagValue": "v"} for i in range(51)])
    assert error_code(e.value) in ("TagException", "ValidationException")
    # Two new tags still fit: accepted.
    kms.tag_resource(KeyId=md["KeyId"], Tags=tags[:1] + tags[5:7])
    assert len(tags_of(kms, md["KeyId"])) == 50


def test_untag_refused_changes_nothing(kms):
    md = kms.create_key(Tags=[{"TagKey": "a", "TagValue": "1"}, {"TagKey": "b", "TagValue": "2"}])["KeyMetadata"]
    # One bad tag key in the list: the good one is not removed either.
    for keys in (["a", "k" * 129], ["a", ""]):
        with unchanged(kms, md["KeyId"]), pytest.raises(kms.exceptions.ClientError) as e:
            kms.untag_resource(KeyId=md["KeyId"], TagKeys=keys)
        assert error_code(e.value) in ("TagException", "ValidationException")
