"""`envelope s3 cp|head` against a real S3-compatible store (Garage, from scripts/test's ENVELOPE_TEST_S3_*),
with envelope's own KMS endpoint for CSE-KMS and the official S3 Encryption Client for Python (S3EC_PYTHON).

One set of credentials serves both: the Garage key is adopted as an envelope principal, and the server runs
in Garage's region, so `--region` and the default credential chain work for S3 and KMS alike, as on AWS.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from urllib.parse import urlsplit
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

import secrets_scan
from conftest import envelope_bin, start_server

MIB = 1 << 20


def s3_env() -> dict[str, str]:
    names = ["ENDPOINT", "REGION", "ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "BUCKET"]
    got = {n: os.environ.get(f"ENVELOPE_TEST_S3_{n}", "") for n in names}
    missing = [n for n, v in got.items() if not v]
    if missing:
        msg = f"ENVELOPE_TEST_S3_{missing[0]} is not set (scripts/test starts Garage)"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {msg}")
        pytest.skip(msg)
    return got


@pytest.fixture(scope="module")
def store():
    return s3_env()


@pytest.fixture(scope="module")
def s3(store):
    return boto3.client(
        "s3", endpoint_url=store["ENDPOINT"], region_name=store["REGION"],
        aws_access_key_id=store["ACCESS_KEY_ID"], aws_secret_access_key=store["SECRET_ACCESS_KEY"],
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def kms_server(store, tmp_path_factory):
    """envelope serve in Garage's region, with Garage's access key adopted as a principal."""
    server = start_server(tmp_path_factory, extra_args=["--region", store["REGION"]])
    secret = server.data_dir.parent / "garage-secret"
    secret.write_text(store["SECRET_ACCESS_KEY"])
    p = subprocess.run(
        [envelope_bin(), "principal", "create", "garage", "--admin", "--access-key-id", store["ACCESS_KEY_ID"],
         "--secret-key-file", str(secret), "--data-dir", str(server.data_dir), "--region", store["REGION"]],
        capture_output=True, text=True, timeout=60, env=server.env,
    )
    assert p.returncode == 0, p.stderr
    yield server
    server.stop()


@pytest.fixture(scope="module")
def kms_key(store, kms_server):
    kms = boto3.client(
        "kms", endpoint_url=kms_server.endpoint, region_name=store["REGION"],
        aws_access_key_id=store["ACCESS_KEY_ID"], aws_secret_access_key=store["SECRET_ACCESS_KEY"],
    )
    # The principal cache of a running server may take a moment to see the new principal.
    for _ in range(100):
        try:
            return kms.create_key()["KeyMetadata"]["Arn"]
        except Exception:  # noqa: BLE001 - retried until the principal is visible
            time.sleep(0.1)
    return kms.create_key()["KeyMetadata"]["Arn"]


@pytest.fixture(scope="module")
def env(store, kms_server):
    e = dict(os.environ)
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_KMS",
                "ENVELOPE_TEST_CORRUPT_PUTS", "ENVELOPE_TEST_LOSE_ANSWERS", "ENVELOPE_TEST_WRONG_ETAGS",
                "ENVELOPE_TEST_FAIL_HEADS_AFTER"):
        e.pop(var, None)
    e.update(AWS_ACCESS_KEY_ID=store["ACCESS_KEY_ID"], AWS_SECRET_ACCESS_KEY=store["SECRET_ACCESS_KEY"],
             AWS_REGION=store["REGION"], AWS_EC2_METADATA_DISABLED="true",
             AWS_ENDPOINT_URL_KMS=kms_server.endpoint)
    return e


def url(store, key: str) -> str:
    return f"s3://{store['BUCKET']}/{key}"


def fresh_key(name: str) -> str:
    return f"cli-test/{name}-{uuid.uuid4().hex[:10]}"


def conn(store) -> list[str]:
    return ["--endpoint-url", store["ENDPOINT"], "--path-style"]


def envelope(args, env, *, ok=True, input=None, timeout=300):
    p = subprocess.run([envelope_bin(), *args], env=env, capture_output=True, input=input, timeout=timeout)
    if ok:
        assert p.returncode == 0, p.stderr.decode()
    return p


def data_of(n: int) -> bytes:
    return bytes((i * 7 + 3) % 256 for i in range(min(n, 1 << 16))) * (n >> 16) + \
        bytes((i * 7 + 3) % 256 for i in range(n & 0xFFFF))


def no_uploads_left(s3, bucket: str, key: str):
    uploads = s3.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", [])
    assert uploads == [], uploads
    with pytest.raises(s3.exceptions.ClientError):
        s3.head_object(Bucket=bucket, Key=key)


@pytest.mark.parametrize("fmt,size", [("v3", 0), ("v3", 1), ("v3", 17 * MIB + 3), ("v2", 0), ("v2", 1),
                                      ("v2", 17 * MIB + 3)])
def test_cp_up_and_down_with_kms(store, s3, env, kms_key, tmp_path, fmt, size):
    plain = tmp_path / "plain"
    plain.write_bytes(data_of(size))
    key = fresh_key(f"{fmt}-{size}")
    envelope(["s3", "cp", str(plain), url(store, key), "--key", kms_key, "--format", fmt,
              "--context", "app=cli", "--part-size", "5MiB", "--concurrency", "3", "-q", *conn(store)], env)
    head = s3.head_object(Bucket=store["BUCKET"], Key=key)
    meta = head["Metadata"]
    assert ("x-amz-c" in meta) == (fmt == "v3") and ("x-amz-key-v2" in meta) == (fmt == "v2"), meta
    assert head["ContentLength"] == size + 16
    assert head["ETag"].endswith('-4"') == (size > 5 * MIB), head["ETag"]
    out = tmp_path / "out"
    extra = ["--allow-non-committing"] if fmt == "v2" else []
    envelope(["s3", "cp", url(store, key), str(out), "--key", kms_key, "--context", "app=cli", "-q",
              *extra, *conn(store)], env)
    assert out.read_bytes() == plain.read_bytes()
    if fmt == "v2":
        # V2 does not commit to its key: reading it is an explicit opt-in, as in the official clients.
        out2 = tmp_path / "refused"
        p = envelope(["s3", "cp", url(store, key), str(out2), "--key", kms_key, "--context", "app=cli",
                      *conn(store)], env, ok=False)
        assert p.returncode == 1 and b"commit" in p.stderr.lower(), p.stderr
        assert not out2.exists()


@pytest.mark.parametrize("fmt", ["v3", "v2", "framed"])
def test_download_with_discovery(store, env, kms_key, tmp_path, fmt):
    """--discovery on a download, as `envelope decrypt --discovery`: the KMS key is the one the object's
    KMS ciphertext names (CSE-KMS V3 and V2, and framed), --range works the same way on a framed object,
    and --discovery-account limits the keys to some accounts."""
    plain = tmp_path / "plain"
    plain.write_bytes(data_of(3 * 65536 + 100))
    key = fresh_key(f"discovery-{fmt}")
    envelope(["s3", "cp", str(plain), url(store, key), "--key", kms_key, "--format", fmt,
              "--context", "app=cli", "-q", *conn(store)], env)
    partition, account = kms_key.split(":")[1], kms_key.split(":")[4]
    extra = ["--allow-non-committing"] if fmt == "v2" else []
    down = ["s3", "cp", url(store, key), "--context", "app=cli", "-q", *extra, *conn(store)]
    out = tmp_path / "out"
    envelope([*down, str(out), "--discovery"], env)
    assert out.read_bytes() == plain.read_bytes()
    mine = tmp_path / "mine"
    envelope([*down, str(mine), "--discovery", "--discovery-account", account,
              "--discovery-partition", partition], env)
    assert mine.read_bytes() == plain.read_bytes()
    if fmt == "framed":
        part = tmp_path / "range"
        envelope([*down, str(part), "--discovery", "--range", "70000-70099"], env)
        assert part.read_bytes() == plain.read_bytes()[70000:70100]
    # Keys of another account only: refused, and no output file.
    other = "999999999999" if account != "999999999999" else "888888888888"
    refused = tmp_path / "refused"
    p = envelope([*down, str(refused), "--discovery", "--discovery-account", other], env, ok=False)
    assert p.returncode == 1, p.stderr
    # V3 and V2: KMS decrypts, and the key it answers with is outside the filter; framed: no encrypted
    # data key passes the filter, so none is tried.
    want = b"no keyring could decrypt" if fmt == "framed" else b"which the discovery filter does not allow"
    assert want in p.stderr, p.stderr
    assert not refused.exists()


@pytest.fixture(scope="module")
def kms(store, kms_server, kms_key):
    return boto3.client(
        "kms", endpoint_url=kms_server.endpoint, region_name=store["REGION"],
        aws_access_key_id=store["ACCESS_KEY_ID"], aws_secret_access_key=store["SECRET_ACCESS_KEY"],
    )


@pytest.mark.parametrize("fmt", ["v3", "v2", "framed"])
def test_download_key_is_strict_for_arns_and_aliases(store, env, kms, kms_key, tmp_path, fmt):
    """--key on a download names the one key allowed: an alias is resolved to its key ARN first, so an object
    wrapped under another key the caller may also use (a substitution by whoever can write to the bucket) is
    refused, named by ARN or by alias, with no output file."""
    suffix = uuid.uuid4().hex[:10]
    mine, other = f"alias/mine-{fmt}-{suffix}", f"alias/other-{fmt}-{suffix}"
    other_arn = kms.create_key()["KeyMetadata"]["Arn"]
    kms.create_alias(AliasName=mine, TargetKeyId=kms_key)
    kms.create_alias(AliasName=other, TargetKeyId=other_arn)
    plain = tmp_path / "plain"
    plain.write_bytes(data_of(2 * 65536 + 7))
    key = fresh_key(f"strict-{fmt}")
    envelope(["s3", "cp", str(plain), url(store, key), "--key", kms_key, "--format", fmt, "-q", *conn(store)], env)
    extra = ["--allow-non-committing"] if fmt == "v2" else []
    down = ["s3", "cp", url(store, key), "-q", *extra, *conn(store)]
    for ok in (kms_key, mine, mine.replace("alias/", f"arn:aws:kms:{store['REGION']}:{kms_key.split(':')[4]}:alias/")):
        out = tmp_path / "out"
        envelope([*down, str(out), "--key", ok, "--force"], env)
        assert out.read_bytes() == plain.read_bytes(), ok
    for bad in (other_arn, other):
        refused = tmp_path / "refused"
        p = envelope([*down, str(refused), "--key", bad], env, ok=False)
        assert p.returncode == 1, p.stderr
        want = b"no keyring could decrypt" if fmt == "framed" else b"KMS refused"
        assert want in p.stderr, (bad, p.stderr)
        assert not refused.exists(), bad


def test_stdin_to_s3_and_s3_to_stdout(store, env, kms_key):
    data = os.urandom(11 * MIB + 5)  # three parts of 5 MiB, length unknown to the uploader
    key = fresh_key("stdin")
    envelope(["s3", "cp", "-", url(store, key), "--key", kms_key, "--part-size", "5MiB", "-q", *conn(store)],
             env, input=data)
    p = envelope(["s3", "cp", url(store, key), "-", "--key", kms_key, "-q", *conn(store)], env)
    assert p.stdout == data
    # And a small one (a single PutObject).
    key = fresh_key("stdin-small")
    envelope(["s3", "cp", "-", url(store, key), "--key", kms_key, *conn(store)], env, input=b"tiny")
    assert envelope(["s3", "cp", url(store, key), "-", "--key", kms_key, *conn(store)], env).stdout == b"tiny"


def test_endpoint_from_aws_endpoint_url_s3_and_head_json(store, env, kms_key, tmp_path):
    e = dict(env, AWS_ENDPOINT_URL_S3=store["ENDPOINT"])
    key = fresh_key("head")
    src = tmp_path / "p"
    src.write_bytes(b"metadata only")
    envelope(["s3", "cp", str(src), url(store, key), "--key", kms_key, "--context", "team=storage",
              "--path-style", "-q"], e)
    info = json.loads(envelope(["s3", "head", url(store, key), "--path-style"], e).stdout)
    cs = info["client_side"]
    assert cs["format"] == "s3ec-v3" and cs["wrapping_algorithm"] == "kms+context", info
    assert cs["encryption_context"]["team"] == "storage"
    # kms+context objects do not name their KMS key (it is inside the KMS ciphertext blob), so head has none.
    assert cs["kms_key_id"] is None
    assert info["content_length"] == len(b"metadata only") + 16
    assert "x-amz-3" in info["user_metadata"]
    # A wrong endpoint in AWS_ENDPOINT_URL loses to AWS_ENDPOINT_URL_S3, and --endpoint-url beats both.
    e2 = dict(e, AWS_ENDPOINT_URL="http://127.0.0.1:9", AWS_ENDPOINT_URL_S3="http://127.0.0.1:9")
    envelope(["s3", "head", url(store, key), *conn(store)], e2)


def test_local_file_is_not_overwritten_without_force(store, env, kms_key, tmp_path):
    key = fresh_key("force")
    src = tmp_path / "p"
    src.write_bytes(b"new contents")
    envelope(["s3", "cp", str(src), url(store, key), "--key", kms_key, "-q", *conn(store)], env)
    dest = tmp_path / "existing"
    dest.write_bytes(b"keep me")
    p = envelope(["s3", "cp", url(store, key), str(dest), "--key", kms_key, *conn(store)], env, ok=False)
    assert p.returncode == 1 and b"--force" in p.stderr
    assert dest.read_bytes() == b"keep me"
    envelope(["s3", "cp", url(store, key), str(dest), "--key", kms_key, "--force", "-q", *conn(store)], env)
    assert dest.read_bytes() == b"new contents"


def test_wrong_content_md5_is_rejected_by_the_store_and_reported(store, s3, env, kms_key, tmp_path):
    src = tmp_path / "p"
    src.write_bytes(os.urandom(1000))
    key = fresh_key("bad-digest")
    # Debug builds damage the first N bodies after computing their Content-MD5 (a test hook).
    p = envelope(["s3", "cp", str(src), url(store, key), "--key", kms_key, *conn(store)],
                 dict(env, ENVELOPE_TEST_CORRUPT_PUTS="100"), ok=False)
    err = p.stderr.decode()
    assert p.returncode == 1 and "BadDigest" in err and "Content-MD5" in err, err
    no_uploads_left(s3, store["BUCKET"], key)
    # Multipart: the same, and the upload is aborted.
    src.write_bytes(os.urandom(6 * MIB))
    key = fresh_key("bad-digest-multipart")
    p = envelope(["s3", "cp", str(src), url(store, key), "--key", kms_key, "--part-size", "5MiB",
                  *conn(store)], dict(env, ENVELOPE_TEST_CORRUPT_PUTS="100"), ok=False)
    assert p.returncode == 1 and b"BadDigest" in p.stderr, p.stderr
    no_uploads_left(s3, store["BUCKET"], key)
    # Damaged once only: retried, and it goes through.
    key = fresh_key("bad-digest-once")
    envelope(["s3", "cp", str(src), url(store, key), "--key", kms_key, "--part-size", "5MiB", "-q",
              *conn(store)], dict(env, ENVELOPE_TEST_CORRUPT_PUTS="1"))
    out = tmp_path / "out"
    envelope(["s3", "cp", url(store, key), str(out), "--key", kms_key, "-q", *conn(store)], env)
    assert out.read_bytes() == src.read_bytes()


@pytest.mark.parametrize("fmt", ["v3", "framed"])
def test_ctrl_c_aborts_the_upload_and_leaves_no_parts(store, s3, env, kms_key, fmt):
    key = fresh_key(f"interrupted-{fmt}")
    proc = subprocess.Popen(
        [envelope_bin(), "s3", "cp", "-", url(store, key), "--key", kms_key, "--part-size", "5MiB",
         "--format", fmt, *conn(store)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        proc.stdin.write(os.urandom(12 * MIB))
        proc.stdin.flush()
        # Wait until parts are in the store; stdin stays open, as a pipeline that is still producing.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            uploads = s3.list_multipart_uploads(Bucket=store["BUCKET"], Prefix=key).get("Uploads", [])
            if uploads and s3.list_parts(Bucket=store["BUCKET"], Key=key,
                                         UploadId=uploads[0]["UploadId"]).get("Parts"):
                break
            time.sleep(0.1)
        else:
            pytest.fail("no part reached the store")
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
    err = proc.stderr.read().decode()
    assert rc == 130, err
    assert "aborted" in err, err
    no_uploads_left(s3, store["BUCKET"], key)


@pytest.mark.parametrize("what", ["body", "metadata"])
def test_tampered_object_fails_with_no_output_file(store, s3, env, kms_key, tmp_path, what):
    src = tmp_path / "p"
    src.write_bytes(os.urandom(200_000))
    key = fresh_key(f"tampered-{what}")
    envelope(["s3", "cp", str(src), url(store, key), "--key", kms_key, "-q", *conn(store)], env)
    obj = s3.get_object(Bucket=store["BUCKET"], Key=key)
    body, meta = bytearray(obj["Body"].read()), obj["Metadata"]
    if what == "body":
        body[1000] ^= 1
    else:
        meta["x-amz-i"] = base64.b64encode(os.urandom(28)).decode()  # another message id
    s3.put_object(Bucket=store["BUCKET"], Key=key, Body=bytes(body), Metadata=meta)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "plain"
    p = envelope(["s3", "cp", url(store, key), str(out), "--key", kms_key, *conn(store)], env, ok=False)
    err = p.stderr.decode()
    assert p.returncode == 1 and "no output written" in err, err
    assert ("tampered" if what == "body" else "commitment") in err.lower(), err
    assert list(out_dir.iterdir()) == []  # no output file, no temporary file left


def test_sse_c_round_trip_and_no_read_without_the_key(store, s3, env, kms_key, tmp_path):
    sse_key = tmp_path / "sse-c.key"
    raw_sse_key = os.urandom(32)
    secrets_scan.add(raw_sse_key, "SSE-C key")
    sse_key.write_bytes(base64.b64encode(raw_sse_key))
    src = tmp_path / "p"
    src.write_bytes(os.urandom(6 * MIB))
    key = fresh_key("sse-c")
    envelope(["s3", "cp", str(src), url(store, key), "--key", kms_key, "--sse", "c", "--sse-c-key-file",
              str(sse_key), "--part-size", "5MiB", "-q", *conn(store)], env)
    with pytest.raises(s3.exceptions.ClientError):
        s3.get_object(Bucket=store["BUCKET"], Key=key)
    out = tmp_path / "out"
    p = envelope(["s3", "cp", url(store, key), str(out), "--key", kms_key, *conn(store)], env, ok=False)
    assert p.returncode == 1 and not out.exists()
    envelope(["s3", "cp", url(store, key), str(out), "--key", kms_key, "--sse-c-key-file", str(sse_key), "-q",
              *conn(store)], env)
    assert out.read_bytes() == src.read_bytes()
    info = json.loads(envelope(["s3", "head", url(store, key), "--sse-c-key-file", str(sse_key),
                                *conn(store)], env).stdout)
    assert info["server_side"]["sse_c_algorithm"] == "AES256", info
    assert info["client_side"]["format"] == "s3ec-v3"
    # The key is in no output, even at trace level (the AWS SDK's signer prints request headers
    # there, the customer key among them, unless capped).
    raw = base64.b64decode(sse_key.read_bytes())
    assert base64.b64encode(raw) not in p.stderr
    for level in ("trace", "5"):
        t = envelope(["s3", "cp", url(store, key), str(tmp_path / f"out-{level}"), "--key", kms_key,
                      "--sse-c-key-file", str(sse_key), *conn(store)], dict(env, ENVELOPE_LOG=level))
        assert b"aws_smithy" in t.stderr or b"TRACE" in t.stderr, level  # trace output was on
        assert base64.b64encode(raw) not in t.stderr, level


OFFICIAL = r"""
import hashlib, json, os, sys
import boto3
from botocore.config import Config
from s3_encryption import S3EncryptionClient, S3EncryptionClientConfig
from s3_encryption.materials.kms_keyring import KmsKeyring
from s3_encryption.materials.materials import AlgorithmSuite, CommitmentPolicy

