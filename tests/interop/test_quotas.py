"""AWS's resource quotas (LimitExceededException), lowered with `envelope serve --resource-quota` so a
test can reach them: keys per account, aliases per key. A refusal at a quota creates nothing, and a
quota holds when many calls race for its last places, on both stores (IAM's fixed quotas too:
access keys per user, managed policies per user, the size of a user's inline policies)."""

import json
import subprocess

import pytest

from conftest import STORES, envelope_bin, error_code, iam_client, race, start_server, unique

KEYS = 3
ALIASES_PER_KEY = 2


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    s = start_server(tmp_path_factory, extra_args=[
        "--resource-quota", f"keys={KEYS}", "--resource-quota", f"aliases-per-key={ALIASES_PER_KEY}"])
    yield s
    s.stop()


def test_keys_per_account(small):
    kms = small.client()
    have = len(kms.list_keys()["Keys"])
    for _ in range(KEYS - have):
        kms.create_key()
    with pytest.raises(kms.exceptions.LimitExceededException):
        kms.create_key(Description="one too many")
    assert len(kms.list_keys()["Keys"]) == KEYS


def test_aliases_per_key(small):
    kms = small.client()
    a, b = [k["KeyId"] for k in kms.list_keys()["Keys"][:2]]
    for i in range(ALIASES_PER_KEY):
        kms.create_alias(AliasName=f"alias/a{i}", TargetKeyId=a)
    kms.create_alias(AliasName="alias/b0", TargetKeyId=b)
    with pytest.raises(kms.exceptions.LimitExceededException):
        kms.create_alias(AliasName="alias/a-extra", TargetKeyId=a)
    # A name already taken is AlreadyExists first, as without the quota.
    with pytest.raises(kms.exceptions.AlreadyExistsException):
        kms.create_alias(AliasName="alias/a0", TargetKeyId=a)
    # Repointing an alias at a key that is full is refused too, and leaves the alias where it was.
    with pytest.raises(kms.exceptions.ClientError) as e:
        kms.update_alias(AliasName="alias/b0", TargetKeyId=a)
    assert error_code(e.value) == "LimitExceededException"
    aliases = {x["AliasName"]: x.get("TargetKeyId") for x in kms.list_aliases()["Aliases"]}
    assert aliases == {"alias/a0": a, "alias/a1": a, "alias/b0": b}
    # An alias already on the key may be pointed at it again.
    kms.update_alias(AliasName="alias/a0", TargetKeyId=a)


def test_a_quota_must_be_known_and_a_count(tmp_path_factory):
    for bad in ("grants=5", "keys=-1", "keys"):
        r = subprocess.run([envelope_bin(), "serve", "--resource-quota", bad], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode != 0 and "--resource-quota" in r.stderr, (bad, r.stderr)


# -- a quota under concurrent calls -----------------------------------------------------------------

RACERS = 16


@pytest.fixture(scope="module", params=STORES)
def racing(request, tmp_path_factory):
    s = start_server(tmp_path_factory, request.param, extra_args=[
        "--resource-quota", f"keys={KEYS}", "--resource-quota", f"aliases-per-key={ALIASES_PER_KEY}"])
    yield s
    s.stop()


def race_all(clients, call) -> list[str]:
    """call(client, i) for every client at once: the outcomes, sorted."""
    return sorted(race([lambda c=c, i=i: call(c, i) for i, c in enumerate(clients)]))


def test_racing_creates_stop_at_the_key_quota(racing):
    kms = racing.client()
    left = KEYS - len(kms.list_keys()["Keys"])
    outcomes = race_all([racing.client() for _ in range(RACERS)], lambda c, i: c.create_key(Description=f"racer {i}"))
    assert outcomes == ["LimitExceededException"] * (RACERS - left) + ["ok"] * left
    assert len(kms.list_keys()["Keys"]) == KEYS


def test_racing_aliases_stop_at_the_quota_of_their_key(racing):
    kms = racing.client()
    keys = kms.list_keys()["Keys"]
    key = keys[0]["KeyId"] if keys else kms.create_key()["KeyMetadata"]["KeyId"]
    left = ALIASES_PER_KEY - len(kms.list_aliases(KeyId=key)["Aliases"])
    outcomes = race_all([racing.client() for _ in range(RACERS)],
                    lambda c, i: c.create_alias(AliasName=f"alias/{unique('race')}", TargetKeyId=key))
    assert outcomes == ["LimitExceededException"] * (RACERS - left) + ["ok"] * left
    assert len(kms.list_aliases(KeyId=key)["Aliases"]) == ALIASES_PER_KEY


def test_racing_access_keys_stop_at_two_per_user(racing):
    iam = iam_client(racing)
    name = unique("racer")
    iam.create_user(UserName=name)
    outcomes = race_all([iam_client(racing) for _ in range(RACERS)], lambda c, i: c.create_access_key(UserName=name))
    assert outcomes == ["LimitExceeded"] * (RACERS - 2) + ["ok"] * 2
    assert len(iam.list_access_keys(UserName=name)["AccessKeyMetadata"]) == 2


def test_racing_attachments_stop_at_ten_per_user(racing):
    iam = iam_client(racing)
    name = unique("racer")
    iam.create_user(UserName=name)
    doc = json.dumps({"Version": "2012-10-17",
                      "Statement": [{"Effect": "Allow", "Action": "kms:DescribeKey", "Resource": "*"}]})
    arns = [iam.create_policy(PolicyName=unique("p"), PolicyDocument=doc)["Policy"]["Arn"] for _ in range(RACERS)]
    outcomes = race_all([iam_client(racing) for _ in range(RACERS)],
                    lambda c, i: c.attach_user_policy(UserName=name, PolicyArn=arns[i]))
    assert outcomes == ["LimitExceeded"] * (RACERS - 10) + ["ok"] * 10
    assert len(iam.list_attached_user_policies(UserName=name)["AttachedPolicies"]) == 10


def test_racing_inline_policies_stop_at_the_size_quota_of_their_user(racing):
    """A user's inline policies may hold 2,048 characters, whitespace not counted: 600 each fit three
    times, whichever three calls win."""
    iam = iam_client(racing)
    name = unique("racer")
    iam.create_user(UserName=name)
    doc = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "kms:DescribeKey", "Resource": "*", "Sid": "x" * 600}]}, separators=(",", ":"))
    doc = doc.replace("x" * 600, "x" * (600 - (len(doc) - 600)))
    assert len(doc) == 600
    outcomes = race_all([iam_client(racing) for _ in range(RACERS)],
                    lambda c, i: c.put_user_policy(UserName=name, PolicyName=f"p{i}", PolicyDocument=doc))
    assert outcomes == ["LimitExceeded"] * (RACERS - 3) + ["ok"] * 3
    assert len(iam.list_user_policies(UserName=name)["PolicyNames"]) == 3
