"""`envelope encrypt|decrypt` with KMS keys on a running `envelope serve` (the KMS keyring end to end), and
what a refused decryption leaves behind (raw keys, no server)."""

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import envelope_bin


def run(args, env, ok=True):
    p = subprocess.run([envelope_bin(), *args], env=env, capture_output=True, text=True, timeout=60)
    if ok:
        assert p.returncode == 0, p.stderr
    return p


def test_kms_keys_strict_and_discovery(server, kms, tmp_path):
    arn = kms.create_key()["KeyMetadata"]["Arn"]
    kms.create_alias(AliasName="alias/cli-files", TargetKeyId=arn)
    ak, sk = server.credentials
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ak, AWS_SECRET_ACCESS_KEY=sk, AWS_REGION="us-east-1",
               AWS_EC2_METADATA_DISABLED="true")
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KMS"):
        env.pop(var, None)
    plain = tmp_path / "p"
    plain.write_bytes(os.urandom(300_000))
    msg = tmp_path / "p.env"
    run(["encrypt", str(plain), "-o", str(msg), "--key", "alias/cli-files", "--endpoint-url", server.endpoint,
         "--context", "app=cli", "-q"], env)
    out = tmp_path / "strict.out"
    run(["decrypt", str(msg), "-o", str(out), "--key", arn, "--endpoint-url", server.endpoint,
         "--context", "app=cli", "-q"], env)
    assert out.read_bytes() == plain.read_bytes()
    # An alias names the key too: resolved to its key ARN, it decrypts; another key's alias or ARN does not.
    out_alias = tmp_path / "alias.out"
    run(["decrypt", str(msg), "-o", str(out_alias), "--key", "alias/cli-files", "--endpoint-url", server.endpoint,
         "--context", "app=cli", "-q"], env)
    assert out_alias.read_bytes() == plain.read_bytes()
    other = kms.create_key()["KeyMetadata"]["Arn"]
    kms.create_alias(AliasName="alias/cli-other", TargetKeyId=other)
    for bad in (other, "alias/cli-other"):
        refused = tmp_path / "other.out"
        p = run(["decrypt", str(msg), "-o", str(refused), "--key", bad, "--endpoint-url", server.endpoint,
                 "--context", "app=cli"], env, ok=False)
        assert p.returncode == 1 and "no keyring could decrypt" in p.stderr, (bad, p.stderr)
        assert not refused.exists()
    # Discovery, with the endpoint from the AWS SDK's service-specific variable.
    out2 = tmp_path / "discovery.out"
    run(["decrypt", str(msg), "-o", str(out2), "--discovery", "-q"], dict(env, AWS_ENDPOINT_URL_KMS=server.endpoint))
    assert out2.read_bytes() == plain.read_bytes()
    # A discovery filter for another account decrypts nothing and leaves no file.
    out3 = tmp_path / "refused.out"
    p = run(["decrypt", str(msg), "-o", str(out3), "--discovery", "--discovery-account", "999999999999",
             "--endpoint-url", server.endpoint], env, ok=False)
    assert p.returncode == 1 and "no keyring could decrypt" in p.stderr, p.stderr
    assert not out3.exists()
    # A disabled key: the KMS error is named, no output.
    kms.disable_key(KeyId=arn)
    try:
        p = run(["decrypt", str(msg), "-o", str(out3), "--key", arn, "--endpoint-url", server.endpoint],
                env, ok=False)
        assert p.returncode == 1 and "DisabledException" in p.stderr, p.stderr
        assert not out3.exists()
    finally:
        kms.enable_key(KeyId=arn)


# ------------------------------------------------------------------------------------------------
# A refused decryption changes nothing: no output file (nor its temporary file), an existing output
# left as it was with --force, and on standard output exactly the plaintext of the regular frames
# that verified before the failure, never a byte of the final frame. trycmd's `.out/` comparison is a
# subset match and cannot show that a file is absent, hence these tests through the binary.

FL = 4096
REGULAR = 10  # regular frames of the message below
FINAL = 1000  # plaintext bytes of its final frame
FRAME_BYTES = 4 + 12 + FL + 16  # a serialized regular frame


def raw_key(tmp_path, name="wrap.key"):
    key = tmp_path / name
    key.write_bytes(os.urandom(32))
    return ["--raw-key-file", str(key), "--key-name", "k1"]


def encrypt_raw(tmp_path, plain: bytes, key_args, *extra) -> bytes:
    src, msg = tmp_path / "plain.bin", tmp_path / "msg.env"
    src.write_bytes(plain)
    run(["encrypt", str(src), "-o", str(msg), *key_args, "--frame-size", str(FL), "--context", "app=t", "-q",
         "--force", *extra], os.environ)
    return msg.read_bytes()


def header_len(message: bytes, plain_len: int) -> int:
    regular, final = divmod(plain_len, FL)
    return len(message) - regular * FRAME_BYTES - (4 + 4 + 12 + 4 + final + 16)


def flip(message: bytes, at: int) -> bytes:
    m = bytearray(message)
    m[at] ^= 1
    return bytes(m)


