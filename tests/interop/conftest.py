"""Fixtures for the interoperability tests: start the real `envelope serve` and drive it with real clients.

The binary is $ENVELOPE_BIN (scripts/test sets it to target/debug/envelope). Set ENVELOPE_TEST_POSTGRES_URL
(scripts/test starts a throwaway PostgreSQL) to also run the store-parametrized tests on PostgreSQL; each
PostgreSQL-backed server gets a fresh database of its own (created with `createdb`).
"""

from __future__ import annotations

import base64
import configparser
import contextlib
import datetime
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import urllib.parse
import uuid
from pathlib import Path
from unittest import mock

import boto3
import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

import secrets_scan

REPO = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
ACCOUNT = "111122223333"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
LISTEN_RE = re.compile(r"^listening on (https?://\S+)$")
# Servers log at this level unless a test sets ENVELOPE_LOG: the session's end scans every server log
# and audit log for every secret the tests used (secrets_scan.py).
SERVER_LOG_LEVEL = "debug"

secrets_scan.install_boto_hook()


def pytest_sessionfinish(session, exitstatus):
    """No secret the tests used may appear in any server log or audit log line: a hit fails the run."""
    hits = secrets_scan.scan(secrets_scan.logs(), secrets_scan.secrets())
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    say = tr.write_line if tr is not None else print
    if not hits:
        say(f"secrets scan: {len(secrets_scan.secrets())} secrets, {len(secrets_scan.logs())} logs, no hit")
        return
    say(f"secrets scan: {len(hits)} log lines hold a secret the tests used:", red=True)
    for h in hits[:50]:
        say(f"  {h}: {h.line[:300]!r}")
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI every skip is a failure: scripts/test installs and starts everything the tests need,
    so a test that finds a component missing (PostgreSQL, Garage, SoftHSMv2, a venv) means the set-up
    broke, and a silent skip would let a broken build pass. Local runs without CI keep their skips."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, which must not happen: {reason}"


def envelope_bin() -> str:
    path = os.environ.get("ENVELOPE_BIN") or str(REPO / "target" / "debug" / "envelope")
    if not os.access(path, os.X_OK):
        pytest.fail(f"envelope binary not found at {path}; build it (cargo build) or set ENVELOPE_BIN")
    return path


def venv_tool(name: str) -> str:
    """A console script of the running Python's environment (the test venv), else from PATH."""
    cand = Path(sys.executable).parent / name
    if cand.exists():
        return str(cand)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found (install tests/requirements.txt)")
    return found


def key_arn(key_id: str) -> str:
    return f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key_id}"


def alias_arn(alias_name: str) -> str:
    return f"arn:aws:kms:{REGION}:{ACCOUNT}:{alias_name}"


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def read_credentials(data_dir: Path, profile: str = "envelope") -> tuple[str, str]:
    cp = configparser.ConfigParser()
    path = data_dir / "credentials"
    if not cp.read(path):
        raise AssertionError(f"no credentials file at {path}")
    secret = cp[profile]["aws_secret_access_key"].strip()
    secrets_scan.add(secret, f"secret access key in {path}")
    return cp[profile]["aws_access_key_id"].strip(), secret


_sessions = threading.local()


def kms_client(endpoint: str, access_key: str, secret_key: str, verify=None, **config):
    """A boto3 KMS client for the server: no retries, and no client-side parameter validation so that
    out-of-range values reach the server (which must answer ValidationException itself).

    botocore's `max_attempts` counts retries (1 would retry a 500 once and hide it); `total_max_attempts`
    counts attempts."""
    opts = {"retries": {"total_max_attempts": 1, "mode": "standard"}, "parameter_validation": False,
            "connect_timeout": 5, "read_timeout": 30}
    opts.update(config)
    cfg = Config(**opts)
    # One session per thread: a new session loads the service model again (~0.1-0.5 s a client).
    session = getattr(_sessions, "session", None)
    if session is None:
        session = _sessions.session = boto3.session.Session()
    return session.client(
        "kms",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=cfg,
        verify=verify,
    )


