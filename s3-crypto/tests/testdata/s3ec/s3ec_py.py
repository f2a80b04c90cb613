#!/usr/bin/env python3
"""Golden vectors and interop checks for s3-crypto's S3 Encryption Client format, made with the
official Amazon S3 Encryption Client for Python (amazon-s3-encryption-client-python 4.0.0; run it
from the venv of tests/requirements-s3ec.txt, which scripts/test exports as S3EC_PYTHON).

    s3ec_py.py generate DIR    write the vectors into DIR (each one also checked against the client)
    s3ec_py.py live            read a list of {"op": "put"|"get", "key", "size", "v2", "part_size",
                               "encryption_context", "policy"} on stdin; run each with the official
                               client against the S3 server of ENVELOPE_TEST_S3_*; print the results
    s3ec_py.py decrypt         read {"metadata", "body_b64", "instruction_file", "encryption_context",
                               "policy"} (or a list of them) as JSON on stdin; decrypt with the
                               official client; print {"ok": true, "plaintext_b64": ...} or
                               {"ok": false, "error": ...} (or a list of those)

No network: S3 is an in-memory store behind botocore's before-send event, and KMS is a stand-in
client object ("fake KMS") whose CiphertextBlob is IV(12) || AES-256-GCM(FAKE_KMS_KEY, data key)
|| tag, with the canonical JSON of the encryption context (sorted keys, compact) as AAD, so that,
like KMS, a blob decrypts only under the encryption context it was made with. The Rust tests
implement the same stand-in. Everything else (content encryption, key derivation, commitment,
metadata layout, policy checks) is the official client's own code.

Vector files: NAME.json (metadata, encryption context and policy to decrypt with, optional
instruction file, what is expected), NAME.body (the object body), NAME.plain (the plaintext, for
vectors that must decrypt). A name starting with fail_ must be rejected.
"""

import base64
import hashlib
import io
import json
import os
import sys

import boto3
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from s3_encryption import S3EncryptionClient, S3EncryptionClientConfig
from s3_encryption.materials.kms_keyring import KmsKeyring
from s3_encryption.materials.materials import AlgorithmSuite, CommitmentPolicy

FAKE_KMS_KEY = hashlib.sha256(b"envelope s3ec fake kms key").digest()
FAKE_KMS_KEY_ID = "arn:aws:kms:us-east-1:111122223333:key/00000000-0000-4000-8000-000000000001"
BUCKET = "vectors"
POLICIES = {
    "ForbidEncryptAllowDecrypt": CommitmentPolicy.FORBID_ENCRYPT_ALLOW_DECRYPT,
    "RequireEncryptAllowDecrypt": CommitmentPolicy.REQUIRE_ENCRYPT_ALLOW_DECRYPT,
    "RequireEncryptRequireDecrypt": CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT,
}


def canonical_context(ctx):
    return json.dumps(ctx or {}, sort_keys=True, separators=(",", ":")).encode()


class _Meta:
    class config:  # noqa: N801 - mimics botocore's client.meta.config
        user_agent_extra = ""


class FakeKms:
    """What the official KmsKeyring calls on a boto3 KMS client."""

    meta = _Meta()

    def generate_data_key(self, KeyId, KeySpec, EncryptionContext):  # noqa: N803
        assert KeyId == FAKE_KMS_KEY_ID and KeySpec == "AES_256"
        data_key = os.urandom(32)
        iv = os.urandom(12)
        blob = iv + AESGCM(FAKE_KMS_KEY).encrypt(iv, data_key, canonical_context(EncryptionContext))
        return {"CiphertextBlob": blob, "Plaintext": data_key, "KeyId": FAKE_KMS_KEY_ID}

    def decrypt(self, KeyId, CiphertextBlob, EncryptionContext=None):  # noqa: N803
        assert KeyId == FAKE_KMS_KEY_ID
        iv, sealed = CiphertextBlob[:12], CiphertextBlob[12:]
        try:
            plain = AESGCM(FAKE_KMS_KEY).decrypt(iv, sealed, canonical_context(EncryptionContext))
        except Exception as e:
            raise RuntimeError("InvalidCiphertextException (fake KMS)") from e
        return {"Plaintext": plain, "KeyId": FAKE_KMS_KEY_ID}