def plaintext_of(n: int) -> bytes:
    return bytes((i * 31 + 7) % 251 for i in range(n))


# Each refusal: how the message (or the arguments) are spoiled, what stderr names, and how many regular
# frames verify before it (what `-o -` may carry).
REFUSALS = {
    "tampered-frame-4": (lambda m, h: flip(m, h + 3 * FRAME_BYTES + 100), [], "frame 4 failed authentication", 3),
    "tampered-final-frame": (lambda m, h: flip(m, len(m) - 5), [], "failed authentication", REGULAR),
    "truncated": (lambda m, h: m[:-1], [], "message truncated", REGULAR),
    "trailing-data": (lambda m, h: m + b"\0", [], "unexpected data after the end of the message", REGULAR),
    "wrong-context": (lambda m, h: m, ["--context", "app=other"], "encryption context mismatch", 0),
    "too-many-data-keys": (lambda m, h: m, ["--max-data-keys", "0"], "more than the limit of 0", 0),
    "frame-over-the-limit": (lambda m, h: m, ["--max-frame-length", str(FL - 1)],
                             f"content of {FL} bytes exceeds the buffering limit of {FL - 1} bytes", 0),
    "wrong-key": (lambda m, h: m, "wrong-key", "no keyring could decrypt", 0),
}


@pytest.fixture(scope="module")
def spoiled(tmp_path_factory):
    """The message of every refusal, the arguments to decrypt it with, and the plaintext."""
    d = tmp_path_factory.mktemp("refusals")
    key_args = raw_key(d)
    plain = plaintext_of(REGULAR * FL + FINAL)
    message = encrypt_raw(d, plain, key_args)
    h = header_len(message, len(plain))
    other_key = raw_key(d, "other.key")
    cases = {}
    for name, (spoil, extra, _, _) in REFUSALS.items():
        path = d / f"{name}.env"
        path.write_bytes(spoil(message, h))
        args = other_key if extra == "wrong-key" else [*key_args, "--context", "app=t", *extra]
        cases[name] = (path, args)
    return cases, plain


def decrypt_to(msg: Path, out: str, args, *, stdin: bool, threads: int, extra=()):
    source = "-" if stdin else str(msg)
    data = msg.read_bytes() if stdin else None
    return subprocess.run([envelope_bin(), "decrypt", source, "-o", out, *args, "--threads", str(threads), *extra],
                          input=data, capture_output=True, timeout=60)


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("stdin", [False, True], ids=["file", "stdin"])
@pytest.mark.parametrize("refusal", REFUSALS)
def test_a_refused_decrypt_leaves_no_output_and_an_existing_one_untouched(spoiled, tmp_path, refusal, stdin,
                                                                         threads):
    cases, _ = spoiled
    msg, args = cases[refusal]
    expected_error = REFUSALS[refusal][2]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "out.txt"
    p = decrypt_to(msg, str(out), args, stdin=stdin, threads=threads)
    err = p.stderr.decode()
    assert p.returncode == 1 and expected_error in err and "no output written" in err, err
    assert list(out_dir.iterdir()) == [], "an output or temporary file was left"
    # Over an existing file, with --force: it keeps its bytes (the rename never happened).
    out.write_bytes(b"the old contents")
    p = decrypt_to(msg, str(out), args, stdin=stdin, threads=threads, extra=["--force"])
    assert p.returncode == 1 and expected_error in p.stderr.decode(), p.stderr
    assert list(out_dir.iterdir()) == [out]
    assert out.read_bytes() == b"the old contents"


@pytest.mark.parametrize("refusal", ["tampered-frame-4", "tampered-final-frame", "truncated"])
def test_a_refused_range_leaves_no_output(spoiled, tmp_path, refusal):
    cases, _ = spoiled
    msg, args = cases[refusal]
    out = tmp_path / "out.txt"
    # The range ends in frame 5, so it reads frame 4 as well as the final frame.
    p = decrypt_to(msg, str(out), args, stdin=False, threads=1, extra=["--range", f"{3 * FL}-{4 * FL + 10}"])
    assert p.returncode == 1 and "no output written" in p.stderr.decode(), p.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("stdin", [False, True], ids=["file", "stdin"])
@pytest.mark.parametrize("refusal", REFUSALS)
def test_a_refused_decrypt_to_stdout_carries_only_the_regular_frames_that_verified(spoiled, refusal, stdin, threads):
    """What the README promises for `-o -`: after a failure, standard output holds exactly the plaintext of
    regular frames 1..k, the frames before the failure, in order (k = 0: nothing), never a byte of the final
    frame; the exit status is 1 and stderr says to discard it."""
    cases, plain = spoiled
    msg, args = cases[refusal]
    verified = REFUSALS[refusal][3]
    p = decrypt_to(msg, "-", args, stdin=stdin, threads=threads)
    err = p.stderr.decode()
    assert p.returncode == 1 and "is incomplete: discard it" in err, err
    assert p.stdout == plain[:verified * FL], f"{len(p.stdout)} bytes on stdout, expected {verified * FL}"