class Server:
    """One `envelope serve` process."""

    def __init__(self, data_dir: Path, *, database_url: str | None = None, extra_args=(), env=None,
                 listen: str = "127.0.0.1:0", sweep_interval: int | None = 1,
                 auth_failure_delay: float | None = 0):
        self.data_dir = Path(data_dir)
        self.database_url = database_url
        self.extra_args = list(extra_args)
        self.env = dict(os.environ)
        self.env.setdefault("RUST_BACKTRACE", "1")
        self.env["ENVELOPE_LOG"] = SERVER_LOG_LEVEL
        for var in ("ENVELOPE_ROOT_KEY", "ENVELOPE_DATA_DIR", "ENVELOPE_DATABASE_URL", "ENVELOPE_REGION",
                    "ENVELOPE_ACCOUNT_ID"):
            self.env.pop(var, None)
        if env:
            self.env.update(env)
        secrets_scan.add(self.env.get("ENVELOPE_ROOT_KEY"), "ENVELOPE_ROOT_KEY")
        self.listen = listen
        self.sweep_interval = sweep_interval
        # Off unless a test asks for it: many tests refuse requests on purpose, and more than ten
        # failures from 127.0.0.1 a minute would make each wait (test_abuse.py tests the delay).
        self.auth_failure_delay = auth_failure_delay
        self.proc: subprocess.Popen | None = None
        self.endpoint: str | None = None
        self.stdout_lines: list[str] = []
        self._log_path = self.data_dir.parent / f"{self.data_dir.name}.server-{uuid.uuid4().hex[:6]}.log"
        secrets_scan.add_log(self._log_path)
        secrets_scan.add_log(self.data_dir / "audit.log")
        self._stderr = None
        self._reader: threading.Thread | None = None
        self._first_line = threading.Event()

    # -- process -------------------------------------------------------------------------------------
    def argv(self) -> list[str]:
        argv = [envelope_bin(), "serve", "--data-dir", str(self.data_dir), "--listen", self.listen]
        if self.database_url:
            argv += ["--database-url", self.database_url]
        if self.sweep_interval is not None:
            argv += ["--sweep-interval", str(self.sweep_interval)]
        if self.auth_failure_delay is not None:
            argv += ["--auth-failure-delay", str(self.auth_failure_delay)]
        return argv + self.extra_args

    def spawn(self) -> subprocess.Popen:
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        self._stderr = open(self._log_path, "wb")
        self.proc = subprocess.Popen(
            self.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr, env=self.env,
        )
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        return self.proc

    def _read_stdout(self):
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.stdout_lines.append(raw.decode("utf-8", "replace").rstrip("\r\n"))
            self._first_line.set()
        self._first_line.set()

    def stderr_text(self) -> str:
        if self._stderr is not None:
            self._stderr.flush()
        try:
            return self._log_path.read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def start(self) -> "Server":
        self.spawn()
        if not self._first_line.wait(START_TIMEOUT) or not self.stdout_lines:
            rc = self.proc.poll()
            if rc is None:
                self.proc.kill()
                self.proc.wait()
            raise AssertionError(
                f"envelope serve printed no 'listening on' line within {START_TIMEOUT}s (exit {rc})\n"
                f"argv: {self.argv()}\nstdout: {self.stdout_lines!r}\nstderr:\n{self.stderr_text()}"
            )
        m = LISTEN_RE.match(self.stdout_lines[0])
        if not m:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"first stdout line is not 'listening on http://...': {self.stdout_lines[0]!r}\n"
                f"stderr:\n{self.stderr_text()}"
            )
        url = m.group(1)
        # `--listen 0.0.0.0:0` may print the wildcard address; the tests talk to loopback.
        self.endpoint = url.replace("://0.0.0.0:", "://127.0.0.1:")
        return self

    def wait_exit(self, timeout: float = START_TIMEOUT) -> int:
        """For a start that must fail: wait for the process to exit and return its exit code."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"envelope serve did not exit within {timeout}s\nstdout: {self.stdout_lines!r}\n"
                f"stderr:\n{self.stderr_text()}"
            )

    def stop(self, expect_rc: int | None = 0) -> int:
        """SIGTERM, wait, and (by default) require a clean exit 0."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"envelope serve ignored SIGTERM for {STOP_TIMEOUT}s\n{self.stderr_text()}")
        rc = self.proc.returncode
        self._close()
        if expect_rc is not None:
            assert rc == expect_rc, f"envelope serve exited {rc} after SIGTERM\nstderr:\n{self.stderr_text()}"
        return rc

    def kill9(self):
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._close()

    def _close(self):
        self._register_root_key()
        if self._reader is not None:
            self._reader.join(5)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _register_root_key(self):
        try:
            root = (self.data_dir / "root.key").read_bytes()
        except OSError:
            return
        secrets_scan.add(root.strip(), f"root key of {self.data_dir}")
        try:
            secrets_scan.add(base64.b64decode(root.strip(), validate=True), f"root key of {self.data_dir}")
        except ValueError:
            pass

    # -- clients -------------------------------------------------------------------------------------
    @property
    def credentials(self) -> tuple[str, str]:
        return read_credentials(self.data_dir)

    def client(self, access_key: str | None = None, secret_key: str | None = None, **config):
        ak, sk = self.credentials
        return kms_client(self.endpoint, access_key or ak, secret_key or sk, **config)

    def hostport(self) -> tuple[str, int]:
        u = urllib.parse.urlsplit(self.endpoint)
        return u.hostname, u.port

    def raw(self, target: str | None, body: bytes | str | dict, *, access_key=None, secret_key=None,
            sign: bool = True, when: datetime.datetime | None = None, headers: dict | None = None,
            tamper=None, timeout: float = 30.0, service: str = "kms"):
        """Send one request with http.client, SigV4-signed by botocore (for `service`) unless sign=False.

        `when` signs with that (naive UTC) time; `tamper(headers, body) -> (headers, body)` changes the
        request after signing. Returns (status, headers, parsed JSON or raw bytes)."""
        if isinstance(body, dict):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        hdrs = {"Content-Type": "application/x-amz-json-1.1"}
        if target is not None:
            hdrs["X-Amz-Target"] = target
        if headers:
            hdrs.update(headers)
        req = AWSRequest(method="POST", url=self.endpoint + "/", data=body, headers=hdrs)
        if sign:
            ak, sk = self.credentials
            creds = Credentials(access_key or ak, secret_key or sk)
            if when is None:
                SigV4Auth(creds, service, REGION).add_auth(req)
            else:
                with mock.patch.object(botocore.auth, "get_current_datetime", return_value=when):
                    SigV4Auth(creds, service, REGION).add_auth(req)
        out_headers = {k: v for k, v in req.headers.items()}
        if tamper is not None:
            out_headers, body = tamper(out_headers, body)
        host, port = self.hostport()
        return http_post(host, port, out_headers, body, timeout)


