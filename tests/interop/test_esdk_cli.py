"""Interoperability with the AWS Encryption SDK CLI (`aws-encryption-cli`), its KMS keyring pointed at envelope.

Both directions (it encrypts -> `envelope decrypt`; `envelope encrypt` -> it decrypts), for the sizes 0, 1,
frame-1, frame, frame+1, 3 frames+7 at a 4096-byte frame, and 50 MiB at each side's default frame length;
the key-committing suites with and without the ECDSA P-384 signature; an encryption context (with a non-ASCII
pair) that the decrypting side requires. Then: the wrong encryption context or key is refused by either
side, tampered or truncated messages are refused by `envelope decrypt` (non-zero exit, the precise reason,
no output file), and the ESDK's legacy formats (version 1 suites, non-framed content) decrypt.

The ESDK CLI lives in a venv of its own (tests/requirements-esdk-cli.txt; scripts/test builds it and sets
ESDK_CLI to its `aws-encryption-cli`). It starts slowly (Python), so it is run once per batch: a whole
directory per invocation (`-r`), shared by the per-size tests through module-scoped fixtures. Without
ESDK_CLI these tests are skipped, or fail when CI is set.

Note on the ESDK CLI: when a required encryption context pair is missing it skips the file, deletes the
output, records `"skipped": true` in its metadata and still exits 0; the tests check the output and the
metadata, not its exit status.
"""

from __future__ import annotations

import filecmp
import json
import os
import re
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import envelope_bin

FRAME = 4096
MIB = 1 << 20
ENVELOPE_DEFAULT_FRAME = 65536
ESDK_DEFAULT_FRAME = 4096

UNSIGNED = "AES_256_GCM_HKDF_SHA512_COMMIT_KEY"
SIGNED = "AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384"
SUITE_IDS = {UNSIGNED: 0x0478, SIGNED: 0x0578}
SUITES = {"unsigned": UNSIGNED, "signed": SIGNED}

SMALL_SIZES = {
    "0": 0,
    "1": 1,
    "frame-1": FRAME - 1,
    "frame": FRAME,
    "frame+1": FRAME + 1,
    "3frames+7": 3 * FRAME + 7,
}
BIG = "50MiB"
SIZES = {**SMALL_SIZES, BIG: 50 * MIB}

# The 50 MiB case, once per direction, at each tool's defaults: the ESDK CLI's default suite is the signed
# committing one (and its default frame 4096 bytes); envelope's is the unsigned one (frame 65536 bytes).
BIG_SUITE = {"esdk": "signed", "envelope": "unsigned"}

CONTEXT = {"app": "envelope-interop", "région": "Zürich ünïcode"}

ESDK_TIMEOUT = 240


# ---------------------------------------------------------------- the ESDK CLI and the environment

@pytest.fixture(scope="module")
def esdk_cli() -> str:
    path = os.environ.get("ESDK_CLI")
    if path:
        if not os.access(path, os.X_OK):
            pytest.fail(f"ESDK_CLI={path} is not an executable (build its venv: scripts/test)")
        return path
    msg = "ESDK_CLI not set (scripts/test builds tests/requirements-esdk-cli.txt and sets it)"
    if os.environ.get("CI"):
        pytest.fail(msg + "; CI is set, so this is a failure")
    pytest.skip(msg)


