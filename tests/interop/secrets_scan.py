"""Every secret the tests use, and a scan of every server log and audit log for them (issue 14).

The fixtures and tests add what they hand over or get back: secret access keys, plaintexts, data keys,
GenerateRandom bytes, custom key store passwords, HSM PINs, SSE-C keys, root keys. Most arrive without a
test doing anything: `install_boto_hook` records the secret access key of every boto3 client and the
secret members of every request and response (KMS `Plaintext`, `KeyStorePassword`; S3 SSE-C keys). The
servers log at debug level into files `conftest.Server` keeps; at the end of the session `scan` looks for
every secret in every form a log could print it: the raw bytes, base64 (at any alignment inside longer
base64), hex, Rust's `Debug` of a byte list (`[1, 2, 3`) and of `Bytes` (`b"\\x01..."`). A hit fails the
run.

Secrets shorter than `MIN_LEN` bytes, or of fewer than `MIN_DISTINCT` distinct bytes (b"\\0" * 32),
are not scanned for: they would match by chance.
"""

from __future__ import annotations

import base64
import threading
from dataclasses import dataclass
from pathlib import Path

MIN_LEN = 8
MIN_DISTINCT = 4

_lock = threading.Lock()
_secrets: dict[bytes, str] = {}
_logs: set[Path] = set()


def add(value, what: str) -> None:
    """Register a secret (bytes or str; None and too-weak values are ignored); `what` says where it came from."""
    if value is None:
        return
    if isinstance(value, str):
        value = value.encode()
    if hasattr(value, "read"):  # a streaming body
        return
    value = bytes(value)
    if len(value) < MIN_LEN or len(set(value)) < MIN_DISTINCT:
        return
    with _lock:
        _secrets.setdefault(value, what)


def add_log(path) -> None:
    """A log file to scan at the end of the session (missing files are skipped then)."""
    with _lock:
        _logs.add(Path(path))


def secrets() -> dict[bytes, str]:
    with _lock:
        return dict(_secrets)


def logs() -> list[Path]:
    with _lock:
        return sorted(_logs)


def _debug_bytes(secret: bytes) -> bytes:
    """How `Debug` of `bytes::Bytes` prints bytes (inside b"...")."""
    out = []
    for c in secret:
        if c in (0x22, 0x5C):
            out.append("\\" + chr(c))
        elif c == 0:
            out.append("\\0")
        elif c == 0x0A:
            out.append("\\n")
        elif c == 0x0D:
            out.append("\\r")
        elif c == 0x09:
            out.append("\\t")
        elif 0x20 <= c < 0x7F:
            out.append(chr(c))
        else:
            out.append(f"\\x{c:02x}")
    return "".join(out).encode()


def _base64_cores(secret: bytes) -> list[bytes]:
    """The part of the base64 text of `secret` that is the same wherever it starts inside a longer
    encoded buffer: for each of the three alignments, the characters that depend on `secret` alone."""
    out = []
    for shift, skip in ((0, 0), (1, 2), (2, 3)):
        text = base64.b64encode(bytes(shift) + secret).rstrip(b"=")
        core = text[skip:-2]
        if len(core) >= MIN_LEN:
            out.append(core)
            out.append(core.replace(b"+", b"-").replace(b"/", b"_"))  # URL-safe alphabet
    return out


def forms(secret: bytes) -> list[tuple[str, bytes]]:
    """Every way a log line could show `secret`."""
    out = [("raw", secret), ("hex", secret.hex().encode()), ("HEX", secret.hex().upper().encode()),
           ("Debug list", ", ".join(str(b) for b in secret).encode())]
    escaped = _debug_bytes(secret)
    if escaped != secret:
        out.append(("Debug bytes", escaped))
    out += [("base64", core) for core in _base64_cores(secret)]
    return out


@dataclass
class Hit:
    path: Path
    line_no: int
    what: str
    form: str
    line: bytes

    def __str__(self) -> str:
        return f"{self.path}:{self.line_no}: {self.what} ({self.form})"


# Needles are indexed by their first WINDOW bytes, so a file is read once whatever the number of secrets
# (a whole suite registers thousands, and its logs hold tens of MB: one `in` per line, secret and form
# took hours).
WINDOW = 8


def scan(paths, registry: dict[bytes, str]) -> list[Hit]:
    """Every line of `paths` that holds a secret of `registry` in any of its `forms`: one hit per line
    and secret."""
    index: dict[bytes, list[tuple[str, str, bytes]]] = {}
    short: list[tuple[str, str, bytes]] = []
    for secret, what in registry.items():
        for form, needle in forms(secret):
            if not needle:
                continue
            if len(needle) < WINDOW:
                short.append((what, form, needle))
            else:
                index.setdefault(needle[:WINDOW], []).append((what, form, needle))
    hits = []
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            continue
        found: dict[tuple[int, str], str] = {}  # (line start, secret) -> form
        get = index.get
        for i in range(len(data) - WINDOW + 1):
            candidates = get(data[i:i + WINDOW])
            if candidates:
                for what, form, needle in candidates:
                    if data.startswith(needle, i):
                        found.setdefault((data.rfind(b"\n", 0, i) + 1, what), form)
        for what, form, needle in short:
            at = data.find(needle)
            while at != -1:
                found.setdefault((data.rfind(b"\n", 0, at) + 1, what), form)
                at = data.find(needle, at + 1)
        for (start, what), form in sorted(found.items()):
            end = data.find(b"\n", start)
            line = data[start:end if end != -1 else len(data)]
            hits.append(Hit(Path(path), data.count(b"\n", 0, start) + 1, what, form, line))
    return hits


# -- boto3 ----------------------------------------------------------------------------------------------

_REQUEST_SECRETS = {
    "kms": ("Plaintext", "KeyStorePassword"),
    "s3": ("SSECustomerKey", "CopySourceSSECustomerKey"),
}
_RESPONSE_SECRETS = {"kms": ("Plaintext", "PrivateKeyPlaintext")}


def install_boto_hook() -> None:
    """Record the secrets of every boto3 call made in this process (once; idempotent)."""
    import botocore.client

    base = botocore.client.BaseClient
    if getattr(base, "_envelope_secrets_hooked", False):
        return
    original = base._make_api_call

    def recording(self, operation_name, api_params):
        service = self.meta.service_model.service_name
        creds = getattr(getattr(self, "_request_signer", None), "_credentials", None)
        if creds is not None:
            add(getattr(creds, "secret_key", None), f"secret access key of a {service} client")
        for member in _REQUEST_SECRETS.get(service, ()):
            add(api_params.get(member), f"{operation_name} {member}")
        response = original(self, operation_name, api_params)
        if isinstance(response, dict):
            for member in _RESPONSE_SECRETS.get(service, ()):
                add(response.get(member), f"{operation_name} response {member}")
        return response

    base._make_api_call = recording
    base._envelope_secrets_hooked = True