@pytest.mark.parametrize("threads", [1, 3])
def test_a_signed_message_with_a_bad_signature_releases_no_final_frame(tmp_path, threads):
    key_args = raw_key(tmp_path)
    plain = plaintext_of(REGULAR * FL + FINAL)
    message = encrypt_raw(tmp_path, plain, key_args, "--suite", "0x0578")
    # The signature is the last bytes of the message: its frames all verify, the signature does not.
    msg = tmp_path / "bad-signature.env"
    msg.write_bytes(flip(message, len(message) - 3))
    p = decrypt_to(msg, "-", [*key_args, "--context", "app=t"], stdin=True, threads=threads)
    assert p.returncode == 1 and "signature does not verify" in p.stderr.decode(), p.stderr
    assert p.stdout == plain[:REGULAR * FL]
    out = tmp_path / "out"
    out.mkdir()
    p = decrypt_to(msg, str(out / "out.txt"), [*key_args, "--context", "app=t"], stdin=False, threads=threads)
    assert p.returncode == 1 and "no output written" in p.stderr.decode(), p.stderr
    assert list(out.iterdir()) == []


def test_an_exact_multiple_of_the_frame_length_may_show_all_its_plaintext_but_still_fails(tmp_path):
    """The documented corner: a plaintext of whole frames ends with an empty final frame, so when only that
    frame fails, standard output holds every plaintext byte; only the exit status says it is not authentic."""
    key_args = raw_key(tmp_path)
    plain = plaintext_of(REGULAR * FL)
    message = encrypt_raw(tmp_path, plain, key_args)
    msg = tmp_path / "final-tampered.env"
    msg.write_bytes(flip(message, len(message) - 5))
    p = decrypt_to(msg, "-", [*key_args, "--context", "app=t"], stdin=False, threads=1)
    assert p.returncode == 1 and "frame 11 failed authentication" in p.stderr.decode(), p.stderr
    assert p.stdout == plain


def test_trace_logging_prints_no_data_key_or_secret(server, kms, tmp_path):
    """At ENVELOPE_LOG=trace the CLI logs the AWS SDK's work. The SDK's request and response log prints
    bodies at trace (Decrypt's response carries the data key once LOG_SENSITIVE_BODIES is set; an
    Encrypt for a second --key carries it in the request), so the CLI caps that log at debug: neither
    the data key (no `Plaintext` member anywhere) nor the secret access key is in stderr."""
    first = kms.create_key()["KeyMetadata"]["Arn"]
    second = kms.create_key()["KeyMetadata"]["Arn"]
    ak, sk = server.credentials
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ak, AWS_SECRET_ACCESS_KEY=sk, AWS_REGION="us-east-1",
               AWS_EC2_METADATA_DISABLED="true", ENVELOPE_LOG="trace", LOG_SENSITIVE_BODIES="true")
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KMS"):
        env.pop(var, None)
    plain = tmp_path / "p"
    plain.write_bytes(os.urandom(1000))
    msg = tmp_path / "p.env"
    enc = run(["encrypt", str(plain), "-o", str(msg), "--key", first, "--key", second, "--endpoint-url",
               server.endpoint, "-q"], env)
    out = tmp_path / "out"
    dec = run(["decrypt", str(msg), "-o", str(out), "--key", second, "--endpoint-url", server.endpoint, "-q"],
              env)
    assert out.read_bytes() == plain.read_bytes()
    for what, p in (("encrypt", enc), ("decrypt", dec)):
        assert "TRACE" in p.stderr, f"{what} did not log at trace level"
        assert "Plaintext" not in p.stderr, f"{what} logged a data key"
        assert sk not in p.stderr, f"{what} logged the secret access key"


def test_a_kms_that_never_answers_fails_encrypt_after_the_read_timeout(tmp_path):
    """`--read-timeout 1`: each KMS call to an endpoint that takes requests and never answers times out
    after a second, the SDK retries it, and encrypt fails with no output file instead of hanging."""
    listener = socket.create_server(("127.0.0.1", 0))
    held = []

    def swallow():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=swallow, daemon=True).start()
    src, out = tmp_path / "plain", tmp_path / "out"
    src.write_bytes(b"x" * 100)
    env = dict(os.environ, AWS_ACCESS_KEY_ID="AKIDEXAMPLE", AWS_SECRET_ACCESS_KEY="secret", AWS_REGION="us-east-1",
               AWS_EC2_METADATA_DISABLED="true")
    start = time.monotonic()
    try:
        p = subprocess.run([envelope_bin(), "encrypt", str(src), "-o", str(out), "--key", "alias/never",
                            "--endpoint-url", f"http://127.0.0.1:{listener.getsockname()[1]}", "--read-timeout", "1"],
                           env=env, capture_output=True, timeout=60)
    finally:
        listener.close()
        for conn in held:
            conn.close()
    err = p.stderr.decode()
    assert p.returncode != 0 and "read timeout" in err.lower(), err
    assert time.monotonic() - start < 15, err
    assert not out.exists()