req = json.load(sys.stdin)
e = os.environ
s3 = boto3.client("s3", endpoint_url=req["s3"], region_name=e["AWS_REGION"],
                  config=Config(s3={"addressing_style": "path"}))
kms = boto3.client("kms", endpoint_url=req["kms"], region_name=e["AWS_REGION"])
v2 = req["format"] == "v2"
config = S3EncryptionClientConfig(
    keyring=KmsKeyring(kms_client=kms, kms_key_id=req["key_id"]),
    encryption_algorithm=AlgorithmSuite.ALG_AES_256_GCM_IV12_TAG16_NO_KDF if v2
    else AlgorithmSuite.ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
    commitment_policy=CommitmentPolicy.FORBID_ENCRYPT_ALLOW_DECRYPT if v2
    else CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT,
)
client = S3EncryptionClient(s3, config)
ctx = {"EncryptionContext": req["context"]}
if req["op"] == "get":
    body = client.get_object(Bucket=req["bucket"], Key=req["key"], **ctx)["Body"].read()
    print(json.dumps({"sha256": hashlib.sha256(body).hexdigest(), "len": len(body)}))
else:
    data = open(req["file"], "rb").read()
    client.put_object(Bucket=req["bucket"], Key=req["key"], Body=data, **ctx)
    print(json.dumps({"ok": True}))
