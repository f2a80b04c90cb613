"""Start-up behaviour of `envelope serve`: first start, restart, root-key checks, listen-address policy."""

import base64
import datetime
import hashlib
import ipaddress
import os
import signal
import sqlite3
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import Server, kms_client, read_credentials

SNAPSHOT_FILES = ("root.key", "credentials", "config")


def mode(p):
    return stat.S_IMODE(os.stat(p).st_mode)


def db_dump(data_dir):
    con = sqlite3.connect(f"file:{data_dir / 'envelope.db'}?mode=ro", uri=True)
    try:
        return list(con.iterdump())
    finally:
        con.close()


def snapshot(data_dir):
    files = {n: hashlib.sha256((data_dir / n).read_bytes()).hexdigest()
             for n in SNAPSHOT_FILES if (data_dir / n).exists()}
    return files, db_dump(data_dir)


def test_first_start_creates_data_dir(tmp_path):
    data = tmp_path / "fresh" / "envelope-data"
    s = Server(data).start()
    try:
        assert s.endpoint.startswith("http://127.0.0.1:")
        assert (data / "root.key").exists()
        assert mode(data / "root.key") == 0o600
        assert mode(data / "credentials") == 0o600
        assert (data / "envelope.db").exists()
        assert "[profile envelope]" in (data / "config").read_text()
        assert "us-east-1" in (data / "config").read_text()
        ak, sk = read_credentials(data)
        assert ak.startswith("AKIA")
        # Never the secret on stdout or stderr.
        assert sk not in "\n".join(s.stdout_lines)
        assert sk not in s.stderr_text()
        assert len(s.stdout_lines) == 1, s.stdout_lines
        kms_client(s.endpoint, ak, sk).list_keys()
    finally:
        s.stop()
    assert sk not in s.stderr_text()


def test_data_dir_files_are_owner_only_whatever_the_umask(tmp_path):
    """Started under umask 000, every file the server writes is 0600 and the directory 0700: the
    database, its WAL and shared-memory files (SQLite gives them the database file's mode), the root
    key, the credentials, the profile and the audit log."""
    data = tmp_path / "envelope-data"
    old = os.umask(0)
    try:
        s = Server(data).start()
    finally:
        os.umask(old)
    try:
        kms = kms_client(s.endpoint, *read_credentials(data))
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        kms.generate_data_key(KeyId=key, KeySpec="AES_256")
        names = {p.name for p in data.iterdir()}
        assert {"envelope.db", "envelope.db-wal", "envelope.db-shm", "root.key", "credentials",
                "config", "audit.log"} <= names, names
        assert mode(data) == 0o700
        wider = {p.name: oct(mode(p)) for p in data.iterdir() if mode(p) != 0o600}
        assert not wider, wider
    finally:
        s.stop()
    # Files someone widened are narrowed again at the next start, with a warning.
    for name in ("root.key", "credentials", "config", "audit.log", "envelope.db"):
        (data / name).chmod(0o644)
    s = Server(data).start()
    try:
        wider = {p.name: oct(mode(p)) for p in data.iterdir() if mode(p) != 0o600}
        assert not wider, wider
    finally:
        s.stop()
    assert "narrowed to 0600" in s.stderr_text()


def test_restart_keeps_keys_and_credentials(tmp_path):
    data = tmp_path / "envelope-data"
    s = Server(data).start()
    kms = s.client()
    md = kms.create_key(Description="persist")["KeyMetadata"]
    blob = kms.encrypt(KeyId=md["KeyId"], Plaintext=b"persist me")["CiphertextBlob"]
    creds = s.credentials
    root = (data / "root.key").read_bytes()
    s.stop()

    s2 = Server(data).start()
    try:
        assert s2.credentials == creds
        assert (data / "root.key").read_bytes() == root
        kms2 = s2.client()
        assert kms2.describe_key(KeyId=md["KeyId"])["KeyMetadata"]["Description"] == "persist"
        assert kms2.decrypt(CiphertextBlob=blob)["Plaintext"] == b"persist me"
    finally:
        s2.stop()


def prepared(tmp_path, env=None):
    data = tmp_path / "envelope-data"
    s = Server(data, env=env).start()
    kms = s.client()
    md = kms.create_key()["KeyMetadata"]
    blob = kms.encrypt(KeyId=md["KeyId"], Plaintext=b"keep")["CiphertextBlob"]
    s.stop()
    return data, md, blob


def assert_refused(data, **kw):
    before = snapshot(data)
    s = Server(data, **kw)
    s.spawn()
    rc = s.wait_exit()
    s._close()
    err = s.stderr_text()
    assert rc != 0, f"serve with a wrong root key exited 0\n{err}"
    assert "root key does not match" in err, err
    assert not any(line.startswith("listening on") for line in s.stdout_lines), s.stdout_lines
    assert snapshot(data) == before, "a refused start modified the data directory"


def test_wrong_root_key_from_env_is_refused(tmp_path):
    data, md, blob = prepared(tmp_path)
    other = base64.b64encode(os.urandom(32)).decode()
    assert_refused(data, env={"ENVELOPE_ROOT_KEY": other})
    # The right key still works afterwards.
    s = Server(data).start()
    try:
        assert s.client().decrypt(CiphertextBlob=blob)["Plaintext"] == b"keep"
    finally:
        s.stop()