class _Raw:
    def __init__(self, data):
        self._b = io.BytesIO(data)

    def stream(self, **_):
        yield self._b.read()

    def read(self, amt=None, **_):
        return self._b.read() if amt is None else self._b.read(amt)

    def close(self):
        pass


class MemoryS3:
    """An S3 that answers PutObject and GetObject from a dict, through botocore's before-send."""

    def __init__(self):
        self.objects = {}  # key -> (metadata dict, body bytes)
        self.client = boto3.client(
            "s3",
            region_name="us-east-1",
            aws_access_key_id="AKIDEXAMPLE",
            aws_secret_access_key="secret",
            endpoint_url="http://s3.invalid",
            config=Config(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )
        self.client.meta.events.register("before-send.s3", self._send)

    def _send(self, request, **_):
        rest = request.url.split("://", 1)[1].split("/", 1)[1]
        path, _, query = rest.partition("?")
        key = path.split("/", 1)[1]
        params = dict(p.partition("=")[::2] for p in query.split("&") if p)
        body = request.body
        if body is None:
            body = b""
        elif hasattr(body, "read"):
            body = body.read()
        body = bytes(body)
        meta = {
            k[len("x-amz-meta-"):].lower(): (v.decode() if isinstance(v, bytes) else v)
            for k, v in request.headers.items()
            if k.lower().startswith("x-amz-meta-")
        }
        ok = {"ETag": '"x"'}
        if request.method == "POST" and "uploads" in params:  # CreateMultipartUpload
            self.uploads = {"meta": meta, "parts": {}}
            xml = b"<InitiateMultipartUploadResult><UploadId>u1</UploadId></InitiateMultipartUploadResult>"
            return AWSResponse(request.url, 200, ok, _Raw(xml))
        if request.method == "PUT" and "partNumber" in params:  # UploadPart
            self.uploads["parts"][int(params["partNumber"])] = body
            return AWSResponse(request.url, 200, ok, _Raw(b""))
        if request.method == "POST" and "uploadId" in params:  # CompleteMultipartUpload
            parts = self.uploads["parts"]
            self.objects[key] = (self.uploads["meta"], b"".join(parts[n] for n in sorted(parts)))
            xml = b"<CompleteMultipartUploadResult><ETag>x</ETag></CompleteMultipartUploadResult>"
            return AWSResponse(request.url, 200, ok, _Raw(xml))
        if request.method == "PUT":
            self.objects[key] = (meta, body)
            return AWSResponse(request.url, 200, ok, _Raw(b""))
        if request.method == "GET":
            if key not in self.objects:
                err = b"<Error><Code>NoSuchKey</Code><Message>no</Message></Error>"
                return AWSResponse(request.url, 404, {"Content-Type": "application/xml"}, _Raw(err))
            meta, body = self.objects[key]
            headers = {"Content-Length": str(len(body)), "ETag": '"x"'}
            headers.update({f"x-amz-meta-{k}": v for k, v in meta.items()})
            return AWSResponse(request.url, 200, headers, _Raw(body))
        raise AssertionError(f"unexpected {request.method}")


def s3ec(store, policy="RequireEncryptRequireDecrypt", v2=False):
    config = S3EncryptionClientConfig(
        keyring=KmsKeyring(kms_client=FakeKms(), kms_key_id=FAKE_KMS_KEY_ID),
        encryption_algorithm=(
            AlgorithmSuite.ALG_AES_256_GCM_IV12_TAG16_NO_KDF
            if v2
            else AlgorithmSuite.ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY
        ),
        commitment_policy=POLICIES[policy],
    )
    return S3EncryptionClient(store.client, config)


def official_decrypt(metadata, body, instruction_file=None, context=None, policy=None):
    """Decrypts with the official client; returns the plaintext or raises."""
    store = MemoryS3()
    store.objects["obj"] = (dict(metadata), body)
    if instruction_file is not None:
        store.objects["obj.instruction"] = (
            {"x-amz-crypto-instr-file": ""},
            instruction_file.encode(),
        )
    policy = policy or "RequireEncryptRequireDecrypt"
    # The client's configuration must agree with the policy (Forbid… encrypts only V2).
    client = s3ec(store, policy, v2=policy == "ForbidEncryptAllowDecrypt")
    kwargs = {"Bucket": BUCKET, "Key": "obj"}
    if context:
        kwargs["EncryptionContext"] = context
    return client.get_object(**kwargs)["Body"].read()


def plaintext_of(n):
    """Byte i is (7i + 3) mod 256 (period 256), as plaintext() in the Rust tests."""
    period = bytes((i * 7 + 3) % 256 for i in range(256))
    return (period * (n // 256 + 1))[:n]


def generate(out):
    os.makedirs(out, exist_ok=True)
    made = []

    def write(name, metadata, body, plain, context=None, policy="RequireEncryptRequireDecrypt",
              instruction_file=None, expect="ok", note=""):
        # Every vector is first checked against the official client.
        try:
            got = official_decrypt(metadata, body, instruction_file, context, policy)
            rejected = None
        except Exception as e:  # noqa: BLE001 - any failure is a rejection
            got, rejected = None, f"{type(e).__name__}: {e}"
        if name.startswith("fail_"):
            assert rejected is not None, f"{name}: the official client accepted it"
        else:
            assert rejected is None, f"{name}: the official client rejected it: {rejected}"
            assert got == plain, f"{name}: the official client decrypted something else"
        doc = {
            "note": note,
            "metadata": metadata,
            "encryption_context": context or {},
            "policy": policy,
            "instruction_file": instruction_file,
            "expect": expect,
            "official_client": "accepted" if rejected is None else rejected[:200],
        }
        with open(os.path.join(out, name + ".json"), "w") as f:
            json.dump(doc, f, indent=2, sort_keys=True)
            f.write("\n")
        with open(os.path.join(out, name + ".body"), "wb") as f:
            f.write(body)
        if not name.startswith("fail_"):
            with open(os.path.join(out, name + ".plain"), "wb") as f:
                f.write(plain)
        made.append(name)

    def put(key, plain, context=None, v2=False):
        store = MemoryS3()
        kwargs = {"Bucket": BUCKET, "Key": key, "Body": plain}
        if context:
            kwargs["EncryptionContext"] = context
        s3ec(store, "ForbidEncryptAllowDecrypt" if v2 else "RequireEncryptRequireDecrypt",
             v2=v2).put_object(**kwargs)
        return store.objects[key]

    ctx = {"purpose": "golden vectors", "tenant": "t-1"}
    allow = "RequireEncryptAllowDecrypt"
    sizes = {"0B": 0, "1B": 1, "17B": 17, "70KiB": 70 * 1024 + 5}
    for label, n in sizes.items():
        p = plaintext_of(n)
        m, b = put("k", p)
        write(f"v3_kms_{label}", m, b, p, note="V3, kms+context, no caller context")
        m, b = put("k", p, v2=True)
        write(f"v2_kms_{label}", m, b, p, policy=allow, note="V2, kms+context")
    p = plaintext_of(1000)
    m3, b3 = put("k", p, ctx)
    write("v3_kms_context", m3, b3, p, context=ctx, note="V3 with a caller encryption context")
    m2, b2 = put("k", p, ctx, v2=True)
    write("v2_kms_context", m2, b2, p, context=ctx, policy=allow,
          note="V2 with a caller encryption context")
    write("v2_kms_context_forbid", m2, b2, p, context=ctx, policy="ForbidEncryptAllowDecrypt",
          note="V2 read under ForbidEncryptAllowDecrypt")

    # Multipart, as the official client uploads it: one GCM stream over all parts.
    store = MemoryS3()
    client = s3ec(store)
    p_mp = plaintext_of(3 * 1024 + 1)
    client.create_multipart_upload(Bucket=BUCKET, Key="mp", EncryptionContext=ctx)
    pieces = [p_mp[:1024], p_mp[1024:2048], p_mp[2048:]]
    for n, piece in enumerate(pieces, 1):
        client.upload_part(Bucket=BUCKET, Key="mp", UploadId="u1", PartNumber=n, Body=piece,
                           IsLastPart=n == len(pieces))
    client.complete_multipart_upload(
        Bucket=BUCKET, Key="mp", UploadId="u1",
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": "x"} for n in (1, 2, 3)]})
    mm, mb = store.objects["mp"]
    write("v3_kms_multipart", mm, mb, p_mp, context=ctx,
          note="V3 uploaded in three parts with the official client's multipart API")

    # Instruction files, split as the specification says (the Python client reads them but does
    # not write them); the official client must read them back.
    obj_keys = ("x-amz-c", "x-amz-d", "x-amz-i")
    inst = {k: v for k, v in m3.items() if k not in obj_keys}
    objm = {k: v for k, v in m3.items() if k in obj_keys}
    write("v3_kms_instruction", objm, b3, p, context=ctx, instruction_file=json.dumps(inst),
          note="V3 with an instruction file: x-amz-c/d/i in the object, the rest in the file")
    write("v2_kms_instruction", {}, b2, p, context=ctx, policy=allow,
          instruction_file=json.dumps(m2), note="V2 with everything in an instruction file")

    # Must be rejected.
    def flip(b, i):
        b = bytearray(b)
        b[i] ^= 0x01
        return bytes(b)

    def b64flip(v):
        raw = bytearray(base64.b64decode(v))
        raw[0] ^= 0x01
        return base64.b64encode(bytes(raw)).decode()

    write("fail_v3_tampered-body", m3, flip(b3, 10), p, context=ctx, expect="TamperedObject")
    write("fail_v3_tampered-tag", m3, flip(b3, len(b3) - 1), p, context=ctx,
          expect="TamperedObject")
    write("fail_v3_truncated", m3, b3[:-1], p, context=ctx, expect="TamperedObject")
    write("fail_v3_commitment", {**m3, "x-amz-d": b64flip(m3["x-amz-d"])}, b3, p, context=ctx,
          expect="CommitmentMismatch")
    write("fail_v3_message-id", {**m3, "x-amz-i": b64flip(m3["x-amz-i"])}, b3, p, context=ctx,
          expect="CommitmentMismatch")
    write("fail_v3_wrong-context", m3, b3, p, context={"purpose": "something else"},
          expect="EncryptionContextMismatch")
    write("fail_v3_missing-context", m3, b3, p, context=None, expect="EncryptionContextMismatch")
    write("fail_v3_tampered-edk", {**m3, "x-amz-3": b64flip(m3["x-amz-3"])}, b3, p, context=ctx,
          expect="Keyring")
    write("fail_v3_mixed-v2-key", {**m3, "x-amz-key-v2": m2["x-amz-key-v2"]}, b3, p, context=ctx,
          expect="InvalidS3ecMetadata")
    write("fail_v3_instruction-has-commitment", objm, b3, p, context=ctx,
          instruction_file=json.dumps({**inst, "x-amz-d": m3["x-amz-d"]}),
          expect="InvalidS3ecMetadata")
    write("fail_v2_default-policy", m2, b2, p, context=ctx, expect="CommitmentPolicyViolation",
          note="a non-committing object under the default policy")
    write("fail_v2_tampered-body", m2, flip(b2, 3), p, context=ctx, policy=allow,
          expect="TamperedObject")
    write("fail_v2_iv", {**m2, "x-amz-iv": b64flip(m2["x-amz-iv"])}, b2, p, context=ctx,
          policy=allow, expect="TamperedObject")
    # A V3 object relabelled as V2 (downgrade): the data key is bound to suite 115.
    down = {
        "x-amz-key-v2": m3["x-amz-3"],
        "x-amz-iv": base64.b64encode(b"\x01" * 12).decode(),
        "x-amz-cek-alg": "AES/GCM/NoPadding",
        "x-amz-wrap-alg": "kms+context",
        "x-amz-matdesc": m3["x-amz-t"],
        "x-amz-tag-len": "128",
    }
    write("fail_downgrade_v3-as-v2", down, b3, p, context=ctx, policy=allow,
          expect="EncryptionContextMismatch")
    return made


def decrypt_one(req):
    try:
        plain = official_decrypt(
            req["metadata"],
            base64.b64decode(req["body_b64"]),
            req.get("instruction_file"),
            req.get("encryption_context") or None,
            req.get("policy"),
        )
        return {"ok": True, "plaintext_b64": base64.b64encode(plain).decode()}
    except Exception as e:  # noqa: BLE001 - any failure is a rejection
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}


def decrypt_stdin():
    """One request object, or a list of them (one answer each, in order)."""
    req = json.load(sys.stdin)
    if isinstance(req, list):
        print(json.dumps([decrypt_one(r) for r in req]))
    else:
        print(json.dumps(decrypt_one(req)))


def live_client(policy="RequireEncryptRequireDecrypt", v2=False):
    """The official client on a real S3 server (ENVELOPE_TEST_S3_*), KMS still the stand-in."""
    env = os.environ
    s3 = boto3.client(
        "s3",
        endpoint_url=env["ENVELOPE_TEST_S3_ENDPOINT"],
        region_name=env.get("ENVELOPE_TEST_S3_REGION", "garage"),
        aws_access_key_id=env["ENVELOPE_TEST_S3_ACCESS_KEY_ID"],
        aws_secret_access_key=env["ENVELOPE_TEST_S3_SECRET_ACCESS_KEY"],
        config=Config(s3={"addressing_style": "path"}),
    )
    config = S3EncryptionClientConfig(
        keyring=KmsKeyring(kms_client=FakeKms(), kms_key_id=FAKE_KMS_KEY_ID),
        encryption_algorithm=(
            AlgorithmSuite.ALG_AES_256_GCM_IV12_TAG16_NO_KDF
            if v2
            else AlgorithmSuite.ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY
        ),
        commitment_policy=POLICIES[policy],
    )
    return S3EncryptionClient(s3, config)


def live_one(cmd):
    """put: the official client uploads plaintext_of(size) (multipart: parts of part_size);
    get: it downloads and decrypts, and reports the plaintext's length and SHA-256."""
    bucket = os.environ["ENVELOPE_TEST_S3_BUCKET"]
    key, ctx = cmd["key"], cmd.get("encryption_context") or None
    try:
        if cmd["op"] == "put":
            v2 = cmd.get("v2", False)
            client = live_client("ForbidEncryptAllowDecrypt" if v2 else
                                 "RequireEncryptRequireDecrypt", v2=v2)
            data = plaintext_of(cmd["size"])
            extra = {"EncryptionContext": ctx} if ctx else {}
            part = cmd.get("part_size")
            if not part:
                client.put_object(Bucket=bucket, Key=key, Body=data, **extra)
            else:
                up = client.create_multipart_upload(Bucket=bucket, Key=key, **extra)
                pieces = [data[i:i + part] for i in range(0, len(data), part)] or [b""]
                parts = []
                for n, piece in enumerate(pieces, 1):
                    r = client.upload_part(Bucket=bucket, Key=key, UploadId=up["UploadId"],
                                           PartNumber=n, Body=piece,
                                           IsLastPart=n == len(pieces))
                    parts.append({"PartNumber": n, "ETag": r["ETag"]})
                client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up["UploadId"],
                                                 MultipartUpload={"Parts": parts})
            return {"ok": True}
        if cmd["op"] == "get":
            policy = cmd.get("policy", "RequireEncryptRequireDecrypt")
            client = live_client(policy, v2=policy == "ForbidEncryptAllowDecrypt")
            extra = {"EncryptionContext": ctx} if ctx else {}
            plain = client.get_object(Bucket=bucket, Key=key, **extra)["Body"].read()
            return {"ok": True, "len": len(plain), "sha256": hashlib.sha256(plain).hexdigest()}
        raise ValueError(f"unknown op {cmd['op']}")
    except Exception as e:  # noqa: BLE001 - any failure is a rejection
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "generate":
        names = generate(sys.argv[2])
        print(f"wrote {len(names)} vectors to {sys.argv[2]}")
    elif len(sys.argv) == 2 and sys.argv[1] == "decrypt":
        decrypt_stdin()
    elif len(sys.argv) == 2 and sys.argv[1] == "live":
        print(json.dumps([live_one(c) for c in json.load(sys.stdin)]))
    else:
        sys.exit(__doc__)
