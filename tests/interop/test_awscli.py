"""The `aws kms` CLI (awscli v1 from the test venv) against the server, with the credentials and config
files the server wrote."""

import base64
import json
import os
import subprocess

import pytest

from conftest import unique, venv_tool


@pytest.fixture(scope="module")
def aws(server):
    exe = venv_tool("aws")
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("AWS_"):
            del env[k]
    env.update(
        AWS_SHARED_CREDENTIALS_FILE=str(server.data_dir / "credentials"),
        AWS_CONFIG_FILE=str(server.data_dir / "config"),
        AWS_PROFILE="envelope",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_MAX_ATTEMPTS="1",
        AWS_PAGER="",
    )

    def run(*args, check=True, shell=None, cwd=None):
        if shell is not None:
            r = subprocess.run(["bash", "-o", "pipefail", "-c", shell], env={**env, "AWS": exe,
                               "ENDPOINT": server.endpoint}, capture_output=True, text=True, timeout=120, cwd=cwd)
        else:
            r = subprocess.run([exe, "--endpoint-url", server.endpoint, *args], env=env, capture_output=True,
                               text=True, timeout=120, cwd=cwd)
        if check:
            assert r.returncode == 0, f"aws {args or shell} exited {r.returncode}\nstdout:{r.stdout}\nstderr:{r.stderr}"
        return r

    return run


@pytest.fixture(scope="module")
def cli_key(aws):
    out = json.loads(aws("kms", "create-key", "--description", "cli").stdout)
    md = out["KeyMetadata"]
    assert md["KeyState"] == "Enabled"
    alias = "alias/" + unique("cli")
    aws("kms", "create-alias", "--alias-name", alias, "--target-key-id", md["KeyId"])
    return md["KeyId"], md["Arn"], alias


def test_describe_and_list(aws, cli_key):
    key_id, arn, alias = cli_key
    md = json.loads(aws("kms", "describe-key", "--key-id", alias).stdout)["KeyMetadata"]
    assert md["KeyId"] == key_id and md["Arn"] == arn
    keys = json.loads(aws("kms", "list-keys").stdout)["Keys"]
    assert key_id in {k["KeyId"] for k in keys}
    aliases = json.loads(aws("kms", "list-aliases", "--key-id", key_id).stdout)["Aliases"]
    assert [a["AliasName"] for a in aliases] == [alias]


def test_encrypt_decrypt_fileb_base64_pipeline(aws, cli_key, tmp_path):
    key_id, arn, alias = cli_key
    data = os.urandom(3000)
    (tmp_path / "plain.bin").write_bytes(data)
    aws(shell='"$AWS" --endpoint-url "$ENDPOINT" kms encrypt --key-id ' + alias +
        ' --plaintext fileb://plain.bin --output text --query CiphertextBlob | base64 -d > blob.bin', cwd=tmp_path)
    blob = (tmp_path / "blob.bin").read_bytes()
    assert len(blob) > len(data) and data not in blob
    aws(shell='"$AWS" --endpoint-url "$ENDPOINT" kms decrypt --ciphertext-blob fileb://blob.bin'
        ' --output text --query Plaintext | base64 -d > out.bin', cwd=tmp_path)
    assert (tmp_path / "out.bin").read_bytes() == data


def test_encrypt_decrypt_json_output(aws, cli_key, tmp_path):
    key_id, arn, alias = cli_key
    (tmp_path / "p").write_bytes(b"hello from the cli")
    enc = json.loads(aws("kms", "encrypt", "--key-id", key_id, "--plaintext", f"fileb://{tmp_path}/p").stdout)
    assert enc["KeyId"] == arn
    assert enc["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    (tmp_path / "b").write_bytes(base64.b64decode(enc["CiphertextBlob"]))
    dec = json.loads(aws("kms", "decrypt", "--ciphertext-blob", f"fileb://{tmp_path}/b", "--key-id", arn).stdout)
    assert dec["KeyId"] == arn
    assert base64.b64decode(dec["Plaintext"]) == b"hello from the cli"


def test_encryption_context(aws, cli_key, tmp_path):
    key_id, arn, alias = cli_key
    (tmp_path / "p").write_bytes(b"bound")
    blob64 = aws("kms", "encrypt", "--key-id", alias, "--plaintext", f"fileb://{tmp_path}/p",
                 "--encryption-context", "purpose=test,app=envelope",
                 "--output", "text", "--query", "CiphertextBlob").stdout.strip()
    (tmp_path / "b").write_bytes(base64.b64decode(blob64))
    out = aws("kms", "decrypt", "--ciphertext-blob", f"fileb://{tmp_path}/b",
              "--encryption-context", '{"app":"envelope","purpose":"test"}',
              "--output", "text", "--query", "Plaintext").stdout.strip()
    assert base64.b64decode(out) == b"bound"
    r = aws("kms", "decrypt", "--ciphertext-blob", f"fileb://{tmp_path}/b", check=False)
    assert r.returncode != 0
    assert "InvalidCiphertextException" in r.stderr, r.stderr
    r = aws("kms", "decrypt", "--ciphertext-blob", f"fileb://{tmp_path}/b",
            "--encryption-context", "purpose=other,app=envelope", check=False)
    assert r.returncode != 0
    assert "InvalidCiphertextException" in r.stderr, r.stderr


@pytest.mark.parametrize("spec_args,size", [(["--key-spec", "AES_256"], 32), (["--key-spec", "AES_128"], 16),
                                            (["--number-of-bytes", "48"], 48)])
def test_generate_data_key_round_trip(aws, cli_key, tmp_path, spec_args, size):
    key_id, arn, alias = cli_key
    out = json.loads(aws("kms", "generate-data-key", "--key-id", alias, *spec_args,
                         "--encryption-context", "bucket=b1").stdout)
    assert out["KeyId"] == arn
    plain = base64.b64decode(out["Plaintext"])
    assert len(plain) == size
    (tmp_path / "dk").write_bytes(base64.b64decode(out["CiphertextBlob"]))
    back = aws("kms", "decrypt", "--ciphertext-blob", f"fileb://{tmp_path}/dk", "--encryption-context", "bucket=b1",
               "--output", "text", "--query", "Plaintext").stdout.strip()
    assert base64.b64decode(back) == plain


def test_generate_data_key_without_plaintext_and_random(aws, cli_key, tmp_path):
    key_id, arn, alias = cli_key
    out = json.loads(aws("kms", "generate-data-key-without-plaintext", "--key-id", key_id,
                         "--key-spec", "AES_256").stdout)
    assert "Plaintext" not in out
    (tmp_path / "dk").write_bytes(base64.b64decode(out["CiphertextBlob"]))
    back = aws("kms", "decrypt", "--ciphertext-blob", f"fileb://{tmp_path}/dk", "--output", "text",
               "--query", "Plaintext").stdout.strip()
    assert len(base64.b64decode(back)) == 32
    rnd = aws("kms", "generate-random", "--number-of-bytes", "64", "--output", "text",
              "--query", "Plaintext").stdout.strip()
    assert len(base64.b64decode(rnd)) == 64


def test_cli_error_for_unknown_key(aws, tmp_path):
    (tmp_path / "p").write_bytes(b"x")
    r = aws("kms", "encrypt", "--key-id", "alias/not-there", "--plaintext", f"fileb://{tmp_path}/p", check=False)
    assert r.returncode != 0
    assert "NotFoundException" in r.stderr, r.stderr