def test_wrong_root_key_file_is_refused(tmp_path):
    data, md, blob = prepared(tmp_path)
    f = tmp_path / "other.key"
    f.write_bytes((data / "root.key").read_bytes())
    # Same format as the generated file, different key: flip bits in the file's content.
    content = f.read_bytes()
    try:
        raw = base64.b64decode(content.strip(), validate=True)
        assert len(raw) == 32
        f.write_bytes(base64.b64encode(bytes(b ^ 0xFF for b in raw)) + b"\n")
    except (ValueError, AssertionError):
        f.write_bytes(bytes(b ^ 0xFF for b in content))
    f.chmod(0o600)
    assert_refused(data, extra_args=["--root-key-file", str(f)])


def test_root_key_from_env(tmp_path):
    key = base64.b64encode(os.urandom(32)).decode()
    data, md, blob = prepared(tmp_path, env={"ENVELOPE_ROOT_KEY": key})
    s = Server(data, env={"ENVELOPE_ROOT_KEY": key}).start()
    try:
        assert s.client().decrypt(CiphertextBlob=blob)["Plaintext"] == b"keep"
    finally:
        s.stop()
    assert_refused(data, env={"ENVELOPE_ROOT_KEY": base64.b64encode(os.urandom(32)).decode()})


@pytest.mark.parametrize("value", ["not base64!!", base64.b64encode(os.urandom(16)).decode()])
def test_malformed_root_key_env_is_refused(tmp_path, value):
    s = Server(tmp_path / "envelope-data", env={"ENVELOPE_ROOT_KEY": value})
    s.spawn()
    rc = s.wait_exit()
    s._close()
    assert rc != 0, s.stderr_text()
    assert not s.stdout_lines, s.stdout_lines


def test_non_loopback_without_tls_is_refused(tmp_path):
    s = Server(tmp_path / "envelope-data", listen="0.0.0.0:0")
    s.spawn()
    rc = s.wait_exit()
    s._close()
    err = s.stderr_text()
    assert rc != 0, err
    assert not s.stdout_lines, s.stdout_lines
    low = err.lower()
    assert "tls" in low or "plaintext" in low, err


def test_non_loopback_with_allow_plaintext(tmp_path):
    s = Server(tmp_path / "envelope-data", listen="0.0.0.0:0", extra_args=["--allow-plaintext"]).start()
    try:
        s.client().list_keys()
    finally:
        s.stop()


def test_sigterm_exits_zero_after_traffic(tmp_path):
    s = Server(tmp_path / "envelope-data").start()
    kms = s.client()
    k = kms.create_key()["KeyMetadata"]["KeyId"]
    for _ in range(20):
        kms.generate_data_key(KeyId=k, KeySpec="AES_256")
    assert s.stop() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_the_moment_it_listens_is_a_clean_stop(tmp_path, sig):
    """The handlers are installed before 'listening on' is printed: a stop at once exits 0."""
    for _ in range(5):
        s = Server(tmp_path / "envelope-data").start()
        s.proc.send_signal(sig)
        s.proc.wait(timeout=30)
        assert s.stop() == 0


def test_sigterm_drains_a_request_in_flight(tmp_path):
    """A request whose body is still arriving when SIGTERM comes is answered, then the server exits 0."""
    import json
    import socket
    import time

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    s = Server(tmp_path / "envelope-data").start()
    body = json.dumps({"NumberOfBytes": 32}).encode()
    req = AWSRequest(method="POST", url=s.endpoint + "/", data=body,
                     headers={"Content-Type": "application/x-amz-json-1.1",
                              "X-Amz-Target": "TrentService.GenerateRandom"})
    SigV4Auth(Credentials(*s.credentials), "kms", "us-east-1").add_auth(req)
    host, port = s.hostport()
    head = "POST / HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in req.headers.items())
    head += f"Host: {host}:{port}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(head.encode() + body[:5])
        time.sleep(0.3)  # the request is now in flight
        s.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert s.proc.poll() is None, "the server exited with a request in flight"
        sock.sendall(body[5:])
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    status_line = reply.split(b"\r\n", 1)[0]
    assert b" 200 " in status_line, reply[:300]
    assert b'"Plaintext"' in reply
    assert s.wait_exit(10) == 0


def self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "envelope-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


@pytest.mark.parametrize("listen", ["127.0.0.1:0", "0.0.0.0:0"])
def test_tls(tmp_path, listen):
    cert, key = self_signed(tmp_path)
    s = Server(tmp_path / "envelope-data", listen=listen,
               extra_args=["--tls-cert", str(cert), "--tls-key", str(key)]).start()
    try:
        assert s.endpoint.startswith("https://127.0.0.1:"), s.endpoint
        ak, sk = s.credentials
        kms = kms_client(s.endpoint, ak, sk, verify=str(cert))
        k = kms.create_key()["KeyMetadata"]["KeyId"]
        dk = kms.generate_data_key(KeyId=k, KeySpec="AES_256")
        assert kms.decrypt(CiphertextBlob=dk["CiphertextBlob"])["Plaintext"] == dk["Plaintext"]
        # Plain HTTP to the TLS port does not get a KMS answer.
        plain = kms_client(s.endpoint.replace("https://", "http://"), ak, sk)
        with pytest.raises(Exception):
            plain.list_keys()
    finally:
        s.stop()