def http_post(host: str, port: int, headers: dict, body: bytes, timeout: float = 30.0):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        try:
            conn.putrequest("POST", "/", skip_accept_encoding=True)
            for k, v in headers.items():
                conn.putheader(k, v)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders()
            conn.send(body)
        except (BrokenPipeError, ConnectionResetError):
            # The server may answer (413/400) and close before it has read a large body.
            pass
        resp = conn.getresponse()
        data = resp.read()
        rh = {k.lower(): v for k, v in resp.getheaders()}
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = data
        return resp.status, rh, parsed
    finally:
        conn.close()


def audit_records(data_dir: Path) -> list[dict]:
    """The audit log's records. A live server may be appending while we read, and a reader can see
    the start of a write before its end, so only whole lines (ending in a newline) count."""
    text = (data_dir / "audit.log").read_text()
    return [json.loads(line) for line in text[:text.rfind("\n") + 1].splitlines()]


def error_type(parsed) -> str | None:
    if isinstance(parsed, dict) and "__type" in parsed:
        return str(parsed["__type"]).split("#")[-1]
    return None


def error_code(exc) -> str:
    return exc.response["Error"]["Code"]


def race(calls) -> list[str]:
    """Runs each zero-argument call in its own thread, all released at once; each call's outcome, in
    order: "ok" or its error code (clients that never retry show a 500 as one)."""
    from concurrent.futures import ThreadPoolExecutor

    from botocore.exceptions import ClientError

    gate = threading.Barrier(len(calls))

    def one(call):
        gate.wait()
        try:
            call()
            return "ok"
        except ClientError as e:
            return error_code(e)

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(one, calls))


