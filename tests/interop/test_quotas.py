"""AWS's resource quotas (LimitExceededException), lowered with `envelope serve --resource-quota` so a
test can reach them: keys per account, aliases per key. A refusal at a quota creates nothing."""

import subprocess

import pytest

from conftest import envelope_bin, error_code, start_server

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