"""


def official(req: dict, env) -> dict:
    py = os.environ.get("S3EC_PYTHON")
    if not py:
        if os.environ.get("CI"):
            pytest.fail("CI is set but S3EC_PYTHON is not")
        pytest.skip("S3EC_PYTHON is not set")
    p = subprocess.run([py, "-c", OFFICIAL], input=json.dumps(req).encode(), env=env, capture_output=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)


@pytest.mark.parametrize("fmt", ["v3", "v2"])
def test_official_python_client_and_the_cli_with_envelope_kms(store, env, kms_key, kms_server, tmp_path, fmt):
    data = os.urandom(6 * MIB + 1)
    src = tmp_path / "p"
    src.write_bytes(data)
    base = {"s3": store["ENDPOINT"], "kms": kms_server.endpoint, "bucket": store["BUCKET"], "key_id": kms_key,
            "format": fmt, "context": {"pipeline": "interop"}}
    # The CLI writes (multipart, two parts), the official client reads.
    key = fresh_key(f"cli-to-official-{fmt}")
    envelope(["s3", "cp", str(src), url(store, key), "--key", kms_key, "--format", fmt, "--context",
              "pipeline=interop", "--part-size", "5MiB", "-q", *conn(store)], env)
    got = official(dict(base, op="get", key=key), env)
    assert got == {"sha256": hashlib.sha256(data).hexdigest(), "len": len(data)}
    # The official client writes, the CLI reads.
    key = fresh_key(f"official-to-cli-{fmt}")
    official(dict(base, op="put", key=key, file=str(src)), env)
    out = tmp_path / "out"
    extra = ["--allow-non-committing"] if fmt == "v2" else []
    envelope(["s3", "cp", url(store, key), str(out), "--key", kms_key, "--context", "pipeline=interop", "-q",
              *extra, *conn(store)], env)
    assert out.read_bytes() == data


@pytest.mark.parametrize("size", [0, 1, 11 * MIB + 7])
def test_framed_objects_up_down_ranges_and_a_plain_download_decrypts(store, s3, env, kms_key, tmp_path, size):
    plain = tmp_path / "plain"
    plain.write_bytes(os.urandom(size))
    key = fresh_key(f"framed-{size}")
    envelope(["s3", "cp", str(plain), url(store, key), "--key", kms_key, "--format", "framed",
              "--context", "app=cli", "--part-size", "5MiB", "-q", *conn(store)], env)
    head = s3.head_object(Bucket=store["BUCKET"], Key=key)
    assert head["Metadata"]["envelope-format"] == "esdk-framed", head["Metadata"]
    assert head["ETag"].endswith('-3"') == (size > 10 * MIB), head["ETag"]
    info = json.loads(envelope(["s3", "head", url(store, key), *conn(store)], env).stdout)
    assert info["client_side"]["format"] == "framed", info
    # Downloads find the format in the metadata; --key as an ARN is a strict keyring.
    out = tmp_path / "out"
    envelope(["s3", "cp", url(store, key), str(out), "--key", kms_key, "--context", "app=cli", "-q",
              *conn(store)], env)
    assert out.read_bytes() == plain.read_bytes()
    # The stored object is an AWS Encryption SDK message: `envelope decrypt` reads a plain download.
    raw = tmp_path / "raw"
    raw.write_bytes(s3.get_object(Bucket=store["BUCKET"], Key=key)["Body"].read())
    back = tmp_path / "back"
    envelope(["decrypt", str(raw), "-o", str(back), "--key", kms_key, "--context", "app=cli", "-q"], env)
    assert back.read_bytes() == plain.read_bytes()
    if size > 1:
        p = envelope(["s3", "cp", url(store, key), "-", "--key", kms_key, "--range", "bytes=70000-5300000",
                      *conn(store)], env)
        assert p.stdout == plain.read_bytes()[70000:5300001]
    # Frames longer than --max-frame-length are refused before any is read (envelope writes 64 KiB
    # frames); the bound is what it says, not one frame less.
    if size > 0:
        small = tmp_path / "small-frames"
        p = envelope(["s3", "cp", url(store, key), str(small), "--key", kms_key, "--context", "app=cli",
                      "--max-frame-length", str(64 * 1024 - 1), *conn(store)], env, ok=False)
        err = p.stderr.decode()
        assert p.returncode == 1 and "exceeds the buffering limit of 65535 bytes" in err, err
        assert "no output written" in err and not small.exists()
        envelope(["s3", "cp", url(store, key), str(small), "--key", kms_key, "--context", "app=cli", "-q",
                  "--max-frame-length", str(64 * 1024), *conn(store)], env)
        assert small.read_bytes() == plain.read_bytes()
    # A wrong required context fails, and leaves nothing.
    wrong = tmp_path / "wrong"
    p = envelope(["s3", "cp", url(store, key), str(wrong), "--key", kms_key, "--context", "app=other",
                  *conn(store)], env, ok=False)
    assert p.returncode == 1 and "no output written" in p.stderr.decode(), p.stderr
    assert not wrong.exists()


def test_framed_object_with_a_raw_key_and_a_tampered_frame(store, s3, env, tmp_path):
    keyfile = tmp_path / "key"
    keyfile.write_bytes(os.urandom(32))
    plain = tmp_path / "plain"
    plain.write_bytes(os.urandom(300_000))
    key = fresh_key("framed-raw")
    envelope(["s3", "cp", str(plain), url(store, key), "--raw-key-file", str(keyfile), "--format", "framed",
              "-q", *conn(store)], env)
    # A plain download decrypts with the raw key under the name the CLI documents.
    raw = tmp_path / "raw"
    body = s3.get_object(Bucket=store["BUCKET"], Key=key)["Body"].read()
    raw.write_bytes(body)
    back = tmp_path / "back"
    envelope(["decrypt", str(raw), "-o", str(back), "--raw-key-file", str(keyfile), "--key-name", "s3", "-q"],
             env)
    assert back.read_bytes() == plain.read_bytes()
    damaged = bytearray(body)
    damaged[len(body) // 2] ^= 1
    meta = s3.head_object(Bucket=store["BUCKET"], Key=key)["Metadata"]
    s3.put_object(Bucket=store["BUCKET"], Key=key, Body=bytes(damaged), Metadata=meta)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    p = envelope(["s3", "cp", url(store, key), str(out_dir / "plain"), "--raw-key-file", str(keyfile),
                  *conn(store)], env, ok=False)
    err = p.stderr.decode()
    assert p.returncode == 1 and "no output written" in err and "tampered" in err.lower(), err
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("size", [1000, 11 * MIB + 7])
def test_framed_sse_c_round_trip_ranges_and_no_read_without_the_right_key(store, s3, env, kms_key, tmp_path,
                                                                           size):
    raw_key = os.urandom(32)
    sse_key = tmp_path / "sse-c.key"
    sse_key.write_bytes(base64.b64encode(raw_key))
    wrong_key = tmp_path / "wrong.key"
    wrong_key.write_bytes(os.urandom(32))
    plain = tmp_path / "plain"
    plain.write_bytes(os.urandom(size))
    key = fresh_key(f"framed-sse-c-{size}")
    envelope(["s3", "cp", str(plain), url(store, key), "--key", kms_key, "--format", "framed", "--sse", "c",
              "--sse-c-key-file", str(sse_key), "--part-size", "5MiB", "-q", *conn(store)], env)
    # The store encrypted it with the key: no read without it; with it, a framed multipart object.
    with pytest.raises(s3.exceptions.ClientError):
        s3.get_object(Bucket=store["BUCKET"], Key=key)
    head = s3.head_object(Bucket=store["BUCKET"], Key=key, SSECustomerAlgorithm="AES256",
                          SSECustomerKey=raw_key)
    assert head["Metadata"]["envelope-format"] == "esdk-framed", head["Metadata"]
    assert head["ETag"].endswith('-3"') == (size > 10 * MIB), head["ETag"]
    info = json.loads(envelope(["s3", "head", url(store, key), "--sse-c-key-file", str(sse_key),
                                *conn(store)], env).stdout)
    assert info["client_side"]["format"] == "framed", info
    assert info["server_side"]["sse_c_algorithm"] == "AES256", info
    # Without the key or with another one, with or without --format framed (which skips the HEAD that
    # finds the format): a precise error, exit status 1, no output file and no temporary file.
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for extra in ([], ["--sse-c-key-file", str(wrong_key)], ["--format", "framed"],
                  ["--format", "framed", "--sse-c-key-file", str(wrong_key)],
                  ["--range", "0-9", "--sse-c-key-file", str(wrong_key)]):
        p = envelope(["s3", "cp", url(store, key), str(out_dir / "plain"), "--key", kms_key, *extra,
                      *conn(store)], env, ok=False)
        err = p.stderr.decode()
        assert p.returncode == 1, (extra, err)
        # The format is found with a HEAD, the object read with GETs: whichever the store refuses first.
        assert f"download of {url(store, key)} failed: S3 " in err, (extra, err)
        assert ("GetObject failed: InvalidRequest" in err or "HeadObject failed: HTTP 400 with no error code" in err), \
            (extra, err)
        assert "no output written" in err, (extra, err)
        hint = ("check that --sse-c-key-file holds the key" if "--sse-c-key-file" in extra
                else "if the object is stored with SSE-C, give its key: --sse-c-key-file FILE")
        assert hint in err, (extra, err)
        assert list(out_dir.iterdir()) == [], extra
        assert base64.b64encode(raw_key) not in p.stderr
    # With the key: the whole object, and byte ranges (each of the ranged GETs carries the key).
    out = out_dir / "plain"
    envelope(["s3", "cp", url(store, key), str(out), "--key", kms_key, "--sse-c-key-file", str(sse_key), "-q",
              *conn(store)], env)
    assert out.read_bytes() == plain.read_bytes()
    for first, last in ((0, 0), (size // 2, size // 2 + 70000), (size - 10, size - 1)):
        p = envelope(["s3", "cp", url(store, key), "-", "--key", kms_key, "--sse-c-key-file", str(sse_key),
                      "--range", f"bytes={first}-{last}", *conn(store)], env)
        assert p.stdout == plain.read_bytes()[first:last + 1], (first, last)
        assert base64.b64encode(raw_key) not in p.stderr


def test_framed_uploads_refuse_an_instruction_file(store, env, kms_key, tmp_path):
    plain = tmp_path / "plain"
    plain.write_bytes(b"x")
    p = envelope(["s3", "cp", str(plain), url(store, fresh_key("framed-instruction")), "--key", kms_key,
                  "--format", "framed", "--instruction-file", *conn(store)], env, ok=False)
    assert p.returncode == 1, p.stderr
    assert "--instruction-file is for S3 Encryption Client objects" in p.stderr.decode(), p.stderr


@pytest.mark.parametrize("sse", [["--sse", "s3"], ["--sse", "kms", "--sse-kms-key-id", "alias/aws/s3",
                                                  "--sse-bucket-key", "true"]])
def test_framed_uploads_take_sse_s3_and_sse_kms(store, s3, env, kms_key, tmp_path, sse):
    # Garage accepts these headers and ignores them (tests/framed/sse.rs checks what is sent); the object
    # goes up (single part and multipart) and comes back.
    for size in (1000, 6 * MIB):
        plain = tmp_path / f"plain-{size}"
        plain.write_bytes(os.urandom(size))
        key = fresh_key(f"framed-{sse[1]}-{size}")
        envelope(["s3", "cp", str(plain), url(store, key), "--key", kms_key, "--format", "framed", *sse,
                  "--part-size", "5MiB", "-q", *conn(store)], env)
        out = tmp_path / f"out-{size}"
        envelope(["s3", "cp", url(store, key), str(out), "--key", kms_key, "-q", *conn(store)], env)
        assert out.read_bytes() == plain.read_bytes()
        p = envelope(["s3", "cp", url(store, key), str(tmp_path / "x"), "--key", kms_key, *sse[:2],
                      *conn(store)], env, ok=False)
        assert p.returncode == 1 and "--sse s3|kms is for uploads" in p.stderr.decode(), p.stderr


class LoopbackServer:
    """A TCP server on loopback: each connection is served by `_serve(client)` on a thread of its own;
    `close` closes the listener and every socket."""

    def __init__(self):
        self.closed = threading.Event()
        self.sockets: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.sockets.append(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket):
        raise NotImplementedError

    def close(self):
        self.closed.set()
        self.listener.close()
        for sock in self.sockets:
            sock.close()


def hang_up(*socks: socket.socket):
    for sock in socks:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Relay(LoopbackServer):
    """Relays every connection to `endpoint`, each way through `_pump(src, dst, answers)`."""

    def __init__(self, endpoint: str):
        u = urlsplit(endpoint)
        self.target = (u.hostname, u.port)
        super().__init__()

    def _serve(self, client: socket.socket):
        upstream = socket.create_connection(self.target)
        self.sockets.append(upstream)
        threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
        self._pump(upstream, client, True)

    def _pump(self, src: socket.socket, dst: socket.socket, answers: bool):
        """Copies `src` to `dst` (through `_passing`) until either side ends, then hangs up both."""
        try:
            while data := src.recv(1 << 14):
                dst.sendall(self._passing(data, answers))
        except OSError:
            pass
        finally:
            hang_up(src, dst)

    def _passing(self, data: bytes, answers: bool) -> bytes:
        return data


class StallingProxy(Relay):
    """A TCP relay to the store that lets `limit` bytes of answers through, then holds back the rest until
    closed: a download through it is mid-way, with part of the object received, for as long as the test
    wants; no timing luck involved."""

    def __init__(self, endpoint: str, limit: int):
        self.limit = limit
        self.passed = 0
        self.lock = threading.Lock()
        self.stalled = threading.Event()
        super().__init__(endpoint)

    def _pump(self, src: socket.socket, dst: socket.socket, answers: bool):
        try:
            while data := src.recv(1 << 16):
                if answers:
                    with self.lock:
                        allowed = max(0, self.limit - self.passed)
                        self.passed += min(allowed, len(data))
                    if allowed < len(data):
                        dst.sendall(data[:allowed])
                        self.stalled.set()
                        self.closed.wait()
                        return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            hang_up(src, dst)


class BlackHole(LoopbackServer):
    """A TCP server that reads every request and never answers: a store that takes requests and hangs."""

    def __init__(self):
        self.requests = 0
        self.lock = threading.Lock()
        super().__init__()

    def _serve(self, client: socket.socket):
        try:
            while data := client.recv(1 << 16):
                # Request lines (bodies are random bytes; a request line in one is unlikely).
                with self.lock:
                    self.requests += sum(data.count(m) for m in (b"GET /", b"PUT /", b"HEAD /", b"POST /"))
        except OSError:
            pass


@pytest.mark.parametrize("direction", ["upload", "download"])
def test_a_store_that_never_answers_fails_the_copy_instead_of_hanging_it(env, kms_key, tmp_path, direction):
    """With `--read-timeout 1`, each request to a store that never answers times out after a second
    (a body as small as 1,000 bytes gets no allowance on top), is retried, and the copy fails saying
    so; a download leaves no file. Without a read timeout the copy waited for ever."""
    hole = BlackHole()
    src, out = tmp_path / "src", tmp_path / "out"
    src.write_bytes(os.urandom(1000))
    paths = [str(src), "s3://bucket/never"] if direction == "upload" else ["s3://bucket/never", str(out)]
    start = time.monotonic()
    try:
        p = envelope(["s3", "cp", *paths, "--key", kms_key, "--endpoint-url", hole.endpoint, "--path-style",
                      "--read-timeout", "1"], env, ok=False, timeout=120)
    finally:
        hole.close()
    took = time.monotonic() - start
    err = p.stderr.decode()
    assert p.returncode == 1 and "timeout" in err.lower(), err
    # Three attempts of a second each, and the backoff between them.
    assert 3 <= hole.requests <= 4 and took < 10, (hole.requests, took, err)
    assert not out.exists()


@pytest.mark.parametrize("read_timeout", ["2", "0"])
def test_a_download_body_that_stops_fails_after_the_read_timeout_or_waits_with_0(
        store, env, kms_key, tmp_path, read_timeout):
    """A body that stops after its first MiB: with `--read-timeout 2` the download fails about two seconds
    later (the SDK's stalled-stream grace period, 5 s by default, is the read timeout), leaving no file;
    with 0 it waits for ever (still running after 8 s)."""
    src = tmp_path / "src"
    src.write_bytes(os.urandom(4 * MIB))
    key = fresh_key("stopped-body")
    envelope(["s3", "cp", str(src), url(store, key), "--key", kms_key, "-q", *conn(store)], env)
    out = tmp_path / "out"
    proxy = StallingProxy(store["ENDPOINT"], limit=MIB)
    proc = subprocess.Popen(
        [envelope_bin(), "s3", "cp", url(store, key), str(out), "--key", kms_key, "--endpoint-url", proxy.endpoint,
         "--path-style", "--read-timeout", read_timeout], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proxy.stalled.wait(60)
        stalled = time.monotonic()
        try:
            proc.wait(timeout=8)
        except subprocess.TimeoutExpired:
            pass
        waited = time.monotonic() - stalled
    finally:
        proxy.close()
        proc.kill()
        _, err = proc.communicate()
    if read_timeout == "0":
        assert waited >= 8, err.decode()
    else:
        assert proc.returncode == 1 and waited < 4.5, (waited, err.decode())
        assert "throughput" in err.decode() or "stall" in err.decode().lower(), err.decode()
    assert not out.exists()


class SlowUplink(Relay):
    """A relay to the store that lets requests through at `rate` bytes/s per connection (answers at full
    speed): a slow uplink."""

    def __init__(self, endpoint: str, rate: int):
        self.rate = rate
        super().__init__(endpoint)

    def _passing(self, data: bytes, answers: bool) -> bytes:
        if not answers:
            time.sleep(len(data) / self.rate)
        return data


def test_a_slow_uplink_gets_its_parts_time_beyond_the_read_timeout(store, env, kms_key, tmp_path):
    """The read timeout runs from the moment a request starts to the first byte of its answer, so it
    includes sending the body: a 5 MiB part at 1 MiB/s takes 5 s against `--read-timeout 2`, and goes
    through because each upload request gets its body's time at 32 KiB/s on top."""
    src = tmp_path / "src"
    src.write_bytes(os.urandom(6 * MIB))
    key = fresh_key("slow-uplink")
    relay = SlowUplink(store["ENDPOINT"], rate=MIB)
    try:
        envelope(["s3", "cp", str(src), url(store, key), "--key", kms_key, "--part-size", "5MiB", "-q",
                  "--endpoint-url", relay.endpoint, "--path-style", "--read-timeout", "2"], env, timeout=120)
    finally:
        relay.close()
    out = tmp_path / "out"
    envelope(["s3", "cp", url(store, key), str(out), "--key", kms_key, "-q", *conn(store)], env)
    assert out.read_bytes() == src.read_bytes()


@pytest.mark.parametrize("fmt", ["v3", "framed"])
def test_ctrl_c_during_a_download_leaves_no_file(store, s3, env, kms_key, tmp_path, fmt):
    size = 64 * MIB
    plain = tmp_path / "plain"
    with plain.open("wb") as f:
        for _ in range(size // MIB):
            f.write(os.urandom(MIB))
    key = fresh_key(f"interrupted-download-{fmt}")
    envelope(["s3", "cp", str(plain), url(store, key), "--key", kms_key, "--format", fmt, "-q", *conn(store)], env)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "plain"
    proxy = StallingProxy(store["ENDPOINT"], limit=8 * MIB)
    proc = subprocess.Popen(
        [envelope_bin(), "s3", "cp", url(store, key), str(out), "--key", kms_key, "--endpoint-url",
         proxy.endpoint, "--path-style"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        # Under way: 8 MiB of the object received, the rest held back, plaintext in the temporary file
        # beside OUT.
        assert proxy.stalled.wait(120), "the download never got going"
        deadline = time.monotonic() + 60
        while not [p for p in out_dir.iterdir() if p.name.startswith(".envelope-partial-") and p.stat().st_size]:
            assert time.monotonic() < deadline, "no plaintext reached the temporary file"
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proxy.close()
    err = proc.stderr.read().decode()
    assert rc == 130, err
    assert "no output written" in err, err
    assert list(out_dir.iterdir()) == [], "OUT or its temporary file was left"


def upload_peak_rss(store, env, key: str, size: int, args: list[str]) -> int:
    """Streams `size` bytes through a pipe into `envelope s3 cp - s3://…`; returns that process's peak RSS in
    bytes (os.wait4 gives this one child's own resource usage, so no other child counts)."""
    # stderr goes to a file, not a pipe: a pipe nobody drains while stdin is written blocks the upload
    # as soon as it has logged 64 KiB (at ENVELOPE_LOG=debug the AWS SDK logs every part).
    errfile = tempfile.TemporaryFile()
    proc = subprocess.Popen([envelope_bin(), "s3", "cp", "-", url(store, key), *args, "-q", *conn(store)],
                            env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errfile)
    block = os.urandom(MIB)
    try:
        for _ in range(size // MIB):
            proc.stdin.write(block)
        proc.stdin.write(block[:size % MIB])
        proc.stdin.close()
    except BrokenPipeError:
        pass
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    errfile.seek(0)
    err = errfile.read().decode(errors="replace")
    assert proc.returncode == 0, err
    return usage.ru_maxrss * 1024  # KiB on Linux


# What a long multipart upload holds beyond the tiny upload's baseline and its part buffers, whatever the
# part size: tokio's buffer for reading standard input (up to 2 MiB), a second HTTP connection, the malloc
# arenas of the runtime threads that only a long upload keeps busy. Measured here (debug build, Garage on
# loopback): 1-5 MiB with 5 MiB parts, 4-8 MiB with 16 MiB parts; one part more than the bound (5 MiB)
# goes over it.
UPLOAD_OVERHEAD = 8 * MIB


@pytest.mark.parametrize("fmt", ["v3", "framed"])
def test_streaming_upload_memory_stays_within_part_size_times_concurrency_plus_one(store, s3, env, tmp_path,
                                                                                    fmt):
    keyfile = tmp_path / "key"
    keyfile.write_bytes(os.urandom(32))
    part, concurrency, size = 5 * MIB, 2, 256 * MIB
    args = ["--raw-key-file", str(keyfile), "--format", fmt, "--part-size", "5MiB",
            "--concurrency", str(concurrency)]
    # The binary, the runtime, the SDK clients and one small PutObject.
    baseline = upload_peak_rss(store, env, fresh_key(f"rss-tiny-{fmt}"), 1, args)
    key = fresh_key(f"rss-{fmt}")
    peak = upload_peak_rss(store, env, key, size, args)
    bound = baseline + part * (concurrency + 1) + UPLOAD_OVERHEAD
    assert peak <= bound, (f"peak RSS {peak / MIB:.1f} MiB > {bound / MIB:.1f} MiB: baseline {baseline / MIB:.1f} "
                           f"+ {part * (concurrency + 1) / MIB:.0f} (part size x (concurrency + 1)) "
                           f"+ {UPLOAD_OVERHEAD / MIB:.0f} fixed")
    # And the object is all there, a multipart upload of 5 MiB parts.
    head = s3.head_object(Bucket=store["BUCKET"], Key=key)
    parts = int(head["ETag"].strip('"').rsplit("-", 1)[1])
    assert parts >= size // (part + 64 * 1024), head["ETag"]
    if fmt == "v3":
        assert head["ContentLength"] == size + 16
    else:
        assert head["ContentLength"] > size


class TamperingProxy(Relay):
    """A TCP relay to the store that damages the first answer of each connection on its way back: `flip`
    flips one byte of the body at that offset (the bytes were damaged in flight), `etag` changes one hex
    digit of the ETag header (the body intact, its ETag not). Lengths are kept, so HTTP framing is intact
    and only the client's checks can notice. Downloads with `--format` send GETs only."""

    def __init__(self, endpoint: str, *, flip: int | None = None, etag: bool = False):
        self.flip, self.etag = flip, etag
        self.damaged = 0
        super().__init__(endpoint)

    def _damage(self, head: bytes, body_at: int) -> bytes:
        """The first answer's bytes so far, damaged once its head is complete (`body_at` bytes in)."""
        head = bytearray(head)
        if self.etag:
            i = head.lower().index(b"\r\netag: ") + 8
            i += 1 if head[i:i + 1] == b'"' else 0
            head[i] = ord("0") if head[i] != ord("0") else ord("1")
        return bytes(head)

    def _pump(self, src: socket.socket, dst: socket.socket, answers: bool):
        pending, head_done, seen = b"", not answers, 0
        try:
            while data := src.recv(1 << 16):
                if not head_done:
                    pending += data
                    end = pending.find(b"\r\n\r\n")
                    if end < 0:
                        continue
                    head_done, data = True, self._damage(pending, end + 4)
                    seen = -(end + 4)  # body offsets count from the end of the head
                    self.damaged += 1
                if answers and self.flip is not None and seen <= self.flip < seen + len(data):
                    data = bytearray(data)
                    data[self.flip - seen] ^= 0x01
                    data = bytes(data)
                seen += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            hang_up(src, dst)


def upload_small(store, env, kms_key, tmp_path, fmt: str, name: str, data: bytes, extra=()) -> str:
    src = tmp_path / f"{name}.src"
    src.write_bytes(data)
    key = fresh_key(name)
    envelope(["s3", "cp", str(src), url(store, key), "--key", kms_key, "--format", fmt, "-q", *extra,
              *conn(store)], env)
    return key


def download_args(fmt: str) -> list[str]:
    return ["--format", fmt, *(["--allow-non-committing"] if fmt == "v2" else [])]


@pytest.mark.parametrize("fmt", ["framed", "v3", "v2"])
def test_a_body_damaged_in_flight_fails_with_no_output_file(store, env, kms_key, tmp_path, fmt):
    data = os.urandom(MIB + 123)
    key = upload_small(store, env, kms_key, tmp_path, fmt, f"in-flight-{fmt}", data)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    # Clean through the relay: it passes what it does not damage.
    proxy = TamperingProxy(store["ENDPOINT"])
    try:
        envelope(["s3", "cp", url(store, key), str(out_dir / "clean"), "--key", kms_key, "-q",
                  *download_args(fmt), "--endpoint-url", proxy.endpoint, "--path-style"], env)
    finally:
        proxy.close()
    assert (out_dir / "clean").read_bytes() == data
    (out_dir / "clean").unlink()
    proxy = TamperingProxy(store["ENDPOINT"], flip=300_000)
    try:
        p = envelope(["s3", "cp", url(store, key), str(out_dir / "plain"), "--key", kms_key, *download_args(fmt),
                      "--endpoint-url", proxy.endpoint, "--path-style"], env, ok=False)
    finally:
        proxy.close()
    err = p.stderr.decode()
    assert proxy.damaged >= 1
    assert p.returncode == 1 and "no output written" in err, err
    # A framed object fails at the damaged frame. An S3EC object has one tag, at its end: before it, the
    # SDK checks the CRC32 the store keeps of the body (Garage answers with one) and the ETag (its MD5) is
    # checked as the body ends; whichever sees the damage first names it.
    if fmt == "framed":
        assert "failed authentication: tampered" in err, err
    else:
        assert "body checksum mismatch" in err or "do not match the object's ETag" in err, err
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("fmt", ["framed", "v3", "v2"])
def test_an_etag_that_does_not_match_the_body_fails_the_download(store, env, kms_key, tmp_path, fmt):
    data = os.urandom(200_000)
    key = upload_small(store, env, kms_key, tmp_path, fmt, f"etag-{fmt}", data)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proxy = TamperingProxy(store["ENDPOINT"], etag=True)
    try:
        p = envelope(["s3", "cp", url(store, key), str(out_dir / "plain"), "--key", kms_key, *download_args(fmt),
                      "--endpoint-url", proxy.endpoint, "--path-style"], env, ok=False)
        # To standard output: what was written is to be discarded, and it lacks at least the held-back end.
        q = envelope(["s3", "cp", url(store, key), "-", "--key", kms_key, *download_args(fmt),
                      "--endpoint-url", proxy.endpoint, "--path-style"], env, ok=False)
    finally:
        proxy.close()
    err = p.stderr.decode()
    assert p.returncode == 1 and "do not match the object's ETag" in err and "no output written" in err, err
    assert list(out_dir.iterdir()) == []
    err = q.stderr.decode()
    assert q.returncode == 1 and "do not match the object's ETag" in err and "discard it" in err, err
    assert data.startswith(q.stdout) and len(q.stdout) < len(data)


def read_back(store, env, kms_key, tmp_path, key: str, fmt: str) -> bytes:
    out = tmp_path / f"back-{uuid.uuid4().hex[:6]}"
    envelope(["s3", "cp", url(store, key), str(out), "--key", kms_key, "-q", *download_args(fmt),
              *conn(store)], env)
    return out.read_bytes()


@pytest.mark.parametrize("size", [1000, 11 * MIB + 5], ids=["put", "multipart"])
@pytest.mark.parametrize("fmt,extra", [("framed", []), ("v3", []), ("v2", []), ("v3", ["--instruction-file"])],
                         ids=["framed", "v3", "v2", "v3-instruction-file"])
def test_a_failed_upload_over_an_object_leaves_the_old_one_readable(store, s3, env, kms_key, tmp_path, fmt, extra,
                                                                    size):
    old = os.urandom(300_000)
    key = upload_small(store, env, kms_key, tmp_path, fmt, f"overwrite-{fmt}", old, extra)
    before = s3.head_object(Bucket=store["BUCKET"], Key=key)["ETag"]
    new = tmp_path / "new"
    new.write_bytes(os.urandom(size))
    # Every PutObject and UploadPart damaged on the way: the store refuses each (BadDigest), the retries give
    # up, the upload fails.
    p = envelope(["s3", "cp", str(new), url(store, key), "--key", kms_key, "--format", fmt, "--part-size", "5MiB",
                  *extra, *conn(store)], dict(env, ENVELOPE_TEST_CORRUPT_PUTS="1000"), ok=False)
    assert p.returncode == 1 and "BadDigest" in p.stderr.decode(), p.stderr
    assert s3.head_object(Bucket=store["BUCKET"], Key=key)["ETag"] == before
    assert s3.list_multipart_uploads(Bucket=store["BUCKET"], Prefix=key).get("Uploads", []) == []
    assert read_back(store, env, kms_key, tmp_path, key, fmt) == old


@pytest.mark.parametrize("old_extra", [["--instruction-file"], []], ids=["old-instruction-file", "old-metadata"])
def test_an_upload_whose_object_put_fails_after_its_instruction_file_puts_the_old_file_back(
        store, s3, env, kms_key, tmp_path, old_extra):
    """The instruction file goes up just before the object; when the object's PutObject then fails (the
    store refuses each of its three attempts), the instruction file it replaced is put back (or, if there
    was none, the new one removed), so the old object stays readable with its own key material."""
    old = os.urandom(300_000)
    key = upload_small(store, env, kms_key, tmp_path, "v3", "overwrite-instruction", old, old_extra)
    ikey = key + ".instruction"

    def instruction_file():
        try:
            return s3.get_object(Bucket=store["BUCKET"], Key=ikey)["Body"].read()
        except s3.exceptions.NoSuchKey:
            return None

    before = (s3.head_object(Bucket=store["BUCKET"], Key=key)["ETag"], instruction_file())
    assert (before[1] is not None) == bool(old_extra)
    new = tmp_path / "new"
    new.write_bytes(os.urandom(1000))
    # The first PUT (the new instruction file) goes through; the object's three attempts are damaged.
    p = envelope(["s3", "cp", str(new), url(store, key), "--key", kms_key, "--format", "v3",
                  "--instruction-file", *conn(store)], dict(env, ENVELOPE_TEST_CORRUPT_PUTS="1:3"), ok=False)
    assert p.returncode == 1 and "BadDigest" in p.stderr.decode(), p.stderr
    assert "putting back" not in p.stderr.decode(), p.stderr
    assert (s3.head_object(Bucket=store["BUCKET"], Key=key)["ETag"], instruction_file()) == before
    assert read_back(store, env, kms_key, tmp_path, key, "v3") == old


@pytest.mark.parametrize("size", [1000, 6 * MIB + 5], ids=["put", "multipart"])
def test_an_upload_whose_commit_landed_but_whose_answer_was_lost_keeps_the_new_object(
        store, s3, env, kms_key, tmp_path, size):
    """The object's PutObject (or CompleteMultipartUpload) reaches the store and is done, but every answer
    to it comes back as a 500 (a 5xx after the store acted, an answer lost on the way). Putting the old
    instruction file back would leave the new object with the old one's key material, readable by
    neither: the client finds the object changed, keeps the new instruction file, and the upload went
    through."""
    old = os.urandom(300_000)
    key = upload_small(store, env, kms_key, tmp_path, "v3", "lost-answer", old, ["--instruction-file"])
    new = tmp_path / "new"
    new.write_bytes(os.urandom(size))
    p = envelope(["s3", "cp", str(new), url(store, key), "--key", kms_key, "--format", "v3", "--instruction-file",
                  "--part-size", "5MiB", *conn(store)], dict(env, ENVELOPE_TEST_LOSE_ANSWERS="100"), ok=False)
    assert p.returncode == 0, p.stderr.decode()
    # Three requests, not three of the client's attempts each with three of the SDK's own (nine).
    assert p.stderr.decode().count("test hook: answer lost") == 3, p.stderr.decode()
    assert read_back(store, env, kms_key, tmp_path, key, "v3") == new.read_bytes()
    assert s3.list_multipart_uploads(Bucket=store["BUCKET"], Prefix=key).get("Uploads", []) == []


@pytest.mark.parametrize("fmt", ["v3", "framed"])
def test_a_completion_that_landed_but_whose_answers_were_lost_is_a_success(store, s3, env, kms_key, tmp_path, fmt):
    """Without an instruction file to judge by: every answer to the CompleteMultipartUpload is lost (the
    first landed; the SDK's retries find no upload), and the object's ETag, the MD5 of exactly the parts'
    MD5s, shows the upload went through. It used to be reported failed, the object complete."""
    src = tmp_path / "src"
    src.write_bytes(os.urandom(11 * MIB))
    key = fresh_key(f"lost-completion-{fmt}")
    p = envelope(["s3", "cp", str(src), url(store, key), "--key", kms_key, "--format", fmt, "--part-size", "5MiB",
                  *conn(store)], dict(env, ENVELOPE_TEST_LOSE_ANSWERS="100"), ok=False)
    err = p.stderr.decode()
    assert p.returncode == 0 and "test hook: answer lost" in err, err
    assert s3.list_multipart_uploads(Bucket=store["BUCKET"], Prefix=key).get("Uploads", []) == []
    out = tmp_path / "out"
    envelope(["s3", "cp", url(store, key), str(out), "--key", kms_key, "-q", *conn(store)], env)
    assert out.read_bytes() == src.read_bytes()


@pytest.mark.parametrize("size", [1000, 11 * MIB], ids=["put", "multipart"])
def test_an_etag_that_is_not_the_md5_sent_is_retried_then_refused(store, s3, env, kms_key, tmp_path, size):
    """A store that answers a PutObject or UploadPart with the MD5 of other bytes stored something else
    than it was sent: the request is sent again, and after three such answers the upload fails, saying
    so, with no multipart upload left behind. One such answer, and the retry puts the object right."""
    src = tmp_path / "src"
    src.write_bytes(os.urandom(size))
    key = fresh_key("wrong-etag")
    args = ["s3", "cp", str(src), url(store, key), "--key", kms_key, "--part-size", "5MiB", *conn(store)]
    p = envelope(args, dict(env, ENVELOPE_TEST_WRONG_ETAGS="100"), ok=False)
    err = p.stderr.decode()
    assert p.returncode == 1 and "not the MD5 of the bytes sent" in err, err
    answered = err.count("test hook: ETag of other bytes answered")
    # Three times the one request, or (parts in flight together) three per part at most.
    assert answered == 3 if size < 5 * MIB else 3 <= answered <= 3 * 3, err
    assert s3.list_multipart_uploads(Bucket=store["BUCKET"], Prefix=key).get("Uploads", []) == []
    if size < 5 * MIB:
        # A single PutObject did land (with what the store says is other bytes): nothing to abort.
        s3.delete_object(Bucket=store["BUCKET"], Key=key)
    else:
        no_uploads_left(s3, store["BUCKET"], key)
    p = envelope([*args, "-q"], dict(env, ENVELOPE_TEST_WRONG_ETAGS="1"))
    assert p.stderr.decode().count("test hook: ETag of other bytes answered") == 1, p.stderr.decode()
    out = tmp_path / "out"
    envelope(["s3", "cp", url(store, key), str(out), "--key", kms_key, "-q", *conn(store)], env)
    assert out.read_bytes() == src.read_bytes()


def test_a_lost_answer_that_cannot_be_judged_puts_the_old_file_back_and_says_so(
        store, s3, env, kms_key, tmp_path):
    """The object's PutObject lands but its answer is lost, and the store then answers no HEAD: whether
    the object changed cannot be told. The old instruction file is put back (the likelier case is that
    the store refused the put), and the error says that the object cannot be read if it was replaced."""
    old = os.urandom(300_000)
    key = upload_small(store, env, kms_key, tmp_path, "v3", "untold", old, ["--instruction-file"])
    ikey = key + ".instruction"
    old_file = s3.get_object(Bucket=store["BUCKET"], Key=ikey)["Body"].read()
    new = tmp_path / "new"
    new.write_bytes(os.urandom(1000))
    p = envelope(["s3", "cp", str(new), url(store, key), "--key", kms_key, "--format", "v3", "--instruction-file",
                  *conn(store)], dict(env, ENVELOPE_TEST_LOSE_ANSWERS="100", ENVELOPE_TEST_FAIL_HEADS_AFTER="1"),
                 ok=False)
    err = p.stderr.decode()
    assert p.returncode == 1 and "could not be told" in err and "was put back" in err, err
    assert "test hook: HEAD failed" in err, err
    assert s3.get_object(Bucket=store["BUCKET"], Key=ikey)["Body"].read() == old_file


def test_an_instruction_file_upload_over_an_object_it_cannot_read_writes_nothing(store, s3, env, kms_key, tmp_path):
    """An existing object this caller cannot HEAD (stored under another SSE-C key, its instruction file
    readable) would leave a failed commit unjudgeable: the upload is refused before anything is written."""
    sse_a, sse_b = tmp_path / "a.key", tmp_path / "b.key"
    raw = {}
    for f in (sse_a, sse_b):
        raw[f] = os.urandom(32)
        secrets_scan.add(raw[f], "SSE-C key")
        f.write_bytes(base64.b64encode(raw[f]))
    old = tmp_path / "old"
    old.write_bytes(os.urandom(2000))
    key = fresh_key("unreadable-object")
    ikey = key + ".instruction"
    envelope(["s3", "cp", str(old), url(store, key), "--key", kms_key, "--format", "v3", "--instruction-file",
              "--sse", "c", "--sse-c-key-file", str(sse_a), "-q", *conn(store)], env)
    # The instruction file again, under key B: readable with the new upload's key, the object not.
    ssec_a = dict(SSECustomerAlgorithm="AES256", SSECustomerKey=raw[sse_a])
    ssec_b = dict(SSECustomerAlgorithm="AES256", SSECustomerKey=raw[sse_b])
    instruction = s3.get_object(Bucket=store["BUCKET"], Key=ikey, **ssec_a)
    s3.put_object(Bucket=store["BUCKET"], Key=ikey, Body=instruction["Body"].read(),
                  Metadata=instruction["Metadata"], **ssec_b)
    before = (s3.head_object(Bucket=store["BUCKET"], Key=key, **ssec_a)["ETag"],
              s3.head_object(Bucket=store["BUCKET"], Key=ikey, **ssec_b)["ETag"])
    new = tmp_path / "new"
    new.write_bytes(os.urandom(1000))
    p = envelope(["s3", "cp", str(new), url(store, key), "--key", kms_key, "--format", "v3", "--instruction-file",
                  "--sse", "c", "--sse-c-key-file", str(sse_b), *conn(store)], env, ok=False)
    err = p.stderr.decode()
    assert p.returncode == 1 and "existing object" in err and "nothing was written" in err, err
    assert (s3.head_object(Bucket=store["BUCKET"], Key=key, **ssec_a)["ETag"],
            s3.head_object(Bucket=store["BUCKET"], Key=ikey, **ssec_b)["ETag"]) == before


def test_an_object_answered_with_a_wrong_etag_is_not_taken_for_a_commit_that_went_through(
        store, s3, env, kms_key, tmp_path):
    """With `--instruction-file` over an object, a PutObject answered with the MD5 of other bytes changes
    the object: that change is the store's damage, not a commit whose answer was lost, and the upload
    fails."""
    old = os.urandom(300_000)
    key = upload_small(store, env, kms_key, tmp_path, "v3", "wrong-etag-commit", old, ["--instruction-file"])
    new = tmp_path / "new"
    new.write_bytes(os.urandom(1000))
    # The instruction file's PUT goes through; the object's three are answered with another MD5.
    p = envelope(["s3", "cp", str(new), url(store, key), "--key", kms_key, "--format", "v3", "--instruction-file",
                  *conn(store)], dict(env, ENVELOPE_TEST_WRONG_ETAGS="1:3"), ok=False)
    err = p.stderr.decode()
    assert p.returncode == 1 and "not the MD5 of the bytes sent" in err, err
    assert err.count("test hook: ETag of other bytes answered") == 3, err


def test_an_sse_c_instruction_file_upload_over_an_object_without_sse_c_goes_through(
        store, s3, env, kms_key, tmp_path):
    """An object stored without SSE-C refuses a HEAD that brings a key; the upload reads its ETag without
    one, and replaces it."""
    key = fresh_key("plain-then-sse-c")
    s3.put_object(Bucket=store["BUCKET"], Key=key, Body=b"plain")
    sse = tmp_path / "c.key"
    raw = os.urandom(32)
    secrets_scan.add(raw, "SSE-C key")
    sse.write_bytes(base64.b64encode(raw))
    new = tmp_path / "new"
    new.write_bytes(os.urandom(1000))
    envelope(["s3", "cp", str(new), url(store, key), "--key", kms_key, "--format", "v3", "--instruction-file",
              "--sse", "c", "--sse-c-key-file", str(sse), "-q", *conn(store)], env)
    out = tmp_path / "out"
    envelope(["s3", "cp", url(store, key), str(out), "--key", kms_key, "--sse-c-key-file", str(sse), "-q",
              *conn(store)], env)
    assert out.read_bytes() == new.read_bytes()


def test_a_failed_sse_c_upload_over_an_object_without_sse_c_puts_its_file_back_without_the_key(
        store, s3, env, kms_key, tmp_path):
    """The instruction file an SSE-C upload replaces was stored without SSE-C (read without the key):
    when the object's PUT then fails, it goes back without the key too, and the old object stays
    readable as before."""
    old = os.urandom(300_000)
    key = upload_small(store, env, kms_key, tmp_path, "v3", "plain-file-back", old, ["--instruction-file"])
    sse = tmp_path / "c.key"
    raw = os.urandom(32)
    secrets_scan.add(raw, "SSE-C key")
    sse.write_bytes(base64.b64encode(raw))
    new = tmp_path / "new"
    new.write_bytes(os.urandom(1000))
    # The new instruction file's PUT goes through; the object's three are damaged.
    p = envelope(["s3", "cp", str(new), url(store, key), "--key", kms_key, "--format", "v3", "--instruction-file",
                  "--sse", "c", "--sse-c-key-file", str(sse), *conn(store)],
                 dict(env, ENVELOPE_TEST_CORRUPT_PUTS="1:3"), ok=False)
    assert p.returncode == 1 and "BadDigest" in p.stderr.decode(), p.stderr
    assert "ServerSideEncryption" not in s3.head_object(Bucket=store["BUCKET"], Key=key + ".instruction")
    assert read_back(store, env, kms_key, tmp_path, key, "v3") == old


class SlowDownOnce(Relay):
    """A relay to the store that answers the first PutObject itself, with 503 SlowDown (and closes that
    connection), and relays everything else."""

    def __init__(self, endpoint: str):
        self.refused_at: float | None = None
        super().__init__(endpoint)

    def _serve(self, client: socket.socket):
        if self.refused_at is not None:
            return super()._serve(client)
        data = b""
        while b"\r\n\r\n" not in data and (chunk := client.recv(1 << 16)):
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"PUT ") or self.refused_at is not None:
            upstream = socket.create_connection(self.target)
            self.sockets.append(upstream)
            upstream.sendall(data)
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            return self._pump(upstream, client, True)
        self.refused_at = time.monotonic()
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        while len(body) < length and (chunk := client.recv(1 << 16)):
            body += chunk
        answer = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
        client.sendall(b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nConnection: close\r\n"
                       b"Content-Length: %d\r\n\r\n%s" % (len(answer), answer))
        hang_up(client)


def test_a_throttled_put_waits_at_least_a_second_and_goes_through(store, env, kms_key, tmp_path):
    """`SlowDown` is retried by the client's own loop (the SDK's retries being off for writes), after at
    least a second, as the SDK's throttling backoff would have waited."""
    src = tmp_path / "src"
    src.write_bytes(os.urandom(1000))
    key = fresh_key("slow-down")
    relay = SlowDownOnce(store["ENDPOINT"])
    try:
        envelope(["s3", "cp", str(src), url(store, key), "--key", kms_key, "-q", "--endpoint-url", relay.endpoint,
                  "--path-style"], env, timeout=60)
        done = time.monotonic()
    finally:
        relay.close()
    assert relay.refused_at is not None and done - relay.refused_at >= 1.0, (relay.refused_at, done)
    out = tmp_path / "out"
    envelope(["s3", "cp", url(store, key), str(out), "--key", kms_key, "-q", *conn(store)], env)
    assert out.read_bytes() == src.read_bytes()


def test_an_instruction_file_upload_that_cannot_read_the_file_it_would_replace_writes_nothing(
        store, s3, env, kms_key, tmp_path):
    """An existing instruction file this caller cannot read (here: stored under another SSE-C key)
    could not be put back if the upload failed, leaving the old object unreadable: the upload is
    refused before anything is written, and the old object stays as it was."""
    sse_a, sse_b = tmp_path / "a.key", tmp_path / "b.key"
    for f in (sse_a, sse_b):
        raw = os.urandom(32)
        secrets_scan.add(raw, "SSE-C key")
        f.write_bytes(base64.b64encode(raw))
    old = tmp_path / "old"
    old.write_bytes(os.urandom(2000))
    key = fresh_key("unreadable-instruction")
    envelope(["s3", "cp", str(old), url(store, key), "--key", kms_key, "--format", "v3", "--instruction-file",
              "--sse", "c", "--sse-c-key-file", str(sse_a), "-q", *conn(store)], env)
    etag = s3.head_object(Bucket=store["BUCKET"], Key=key, SSECustomerAlgorithm="AES256",
                          SSECustomerKey=base64.b64decode(sse_a.read_bytes()))["ETag"]
    new = tmp_path / "new"
    new.write_bytes(os.urandom(1000))
    p = envelope(["s3", "cp", str(new), url(store, key), "--key", kms_key, "--format", "v3", "--instruction-file",
                  "--sse", "c", "--sse-c-key-file", str(sse_b), *conn(store)], env, ok=False)
    err = p.stderr.decode()
    assert p.returncode == 1 and "cannot be read" in err and "nothing was written" in err, err
    assert s3.head_object(Bucket=store["BUCKET"], Key=key, SSECustomerAlgorithm="AES256",
                          SSECustomerKey=base64.b64decode(sse_a.read_bytes()))["ETag"] == etag
    out = tmp_path / "out"
    envelope(["s3", "cp", url(store, key), str(out), "--key", kms_key, "--sse-c-key-file", str(sse_a), "-q",
              *conn(store)], env)
    assert out.read_bytes() == old.read_bytes()


@pytest.mark.parametrize("fmt,extra", [("framed", []), ("v3", []), ("v3", ["--instruction-file"])],
                         ids=["framed", "v3", "v3-instruction-file"])
def test_an_interrupted_upload_over_an_object_leaves_the_old_one_readable(store, s3, env, kms_key, tmp_path, fmt,
                                                                          extra):
    old = os.urandom(300_000)
    key = upload_small(store, env, kms_key, tmp_path, fmt, f"overwrite-interrupted-{fmt}", old, extra)
    proc = subprocess.Popen(
        [envelope_bin(), "s3", "cp", "-", url(store, key), "--key", kms_key, "--part-size", "5MiB",
         "--format", fmt, *extra, *conn(store)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        proc.stdin.write(os.urandom(12 * MIB))
        proc.stdin.flush()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            uploads = s3.list_multipart_uploads(Bucket=store["BUCKET"], Prefix=key).get("Uploads", [])
            uploads = [u for u in uploads if u["Key"] == key]
            if uploads and s3.list_parts(Bucket=store["BUCKET"], Key=key,
                                         UploadId=uploads[0]["UploadId"]).get("Parts"):
                break
            time.sleep(0.1)
        else:
            pytest.fail("no part reached the store")
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
    assert rc == 130, proc.stderr.read().decode()
    assert read_back(store, env, kms_key, tmp_path, key, fmt) == old