def iam_client(server, access_key: str | None = None, secret_key: str | None = None):
    """A boto3 IAM client for the server (the admin's credentials unless given), without retries."""
    ak, sk = server.credentials
    return boto3.client("iam", endpoint_url=server.endpoint, region_name=REGION,
                        aws_access_key_id=access_key or ak, aws_secret_access_key=secret_key or sk,
                        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))


# -- proving that a refused call changed nothing ----------------------------------------------------

def all_pages(call, items: str, **kw) -> list:
    """Every item of a paged KMS listing (ListKeys, ListAliases, ListResourceTags, ...)."""
    out, marker = [], None
    for _ in range(10_000):
        resp = call(**kw, **({"Marker": marker} if marker else {}))
        out += resp[items]
        if not resp.get("Truncated"):
            return out
        marker = resp["NextMarker"]
    raise AssertionError("paging never ended")


def key_state(kms, key_id: str) -> dict:
    """What a call can change on one key: its metadata, tags, rotation status and rotations (an
    operation the key's state refuses is recorded by its error name)."""
    def attempt(fn):
        try:
            return fn()
        except kms.exceptions.ClientError as e:
            return error_code(e)
    md = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    return {
        "metadata": md,
        "tags": sorted((t["TagKey"], t["TagValue"]) for t in all_pages(kms.list_resource_tags, "Tags", KeyId=key_id)),
        "rotation": attempt(lambda: {k: v for k, v in kms.get_key_rotation_status(KeyId=key_id).items()
                                     if k != "ResponseMetadata"}),
        "rotations": attempt(lambda: all_pages(kms.list_key_rotations, "Rotations", KeyId=key_id)),
    }


def account_state(kms, key_ids=()) -> dict:
    """What a refused call must leave as it was: every key and alias of the account, the custom key
    stores, and each of `key_ids` in depth (key_state)."""
    return {
        "keys": sorted(k["KeyId"] for k in all_pages(kms.list_keys, "Keys", Limit=1000)),
        "aliases": sorted((a["AliasName"], a.get("TargetKeyId")) for a in all_pages(kms.list_aliases, "Aliases",
                                                                                   Limit=100)),
        "custom_key_stores": sorted((c["CustomKeyStoreId"], c.get("CustomKeyStoreName"), c.get("ConnectionState"))
                                    for c in kms.describe_custom_key_stores()["CustomKeyStores"]),
        "detail": {k: key_state(kms, k) for k in key_ids},
    }


@contextlib.contextmanager
def unchanged(kms, *key_ids):
    """`with unchanged(kms, key_id), pytest.raises(...):` proves that the refused call inside changed
    nothing: no key made or deleted, no alias, tag, rotation, state or description changed."""
    before = account_state(kms, key_ids)
    yield before
    after = account_state(kms, key_ids)
    if after != before:
        changed = {part: {"before": before[part], "after": after[part]}
                   for part in before if before[part] != after[part]}
        raise AssertionError(f"a refused call changed the account: {changed}")


# -- data directories and databases ------------------------------------------------------------------

def postgres_url() -> str | None:
    return os.environ.get("ENVELOPE_TEST_POSTGRES_URL") or None


def fresh_postgres_database() -> str:
    """Create a new database on the test PostgreSQL server and return its URL."""
    base = postgres_url()
    if not base:
        pytest.skip("ENVELOPE_TEST_POSTGRES_URL not set")
    u = urllib.parse.urlsplit(base)
    name = "envelope_py_" + uuid.uuid4().hex[:10]
    bindir = os.environ.get("ENVELOPE_TEST_PG_BINDIR")
    createdb = (str(Path(bindir) / "createdb") if bindir and (Path(bindir) / "createdb").exists()
                else shutil.which("createdb"))
    if not createdb:
        pytest.fail("createdb not found: set ENVELOPE_TEST_PG_BINDIR or put PostgreSQL's client on PATH")
    cmd = [createdb, "-h", u.hostname or "127.0.0.1", "-p", str(u.port or 5432)]
    if u.username:
        cmd += ["-U", urllib.parse.unquote(u.username)]
    cmd.append(name)
    env = dict(os.environ)
    if u.password:
        env["PGPASSWORD"] = urllib.parse.unquote(u.password)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    if r.returncode != 0:
        pytest.fail(f"createdb failed: {r.stderr}")
    return urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + name, u.query, u.fragment))


