"""`envelope principal create|list|delete` while the server runs."""

import base64
import json
import os
import secrets
import subprocess
import time

import pytest

from conftest import ACCOUNT, envelope_bin, kms_client


def principal(server, *args, stdin=None, check=True):
    env = dict(os.environ)
    env.pop("ENVELOPE_ROOT_KEY", None)
    env.pop("ENVELOPE_DATA_DIR", None)
    r = subprocess.run([envelope_bin(), "principal", *args, "--data-dir", str(server.data_dir)],
                       input=stdin, capture_output=True, text=True, timeout=60, env=env)
    if check:
        assert r.returncode == 0, f"envelope principal {args} exited {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def works(server, ak, sk):
    kms = kms_client(server.endpoint, ak, sk)
    assert len(kms.generate_random(NumberOfBytes=8)["Plaintext"]) == 8
    kms.list_keys(Limit=1)
    return kms


def wait_until_refused(server, ak, sk, timeout=8.0):
    kms = kms_client(server.endpoint, ak, sk)
    deadline = time.monotonic() + timeout
    while True:
        try:
            kms.list_keys(Limit=1)
        except kms.exceptions.ClientError as e:
            assert e.response["Error"]["Code"] == "UnrecognizedClientException", e.response
            return time.monotonic()
        assert time.monotonic() < deadline, f"deleted principal {ak} still accepted after {timeout}s"
        time.sleep(0.25)


def test_create_generated_credentials_work_at_once(server):
    r = principal(server, "create", "alice", "--admin")
    out = json.loads(r.stdout)
    assert out["UserName"] == "alice"
    assert out["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/alice"
    assert out["AccessKeyId"]
    assert out["SecretAccessKey"]
    works(server, out["AccessKeyId"], out["SecretAccessKey"])
    assert out["SecretAccessKey"] not in r.stderr


def test_create_adopted_key_from_stdin(server):
    # An AWS-shaped secret: 40 characters of AWS's secret-key alphabet (base64's).
    sk = base64.b64encode(secrets.token_bytes(30)).decode()
    r = principal(server, "create", "bob", "--admin", "--access-key-id", "AKIAEXAMPLEBOB00001", "--secret-key-file", "-",
                  stdin=sk + "\n")
    out = json.loads(r.stdout)
    assert out["UserName"] == "bob"
    assert out["AccessKeyId"] == "AKIAEXAMPLEBOB00001"
    assert out["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/bob"
    assert not out.get("SecretAccessKey"), "an adopted secret must not be printed"
    assert sk not in r.stdout and sk not in r.stderr
    works(server, "AKIAEXAMPLEBOB00001", sk)
    # The wrong secret for the adopted key id is refused.
    kms = kms_client(server.endpoint, "AKIAEXAMPLEBOB00001", sk[::-1])
    with pytest.raises(kms.exceptions.ClientError) as e:
        kms.list_keys()
    assert e.value.response["Error"]["Code"] == "InvalidSignatureException"


def test_create_adopted_key_from_file(server, tmp_path):
    sk = secrets.token_hex(20)
    f = tmp_path / "secret"
    f.write_text(sk)
    f.chmod(0o600)
    r = principal(server, "create", "carol", "--admin", "--access-key-id", "AKIAEXAMPLECAROL0001", "--secret-key-file", str(f))
    assert json.loads(r.stdout)["AccessKeyId"] == "AKIAEXAMPLECAROL0001"
    works(server, "AKIAEXAMPLECAROL0001", sk)


@pytest.mark.parametrize("weak", ["x", "secret", "a" * 39, "a" * 39 + "-"])
def test_create_adopted_weak_secret_is_refused(server, weak):
    r = principal(server, "create", "weak", "--access-key-id", "AKIAEXAMPLEWEAK00001", "--secret-key-file", "-",
                  stdin=weak + "\n", check=False)
    assert r.returncode != 0
    names = {p["UserName"] for p in json.loads(principal(server, "list").stdout)["Principals"]}
    assert "weak" not in names


def test_list(server):
    principal(server, "create", "dave")
    out = json.loads(principal(server, "list").stdout)
    names = {p["UserName"]: p for p in out["Principals"]}
    assert "admin" in names and "dave" in names
    assert names["admin"]["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/admin"
    assert names["admin"]["AccessKeyId"] == server.credentials[0]
    for p in out["Principals"]:
        assert "SecretAccessKey" not in p
        assert "CreateDate" in p


def test_delete_is_refused_within_cache_ttl(server):
    out = json.loads(principal(server, "create", "erin", "--admin").stdout)
    ak, sk = out["AccessKeyId"], out["SecretAccessKey"]
    works(server, ak, sk)
    t0 = time.monotonic()
    principal(server, "delete", "erin")
    t1 = wait_until_refused(server, ak, sk)
    assert t1 - t0 < 7.0
    names = {p["UserName"] for p in json.loads(principal(server, "list").stdout)["Principals"]}
    assert "erin" not in names
    # The admin is unaffected.
    server.client().list_keys(Limit=1)


def test_create_duplicate_name_fails(server):
    principal(server, "create", "frank")
    r = principal(server, "create", "frank", check=False)
    assert r.returncode != 0


def test_delete_unknown_fails(server):
    r = principal(server, "delete", "nobody-by-this-name", check=False)
    assert r.returncode != 0