@pytest.fixture(scope="module")
def aws_env(server, tmp_path_factory) -> dict:
    """Credentials of the server's principal and its endpoint, as the AWS SDKs read them; nothing from
    the user's own AWS configuration."""
    ak, sk = server.credentials
    nowhere = tmp_path_factory.mktemp("no-aws-config")
    env = dict(os.environ)
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
                "ENVELOPE_KMS_ENDPOINT_URL", "AWS_CA_BUNDLE"):
        env.pop(var, None)
    env.update(
        AWS_ACCESS_KEY_ID=ak,
        AWS_SECRET_ACCESS_KEY=sk,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        AWS_ENDPOINT_URL_KMS=server.endpoint,
        AWS_CONFIG_FILE=str(nowhere / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(nowhere / "credentials"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


@pytest.fixture(scope="module")
def key_arn(kms) -> str:
    arn = kms.create_key(Description="esdk-cli interop")["KeyMetadata"]["Arn"]
    assert arn.startswith("arn:aws:kms:us-east-1:"), arn
    return arn


@pytest.fixture(scope="module")
def other_key_arn(kms) -> str:
    return kms.create_key(Description="esdk-cli interop: not the message's key")["KeyMetadata"]["Arn"]


def context_args(flag: str, context: dict) -> list[str]:
    out = []
    for k, v in context.items():
        out += [flag, f"{k}={v}"]
    return out


def esdk(cli: str, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([cli, *args], env=env, capture_output=True, text=True, timeout=ESDK_TIMEOUT)


def envelope(env: dict, *args: str) -> subprocess.CompletedProcess:
    """Run envelope; stdout stays bytes (it may be plaintext), stderr is text."""
    p = subprocess.run([envelope_bin(), *args], env=env, capture_output=True, timeout=120)
    p.stderr = p.stderr.decode("utf-8", "replace")
    return p


def read_metadata(path: Path) -> dict[str, dict]:
    """The ESDK CLI's metadata records (JSON lines), by the base name of their input file."""
    out = {}
    for line in path.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            out[Path(rec["input"]).name] = rec
    return out


# ---------------------------------------------------------------- the message format, for the checks

@dataclass
class Frame:
    seq: int
    start: int  # offset of the frame (its sequence number, or the final-frame marker)
    body: int  # offset of the encrypted content
    length: int  # length of the encrypted content
    tag: int  # offset of the 16-byte tag
    final: bool


@dataclass
class Message:
    version: int
    suite: int
    context: dict
    frame_length: int
    auth_tag: int  # offset of the 16-byte header authentication tag
    frame_length_field: int  # offset of the frame length field in the header
    suite_data: int  # offset of the commitment key
    frames: list
    footer: int  # offset of the signature footer (== len for unsigned suites)
    size: int


def parse_v2(data: bytes) -> Message:
    """Parse a framed version-2 message (the committing suites) into its offsets."""
    pos = 0

    def take(n):
        nonlocal pos
        assert pos + n <= len(data), f"message too short at offset {pos} (+{n})"
        b = data[pos:pos + n]
        pos += n
        return b

    def u16():
        return struct.unpack(">H", take(2))[0]

    def u32():
        return struct.unpack(">I", take(4))[0]

    version = take(1)[0]
    assert version == 2, f"format version {version}"
    suite = u16()
    take(32)  # message id
    aad_len = u16()
    context = {}
    if aad_len:
        end = pos + aad_len
        for _ in range(u16()):
            k = take(u16()).decode()
            context[k] = take(u16()).decode()
        assert pos == end
    for _ in range(u16()):
        take(u16())
        take(u16())
        take(u16())
    content_type = take(1)[0]
    assert content_type == 2, "not framed"
    frame_length_field = pos
    frame_length = u32()
    suite_data = pos
    take(32)
    auth_tag = pos
    take(16)
    frames = []
    while True:
        start = pos
        seq = u32()
        final = seq == 0xFFFFFFFF
        if final:
            seq = u32()
        take(12)  # IV
        length = u32() if final else frame_length
        body = pos
        take(length)
        tag = pos
        take(16)
        frames.append(Frame(seq, start, body, length, tag, final))
        if final:
            break
    footer = pos
    if suite == 0x0578:
        take(u16())
    assert pos == len(data), f"{len(data) - pos} bytes after the message"
    return Message(version, suite, context, frame_length, auth_tag, frame_length_field, suite_data, frames,
                   footer, len(data))


def check_layout(msg: Message, *, suite: str, frame_length: int, plaintext_len: int, context: dict):
    assert msg.suite == SUITE_IDS[suite], f"suite {msg.suite:#06x}"
    assert msg.frame_length == frame_length
    for k, v in context.items():
        assert msg.context.get(k) == v, msg.context
    assert ("aws-crypto-public-key" in msg.context) == (suite == SIGNED), msg.context
    assert sum(f.length for f in msg.frames) == plaintext_len
    assert [f.seq for f in msg.frames] == list(range(1, len(msg.frames) + 1))
    assert all(f.length == frame_length for f in msg.frames if not f.final)


# ---------------------------------------------------------------- the batches

@pytest.fixture(scope="module")
def plaintexts(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("plain")
    out = {}
    for name, size in SIZES.items():
        p = d / f"p{name}"
        p.write_bytes(os.urandom(size))
        out[name] = p
    return out


def batch_sizes(direction: str, suite_key: str) -> list[str]:
    return list(SMALL_SIZES) + ([BIG] if BIG_SUITE[direction] == suite_key else [])


def size_params(direction: str):
    return [pytest.param(s, n, id=f"{s}-{n}") for s in SUITES for n in batch_sizes(direction, s)]


@dataclass
class Batch:
    dir: Path
    outputs: dict  # size name -> path of the encrypted (or decrypted) file
    proc: subprocess.CompletedProcess | None
    metadata: dict


@pytest.fixture(scope="module")
def esdk_encrypted(esdk_cli, aws_env, key_arn, plaintexts, tmp_path_factory):
    """aws-encryption-cli -e over a directory of plaintexts, once per suite. The signed suite is the CLI's
    default: it runs without --algorithm (and without --frame-length: its default is 4096)."""
    cache = {}

    def get(suite_key: str) -> Batch:
        if suite_key in cache:
            return cache[suite_key]
        root = tmp_path_factory.mktemp(f"esdk-enc-{suite_key}")
        src, dst = root / "in", root / "out"
        src.mkdir()
        dst.mkdir()
        names = batch_sizes("esdk", suite_key)
        for n in names:
            os.link(plaintexts[n], src / f"p{n}")
        args = ["-e", "-r", "-i", str(src), "-o", str(dst), "-w", f"key={key_arn}",
                "--metadata-output", str(root / "metadata.json"), "-c",
                *[f"{k}={v}" for k, v in CONTEXT.items()]]
        if SUITES[suite_key] != SIGNED:
            args += ["--algorithm", SUITES[suite_key]]
        p = esdk(esdk_cli, aws_env, *args)
        meta = root / "metadata.json"
        outputs = {n: dst / f"p{n}.encrypted" for n in names}
        cache[suite_key] = Batch(dst, outputs, p, read_metadata(meta) if meta.exists() else {})
        return cache[suite_key]

    return get


@pytest.fixture(scope="module")
def envelope_encrypted(aws_env, key_arn, plaintexts, tmp_path_factory):
    """`envelope encrypt` of each plaintext: a 4096-byte frame for the small sizes, all defaults for 50 MiB."""
    cache = {}

    def get(suite_key: str) -> Batch:
        if suite_key in cache:
            return cache[suite_key]
        dst = tmp_path_factory.mktemp(f"envelope-enc-{suite_key}")
        outputs = {}
        for n in batch_sizes("envelope", suite_key):
            out = dst / f"p{n}"
            args = ["encrypt", str(plaintexts[n]), "-o", str(out), "--key", key_arn, "-q",
                    *context_args("--context", CONTEXT)]
            if n != BIG:
                args += ["--suite", SUITES[suite_key], "--frame-size", str(FRAME)]
            p = envelope(aws_env, *args)
            assert p.returncode == 0, f"envelope encrypt {n} failed:\n{p.stderr}"
            outputs[n] = out
        cache[suite_key] = Batch(dst, outputs, None, {})
        return cache[suite_key]

    return get


@pytest.fixture(scope="module")
def esdk_decrypted(esdk_cli, aws_env, key_arn, envelope_encrypted, tmp_path_factory):
    """aws-encryption-cli -d over the directory of envelope's messages, once per suite, requiring the
    encryption context."""
    cache = {}

    def get(suite_key: str) -> Batch:
        if suite_key in cache:
            return cache[suite_key]
        enc = envelope_encrypted(suite_key)
        root = tmp_path_factory.mktemp(f"esdk-dec-{suite_key}")
        dst = root / "out"
        dst.mkdir()
        p = esdk(esdk_cli, aws_env, "-d", "-r", "-i", str(enc.dir), "-o", str(dst), "-w", f"key={key_arn}",
                 "--metadata-output", str(root / "metadata.json"), "-c",
                 *[f"{k}={v}" for k, v in CONTEXT.items()])
        meta = root / "metadata.json"
        outputs = {n: dst / f"p{n}.decrypted" for n in enc.outputs}
        cache[suite_key] = Batch(dst, outputs, p, read_metadata(meta) if meta.exists() else {})
        return cache[suite_key]

    return get


# ---------------------------------------------------------------- both directions

@pytest.mark.parametrize("suite_key,size", size_params("esdk"))
def test_esdk_encrypts_envelope_decrypts(suite_key, size, esdk_encrypted, plaintexts, aws_env, key_arn,
                                        tmp_path):
    suite = SUITES[suite_key]
    batch = esdk_encrypted(suite_key)
    assert batch.proc.returncode == 0, f"aws-encryption-cli -e -r failed:\n{batch.proc.stderr}"
    msg_path = batch.outputs[size]
    assert msg_path.exists(), f"aws-encryption-cli wrote no {msg_path.name}:\n{batch.proc.stderr}"
    plain = plaintexts[size]
    meta = batch.metadata[plain.name]
    assert meta["header"]["algorithm"] == suite and meta["header"]["encryption_context"].items() >= CONTEXT.items()
    check_layout(parse_v2(msg_path.read_bytes()), suite=suite, frame_length=ESDK_DEFAULT_FRAME,
                 plaintext_len=plain.stat().st_size, context=CONTEXT)

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "plain"
    p = envelope(aws_env, "decrypt", str(msg_path), "-o", str(out), "--key", key_arn, "-q",
                 "--metadata-output", str(tmp_path / "meta.json"), *context_args("--context", CONTEXT))
    assert p.returncode == 0, p.stderr
    assert filecmp.cmp(out, plain, shallow=False), "plaintext differs"
    assert os.listdir(out_dir) == ["plain"]
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["header"]["algorithm_suite"] == f"{SUITE_IDS[suite]:#06x}", meta
    assert meta["header"]["frame_length"] == ESDK_DEFAULT_FRAME, meta
    assert meta["header"]["encryption_context"].items() >= CONTEXT.items(), meta


@pytest.mark.parametrize("suite_key,size", size_params("envelope"))
def test_envelope_encrypts_esdk_decrypts(suite_key, size, envelope_encrypted, esdk_decrypted, esdk_cli,
                                        plaintexts, aws_env, key_arn, tmp_path):
    suite = SUITES[suite_key]
    plain = plaintexts[size]
    msg_path = envelope_encrypted(suite_key).outputs[size]
    check_layout(parse_v2(msg_path.read_bytes()), suite=suite,
                 frame_length=ENVELOPE_DEFAULT_FRAME if size == BIG else FRAME,
                 plaintext_len=plain.stat().st_size, context=CONTEXT)

    batch = esdk_decrypted(suite_key)
    out = batch.outputs[size]
    if out.exists():
        meta = batch.metadata[msg_path.name]
        assert meta["header"]["algorithm"] == suite, meta["header"]
        assert meta["header"]["encryption_context"].items() >= CONTEXT.items(), meta["header"]
        assert not meta.get("skipped"), meta
    else:
        # The CLI stops the batch at the first failure: decrypt this file alone for its own verdict.
        alone = tmp_path / "alone.decrypted"
        p = esdk(esdk_cli, aws_env, "-d", "-i", str(msg_path), "-o", str(alone), "-w", f"key={key_arn}", "-S",
                 "-c", *[f"{k}={v}" for k, v in CONTEXT.items()])
        assert p.returncode == 0 and alone.exists(), (
            f"aws-encryption-cli cannot decrypt envelope's {size} message ({suite}):\n{p.stderr}")
        out = alone
    assert filecmp.cmp(out, plain, shallow=False), "plaintext differs"


def test_esdk_batches_succeeded(esdk_decrypted):
    """The per-size tests above re-run a file alone when the batch stopped early; this one says so."""
    for suite_key in SUITES:
        batch = esdk_decrypted(suite_key)
        assert batch.proc.returncode == 0, f"aws-encryption-cli -d -r ({suite_key}):\n{batch.proc.stderr}"
        missing = [n for n, p in batch.outputs.items() if not p.exists()]
        assert not missing, f"no output for {missing}"


# ---------------------------------------------------------------- wrong context, wrong key

@pytest.mark.parametrize("suite_key", list(SUITES))
def test_envelope_refuses_esdk_message_with_wrong_context_or_key(suite_key, esdk_encrypted, aws_env, key_arn,
                                                                 other_key_arn, tmp_path):
    msg_path = esdk_encrypted(suite_key).outputs["3frames+7"]
    cases = [
        (["--key", key_arn, "--context", "app=someone-else"], r"encryption context mismatch"),
        (["--key", key_arn, *context_args("--context", CONTEXT), "--context", "absent=x"],
         r"encryption context mismatch"),
        (["--key", key_arn, "--context", "région=Zurich ünïcode"], r"encryption context mismatch"),
        (["--key", other_key_arn, *context_args("--context", CONTEXT)], r"no keyring could decrypt"),
    ]
    for i, (args, reason) in enumerate(cases):
        out = tmp_path / f"out{i}"
        p = envelope(aws_env, "decrypt", str(msg_path), "-o", str(out), *args)
        assert p.returncode != 0, f"{args}: decrypted"
        assert re.search(reason, p.stderr), f"{args}: {p.stderr}"
        assert not out.exists()
    assert os.listdir(tmp_path) == []


def test_esdk_refuses_envelope_message_with_wrong_context(envelope_encrypted, esdk_cli, aws_env, key_arn,
                                                          tmp_path):
    msg_path = envelope_encrypted("unsigned").outputs["3frames+7"]
    out = tmp_path / "out"
    p = esdk(esdk_cli, aws_env, "-d", "-i", str(msg_path), "-o", str(out), "-w", f"key={key_arn}",
             "--metadata-output", str(tmp_path / "meta.json"), "-c", "app=someone-else")
    # The ESDK CLI skips the file (and exits 0): no output, and its metadata says why.
    assert not out.exists(), p.stderr
    meta = read_metadata(tmp_path / "meta.json")[msg_path.name]
    assert meta.get("skipped") is True, meta
    assert ["app", "someone-else"] in meta["missing_encryption_context_pairs"], meta


def test_esdk_refuses_envelope_message_with_wrong_key(envelope_encrypted, esdk_cli, aws_env, other_key_arn,
                                                      tmp_path):
    msg_path = envelope_encrypted("signed").outputs["3frames+7"]
    out = tmp_path / "out"
    p = esdk(esdk_cli, aws_env, "-d", "-i", str(msg_path), "-o", str(out), "-w", f"key={other_key_arn}", "-S")
    assert p.returncode != 0, p.stderr
    assert not out.exists()


# ---------------------------------------------------------------- tampering

def flip(data: bytearray, offset: int):
    data[offset] ^= 0x01


def tamper_cases(msg: Message, data: bytes):
    """name -> (tampered bytes, the reason envelope must give). For a 3 frames + 7 message."""
    assert len(msg.frames) == 4 and msg.frames[3].final and msg.frames[3].length == 7
    f1, f2, f3, final = msg.frames
    cases = {}

    def mutated(fn):
        b = bytearray(data)
        fn(b)
        return bytes(b)

    # The message id is the salt of the key derivation, so the commitment check catches it first.
    cases["header-message-id"] = (mutated(lambda b: flip(b, 5)), r"key commitment mismatch")
    cases["header-frame-length"] = (mutated(lambda b: flip(b, msg.frame_length_field + 3)),
                                    r"header authentication failed")
    cases["header-commitment"] = (mutated(lambda b: flip(b, msg.suite_data + 7)), r"key commitment mismatch")
    cases["header-auth-tag"] = (mutated(lambda b: flip(b, msg.auth_tag + 15)), r"header authentication failed")
    cases["frame2-body"] = (mutated(lambda b: flip(b, f2.body + 100)), r"frame 2 failed authentication")
    cases["frame1-tag"] = (mutated(lambda b: flip(b, f1.tag)), r"frame 1 failed authentication")
    cases["final-frame-body"] = (mutated(lambda b: flip(b, final.body + 6)), r"frame 4 failed authentication")

    def swap(b):
        one, two = bytes(b[f1.start:f2.start]), bytes(b[f2.start:f3.start])
        b[f1.start:f3.start] = two + one
    cases["frames-1-2-swapped"] = (mutated(swap), r"frame out of sequence: expected frame 1, found frame 2")
    cases["truncated-in-header"] = (data[:msg.auth_tag + 3], r"message truncated")
    cases["truncated-final-frame-dropped"] = (data[:final.start], r"message truncated")
    cases["truncated-last-byte"] = (data[:-1], r"message truncated")
    if msg.suite == SUITE_IDS[SIGNED]:
        cases["signature-flipped"] = (mutated(lambda b: flip(b, len(b) - 10)), r"signature does not verify")
        cases["signature-dropped"] = (data[:msg.footer], r"message truncated")
    else:
        cases["trailing-byte"] = (data + b"\0", r"unexpected data after the end of the message")
    return cases


TAMPER_NAMES = ["header-message-id", "header-frame-length", "header-commitment", "header-auth-tag", "frame2-body",
                "frame1-tag", "final-frame-body", "frames-1-2-swapped", "truncated-in-header",
                "truncated-final-frame-dropped", "truncated-last-byte"]
SIGNED_ONLY = ["signature-flipped", "signature-dropped"]
UNSIGNED_ONLY = ["trailing-byte"]


def tamper_params():
    for origin in ("esdk", "envelope"):
        for suite_key in SUITES:
            extra = SIGNED_ONLY if suite_key == "signed" else UNSIGNED_ONLY
            for name in TAMPER_NAMES + extra:
                yield pytest.param(origin, suite_key, name, id=f"{origin}-{suite_key}-{name}")


@pytest.mark.parametrize("origin,suite_key,case", list(tamper_params()))
def test_tampered_message_rejected_by_envelope(origin, suite_key, case, request, aws_env, key_arn, tmp_path):
    # envelope's own messages need no ESDK CLI: only the fixture of the message's origin is requested.
    make = request.getfixturevalue("esdk_encrypted" if origin == "esdk" else "envelope_encrypted")
    src = make(suite_key).outputs["3frames+7"]
    data = src.read_bytes()
    tampered, reason = tamper_cases(parse_v2(data), data)[case]
    assert tampered != data
    msg = tmp_path / "msg"
    msg.write_bytes(tampered)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "plain"
    p = envelope(aws_env, "decrypt", str(msg), "-o", str(out), "--key", key_arn,
                 *context_args("--context", CONTEXT))
    assert p.returncode != 0, f"envelope decrypted a message with {case}"
    assert re.search(reason, p.stderr), f"{case}: expected /{reason}/, got: {p.stderr}"
    assert not out.exists(), "an output file exists after a failed decrypt"
    assert os.listdir(out_dir) == [], f"left behind: {os.listdir(out_dir)}"
    # To standard output too: the same verdict, whatever was streamed before it.
    p = envelope(aws_env, "decrypt", str(msg), "-o", "-", "--key", key_arn, *context_args("--context", CONTEXT))
    assert p.returncode != 0, f"envelope decrypted a message with {case} to stdout"
    assert re.search(reason, p.stderr), f"{case} (stdout): expected /{reason}/, got: {p.stderr}"


# ---------------------------------------------------------------- the ESDK's legacy formats

LEGACY = {
    # The ESDK 1.x default: format version 1, signed, framed.
    "v1-signed-framed": ["--commitment-policy", "forbid-encrypt-allow-decrypt",
                         "--algorithm", "AES_256_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384"],
    # Version 1 without a key derivation, non-framed content.
    "v1-nokdf-nonframed": ["--commitment-policy", "forbid-encrypt-allow-decrypt",
                           "--algorithm", "AES_128_GCM_IV12_TAG16", "--frame-length", "0"],
    # Version 2 (committing, unsigned), non-framed content.
    "v2-nonframed": ["--algorithm", UNSIGNED, "--frame-length", "0"],
}


@pytest.mark.parametrize("variant", list(LEGACY))
def test_esdk_legacy_formats(variant, esdk_cli, aws_env, key_arn, plaintexts, tmp_path):
    src, dst = tmp_path / "in", tmp_path / "enc"
    src.mkdir()
    dst.mkdir()
    names = ["0", "frame+1"]
    for n in names:
        os.link(plaintexts[n], src / f"p{n}")
    p = esdk(esdk_cli, aws_env, "-e", "-r", "-i", str(src), "-o", str(dst), "-w", f"key={key_arn}", "-S",
             "-c", *[f"{k}={v}" for k, v in CONTEXT.items()], *LEGACY[variant])
    assert p.returncode == 0, p.stderr
    committing = variant.startswith("v2")
    for n in names:
        msg = dst / f"p{n}.encrypted"
        assert msg.read_bytes()[0] == (2 if committing else 1)
        base = ["decrypt", str(msg), "--key", key_arn, *context_args("--context", CONTEXT)]
        if not committing:
            refused = tmp_path / f"refused{n}"
            r = envelope(aws_env, *base, "-o", str(refused))
            assert r.returncode != 0 and "does not commit to its key" in r.stderr, r.stderr
            assert not refused.exists()
            base.append("--allow-non-committing")
        out = tmp_path / f"out{n}"
        r = envelope(aws_env, *base, "-o", str(out))
        assert r.returncode == 0, r.stderr
        assert out.read_bytes() == plaintexts[n].read_bytes()