def new_data_dir(factory, name: str = "data") -> Path:
    d = factory.mktemp(name)
    return d / "envelope-data"


def start_server(factory, store: str = "sqlite", **kw) -> Server:
    data_dir = new_data_dir(factory)
    data_dir.mkdir()
    database_url = fresh_postgres_database() if store == "postgres" else None
    return Server(data_dir, database_url=database_url, **kw).start()


STORES = [
    "sqlite",
    pytest.param(
        "postgres",
        marks=pytest.mark.skipif(not postgres_url(), reason="ENVELOPE_TEST_POSTGRES_URL not set"),
    ),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One SQLite-backed server shared by a module."""
    s = start_server(tmp_path_factory)
    yield s
    s.stop()


@pytest.fixture(scope="module", params=STORES)
def store_server(request, tmp_path_factory):
    """A server per store (SQLite, and PostgreSQL when ENVELOPE_TEST_POSTGRES_URL is set), per module."""
    s = start_server(tmp_path_factory, request.param)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory):
    """A PostgreSQL-backed server; skipped without ENVELOPE_TEST_POSTGRES_URL."""
    if not postgres_url():
        pytest.skip("ENVELOPE_TEST_POSTGRES_URL not set")
    s = start_server(tmp_path_factory, "postgres")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def kms(server):
    return server.client()


@pytest.fixture(scope="module")
def skms(store_server):
    return store_server.client()


@pytest.fixture
def new_key(kms):
    def make(**kw):
        return kms.create_key(**kw)["KeyMetadata"]
    return make


def create_principal(server, name: str, account: str = ACCOUNT, *, admin: bool = False) -> dict:
    """`envelope principal create NAME --account-id ACCOUNT` on the server's store (any account, made on
    first use): the new user's ARN and access key, as the command prints them."""
    env = {k: v for k, v in os.environ.items() if k not in ("ENVELOPE_ROOT_KEY", "ENVELOPE_DATA_DIR")}
    store = ["--data-dir", str(server.data_dir)]
    if server.database_url:
        store += ["--database-url", server.database_url]
    r = subprocess.run([envelope_bin(), "principal", "create", name, "--account-id", account,
                        *(["--admin"] if admin else []), *store],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    secrets_scan.add(out["SecretAccessKey"], f"secret access key of {out['Arn']}")
    return out


def ensure_principals(server, *arns: str) -> None:
    """Makes the IAM users and roles `arns` name (key policies and grants may name only principals that
    exist): users with `envelope principal create`, roles of the home account with IAM CreateRole."""
    ak, sk = server.credentials
    iam = boto3.session.Session().client("iam", endpoint_url=server.endpoint, region_name=REGION,
                                         aws_access_key_id=ak, aws_secret_access_key=sk)
    for arn in arns:
        account, resource = arn.split(":")[4], arn.split(":", 5)[5]
        kind, name = resource.split("/", 1)
        if kind == "user":
            create_principal(server, name, account)
        elif kind == "role" and account == ACCOUNT:
            trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                             "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}}]}
            iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
        else:
            raise AssertionError(f"ensure_principals: cannot make {arn}")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def aws_cli(server):
    """A runner of the `aws` CLI (the test venv's) against `server`, with the credentials and config files
    the server wrote and nothing from the environment: run(*args, check=True) -> CompletedProcess."""
    exe = venv_tool("aws")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_SHARED_CREDENTIALS_FILE=str(server.data_dir / "credentials"),
        AWS_CONFIG_FILE=str(server.data_dir / "config"),
        AWS_PROFILE="envelope",
        AWS_DEFAULT_REGION=REGION,
        AWS_MAX_ATTEMPTS="1",
        AWS_PAGER="",
    )

    def run(*args, check=True):
        r = subprocess.run([exe, "--endpoint-url", server.endpoint, *args], env=env, capture_output=True,
                           text=True, timeout=120)
        if check:
            assert r.returncode == 0, f"aws {args} exited {r.returncode}\nstdout:{r.stdout}\nstderr:{r.stderr}"
        return r

    return run
