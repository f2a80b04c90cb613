"""Real tooling: Ansible's amazon.aws collection (bundled with the `ansible` package, tests/requirements.txt)
manages keys on `envelope serve` through boto3. `kms_key` creates a key with an alias, a description, a key
policy, rotation, tags and a grant with an encryption-context constraint; a second run of the same playbook
reports no change; `kms_key_info` lists the grants and key policies of the key. A changed playbook (a tag
more, a grant less) changes exactly that, and a key policy that is not JSON fails the task with AWS's error."""

import json
import os
import subprocess
import sys

import boto3
import pytest

from conftest import ACCOUNT, REGION, unique, venv_tool

ROLE = "ansible-app"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{ROLE}"
TRUST = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole"}]}


def key_policy(sid: str) -> dict:
    return {"Version": "2012-10-17", "Id": "ansible-key", "Statement": [
        {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": sid, "Effect": "Allow", "Principal": {"AWS": ROLE_ARN},
         "Action": ["kms:Decrypt", "kms:DescribeKey"], "Resource": "*"},
    ]}


def playbook(alias: str, *, tags: dict, grants: list, policy: str) -> list:
    key = {
        "alias": alias,
        "description": "managed by ansible",
        "enable_key_rotation": True,
        "tags": tags,
        "purge_tags": True,
        "grants": grants,
        "purge_grants": True,
        "policy": policy,
        "state": "present",
    }
    return [{
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "tasks": [
            {"name": "key", "amazon.aws.kms_key": key, "register": "key"},
            {"name": "info", "amazon.aws.kms_key_info": {"alias": alias}, "register": "info"},
            {"name": "facts", "ansible.builtin.copy": {"content": "{{ {'key': key, 'info': info} | to_json }}",
                                                       "dest": "{{ out }}"}},
        ],
    }]


GRANT = {
    "name": "app-decrypt",
    "grantee_principal": ROLE_ARN,
    "operations": ["Decrypt", "RetireGrant"],
    "constraints": {"encryption_context_equals": {"env": "prod"}},
}


@pytest.fixture(scope="module")
def run_playbook(server, tmp_path_factory):
    """Runs a playbook against `server` with its admin's credentials: (changed per task, registered facts)."""
    work = tmp_path_factory.mktemp("ansible")
    ak, sk = server.credentials
    iam = boto3.client("iam", endpoint_url=server.endpoint, region_name=REGION, aws_access_key_id=ak,
                       aws_secret_access_key=sk)
    iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps(TRUST))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ANSIBLE_"))}
    env.update(
        AWS_ACCESS_KEY_ID=ak, AWS_SECRET_ACCESS_KEY=sk, AWS_REGION=REGION, AWS_ENDPOINT_URL=server.endpoint,
        AWS_MAX_ATTEMPTS="1",
        ANSIBLE_HOME=str(work / "home"), ANSIBLE_LOCAL_TEMP=str(work / "tmp"),
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_NOCOLOR="1",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_LOCALHOST_WARNING="False",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="False",
    )
    count = 0

    def run(plays: list, *, ok: bool = True):
        nonlocal count
        count += 1
        book, out = work / f"play{count}.yml", work / f"facts{count}.json"
        book.write_text(json.dumps(plays))  # JSON is YAML
        r = subprocess.run([venv_tool("ansible-playbook"), "-i", "localhost,", "-e", f"out={out}", str(book)],
                           env=env, capture_output=True, text=True, timeout=300)
        report = json.loads(r.stdout)
        results = {t["task"]["name"]: t["hosts"]["localhost"] for t in report["plays"][0]["tasks"]}
        if not ok:
            assert r.returncode != 0, r.stdout
            return results, None
        assert r.returncode == 0, f"ansible-playbook exited {r.returncode}\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
        changed = {name: bool(res.get("changed")) for name, res in results.items() if name != "facts"}
        return changed, json.loads(out.read_text())

    return run


def test_kms_key_playbook_is_idempotent(server, run_playbook):
    kms = server.client()
    alias = unique("ansible")
    tags = {"Name": "app", "Purpose": "protect_stuff"}
    book = playbook(alias, tags=tags, grants=[GRANT], policy=json.dumps(key_policy("App")))

    changed, facts = run_playbook(book)
    assert changed == {"key": True, "info": False}
    key_id = facts["key"]["key_id"]
    # What the playbook made, read back with boto3.
    md = kms.describe_key(KeyId=f"alias/{alias}")["KeyMetadata"]
    assert md["KeyId"] == key_id and md["Description"] == "managed by ansible" and md["Enabled"]
    assert kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is True
    assert {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=key_id)["Tags"]} == tags
    assert json.loads(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"]) == key_policy("App")
    [grant] = kms.list_grants(KeyId=key_id)["Grants"]
    assert grant["Name"] == "app-decrypt" and grant["GranteePrincipal"] == ROLE_ARN
    assert sorted(grant["Operations"]) == ["Decrypt", "RetireGrant"]
    assert grant["Constraints"] == {"EncryptionContextEquals": {"env": "prod"}}
    # kms_key_info lists the grants and key policy of the key it touched.
    [info] = facts["info"]["kms_keys"]
    assert info["key_id"] == key_id and info["aliases"] == [alias]
    assert [g.get("name", g.get("Name")) for g in info["grants"]] == ["app-decrypt"]
    assert info["key_policies"] == [key_policy("App")]
    assert info["tags"] == tags

    # The same playbook again: nothing to change, and nothing changed.
    before = (kms.list_grants(KeyId=key_id)["Grants"], kms.list_aliases(KeyId=key_id)["Aliases"])
    changed, facts = run_playbook(book)
    assert changed == {"key": False, "info": False}
    assert facts["key"]["key_id"] == key_id
    assert (kms.list_grants(KeyId=key_id)["Grants"], kms.list_aliases(KeyId=key_id)["Aliases"]) == before
    assert len([k for k in kms.list_aliases()["Aliases"] if k["AliasName"] == f"alias/{alias}"]) == 1

    # A changed playbook changes exactly what changed: a tag more, the grant purged, a new policy Sid.
    tags2 = {**tags, "Owner": "security_team"}
    changed, _ = run_playbook(playbook(alias, tags=tags2, grants=[], policy=json.dumps(key_policy("App2"))))
    assert changed["key"] is True
    assert {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=key_id)["Tags"]} == tags2
    assert kms.list_grants(KeyId=key_id)["Grants"] == []
    assert json.loads(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"]) == key_policy("App2")
    changed, _ = run_playbook(playbook(alias, tags=tags2, grants=[], policy=json.dumps(key_policy("App2"))))
    assert changed == {"key": False, "info": False}


def test_kms_key_bad_policy_fails_with_awss_error(server, run_playbook):
    kms = server.client()
    alias = unique("ansible-bad")
    # Ansible checks that the policy is JSON itself; a JSON document that is not a policy reaches envelope.
    bad = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Perhaps", "Action": "kms:*"}]})
    results, _ = run_playbook(playbook(alias, tags={}, grants=[], policy=bad), ok=False)
    assert results["key"].get("failed") is True
    assert "MalformedPolicyDocumentException" in json.dumps(results["key"])
    # Nothing was made under that alias.
    assert not [a for a in kms.list_aliases()["Aliases"] if a["AliasName"] == f"alias/{alias}"]
