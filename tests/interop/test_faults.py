"""Faults (issue 14): kill -9 under load, a full disk, PostgreSQL restarted under load.

kill -9: a mixed load of writes (CreateKey with tags, CreateAlias, TagResource, GenerateDataKey,
RotateKeyOnDemand, UpdateAlias, UntagResource, EnableKeyRotation, UpdateKeyDescription, DisableKey),
killed and restarted 20 times, on every store. Each worker owns the keys and aliases it makes and runs
one call at a time, so after a kill the store may hold, for each worker, only the state its
acknowledged calls made, or that state with its one call in flight applied whole: an acknowledged
write that is missing is a lost write, and any other state (a key without the tags it was created
with, half of a TagResource, a rotation whose material is gone) is a half-written one. After each
restart the last cycle's keys, aliases, tags, rotations and data keys are checked against that rule;
at the end everything is checked once more, so a later crash cannot lose what an earlier one kept.

A full disk: SQLite on a small tmpfs (root, or password-less sudo; never skipped), filled to the last
byte. PostgreSQL: a server of the test's own, stopped and started again (scripts/postgres.sh).

Runtime (debug build, idle 2-core machine): kill -9 about 1 s per cycle and store, so 20-40 s per store;
the full disk about 5 s; the PostgreSQL restart about 25 s."""

from __future__ import annotations

import copy
import errno
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from conftest import (REPO, STORES, Server, all_pages, audit_records, error_code, fresh_postgres_database, kms_client,
                      postgres_url)

CYCLES = 20
THREADS = 4
# Load per cycle: at least LOAD_MIN seconds and MIN_ACKS acknowledged calls, then kill -9 at a random
# moment within the next LOAD_JITTER seconds (bounded by LOAD_MAX).
LOAD_MIN, LOAD_JITTER, LOAD_MAX = 0.3, 0.4, 20.0
MIN_ACKS = 8


class Worker:
    """One client thread's keys, aliases and data keys as its acknowledged calls left them, and the
    one call it had in flight when the server died."""

    def __init__(self, run: str, cycle: int, index: int):
        self.prefix = f"{run}-c{cycle}-w{index}"
        self.keys: dict[str, dict] = {}       # key id -> observed shape (see observe_key)
        self.aliases: dict[str, str] = {}     # alias name -> target key id
        self.blobs: list[tuple[str, bytes, bytes, str]] = []  # (key id, blob, plaintext, context value)
        self.pending = None                   # (description, apply(model, created_key_id)) in flight
        self.acks = 0
        self.error: BaseException | None = None

    def state(self):
        return {"keys": self.keys, "aliases": self.aliases}


def apply_create(desc, tags):
    def apply(model, kid):
        model["keys"][kid] = {"description": desc, "state": "Enabled", "tags": dict(tags),
                              "rotation": [False, None], "rotations": 0}
    return apply


def run_worker(kms, w: Worker, stop: threading.Event, killed: threading.Event):
    """A fixed sequence of writes per key, over and over, until stopped or the server dies."""
    prev = None
    n = 0

    def call(desc, apply, fn, *, creates=False):
        w.pending = (desc, apply)
        result = fn()
        # Acknowledged: the model follows.
        apply(w.state(), result if creates else None)
        w.pending = None
        w.acks += 1
        return result

    try:
        while not stop.is_set():
            desc = f"{w.prefix}-n{n}"
            tags = {"w": w.prefix, "n": str(n), "a": "1", "b": "2"}
            kid = call(desc, apply_create(desc, tags),
                       lambda: kms.create_key(Description=desc, Tags=[{"TagKey": k, "TagValue": v}
                                                                     for k, v in tags.items()])
                       ["KeyMetadata"]["KeyId"], creates=True)
            alias = f"alias/{desc}"
            call(None, lambda m, _: m["aliases"].__setitem__(alias, kid),
                 lambda: kms.create_alias(AliasName=alias, TargetKeyId=kid))
            more = {"a": "x", "c": "3", "d": "4"}
            call(None, lambda m, _: m["keys"][kid]["tags"].update(more),
                 lambda: kms.tag_resource(KeyId=kid, Tags=[{"TagKey": k, "TagValue": v} for k, v in more.items()]))
            for _ in range(2):
                dk = kms.generate_data_key(KeyId=alias, KeySpec="AES_256", EncryptionContext={"k": desc})
                w.blobs.append((kid, dk["CiphertextBlob"], dk["Plaintext"], desc))

                def rotated(m, _):
                    m["keys"][kid]["rotations"] += 1
                call(None, rotated, lambda: kms.rotate_key_on_demand(KeyId=kid))
            if prev is not None:
                target = prev
                call(None, lambda m, _: m["aliases"].__setitem__(alias, target),
                     lambda: kms.update_alias(AliasName=alias, TargetKeyId=target))

            def untagged(m, _):
                for k in ("b", "c"):
                    m["keys"][kid]["tags"].pop(k, None)
            call(None, untagged, lambda: kms.untag_resource(KeyId=kid, TagKeys=["b", "c"]))
            call(None, lambda m, _: m["keys"][kid].__setitem__("rotation", [True, 180]),
                 lambda: kms.enable_key_rotation(KeyId=kid, RotationPeriodInDays=180))
            call(None, lambda m, _: m["keys"][kid].__setitem__("description", desc + "-u"),
                 lambda: kms.update_key_description(KeyId=kid, Description=desc + "-u"))
            if n % 2:
                call(None, lambda m, _: m["keys"][kid].__setitem__("state", "Disabled"),
                     lambda: kms.disable_key(KeyId=kid))
            prev = kid
            n += 1
    except Exception as e:  # noqa: BLE001 - after the kill every call fails; before it none may
        if not killed.is_set():
            w.error = e


def observe_key(kms, kid):
    md = kms.describe_key(KeyId=kid)["KeyMetadata"]
    tags = {t["TagKey"]: t["TagValue"] for t in all_pages(kms.list_resource_tags, "Tags", KeyId=kid)}
    st = kms.get_key_rotation_status(KeyId=kid)
    rotation = [st["KeyRotationEnabled"], st.get("RotationPeriodInDays") if st["KeyRotationEnabled"] else None]
    rotations = all_pages(kms.list_key_rotations, "Rotations", KeyId=kid)
    return {"description": md["Description"], "state": md["KeyState"], "tags": tags, "rotation": rotation,
            "rotations": len(rotations)}


def check_blobs(kms, blobs, where, disabled=frozenset()):
    """Every acknowledged data key decrypts to its plaintext (DisabledException for the keys in
    `disabled`: their blobs are checked once they are enabled again, at the end)."""
    bad = []
    for kid, blob, pt, ctx in blobs:
        try:
            got = kms.decrypt(CiphertextBlob=blob, EncryptionContext={"k": ctx})
            if got["Plaintext"] != pt or not got["KeyId"].endswith(kid):
                bad.append((kid, "wrong plaintext or key"))
        except Exception as e:  # noqa: BLE001
            code = error_code(e) if hasattr(e, "response") else repr(e)
            if not (kid in disabled and code == "DisabledException"):
                bad.append((kid, code))
    assert not bad, f"{where}: {len(bad)} of {len(blobs)} acknowledged data keys do not decrypt: {bad[:5]}"


def settle(kms, workers: list[Worker], known: set[str], where: str):
    """Checks each worker's keys and aliases against its acknowledged state (or that state with its
    call in flight applied whole), then takes what the store holds as the acknowledged state."""
    everything = {k["KeyId"] for k in all_pages(kms.list_keys, "Keys", Limit=1000)}
    acknowledged = known.union(*(w.keys for w in workers))
    lost = acknowledged - everything
    assert not lost, f"{where}: {len(lost)} acknowledged keys lost: {sorted(lost)[:5]}"
    unknown = everything - acknowledged
    created = {}  # worker prefix -> key id made by its unacknowledged CreateKey
    for kid in unknown:
        desc = kms.describe_key(KeyId=kid)["KeyMetadata"]["Description"]
        owner = [w for w in workers if w.pending and w.pending[0] == desc]
        assert owner, f"{where}: key {kid} ({desc!r}) was never asked for, or its CreateKey was acknowledged"
        assert owner[0].prefix not in created, f"{where}: two keys for one CreateKey {desc!r}"
        created[owner[0].prefix] = kid
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in all_pages(kms.list_aliases, "Aliases", Limit=100)}
    for w in workers:
        kids = set(w.keys) | ({created[w.prefix]} if w.prefix in created else set())
        actual = {"keys": {kid: observe_key(kms, kid) for kid in sorted(kids)},
                  "aliases": {n: t for n, t in aliases.items() if n.startswith(f"alias/{w.prefix}-")}}
        allowed = [copy.deepcopy(w.state())]
        if w.pending is not None:
            after = copy.deepcopy(w.state())
            kid = created.get(w.prefix)
            if w.pending[0] is None or kid is not None:
                w.pending[1](after, kid)
                allowed.append(after)
        assert actual in allowed, (
            f"{where}: worker {w.prefix} holds a state its calls cannot have left (lost or half-written)\n"
            f"  store:        {actual}\n  acknowledged: {allowed[0]}\n"
            f"  + in flight:  {allowed[1] if len(allowed) > 1 else None}")
        w.keys, w.aliases, w.pending = actual["keys"], actual["aliases"], None
        known |= set(w.keys)
        check_blobs(kms, w.blobs, where, {k for k, v in w.keys.items() if v["state"] == "Disabled"})


@pytest.mark.parametrize("store", STORES)
def test_kill9_under_mixed_load_loses_nothing_acknowledged(tmp_path, store):
    data = tmp_path / "envelope-data"
    data.mkdir()
    db = fresh_postgres_database() if store == "postgres" else None
    run = uuid.uuid4().hex[:6]
    rng = random.Random(os.environ.get("ENVELOPE_FAULT_SEED", run))
    everyone: list[Worker] = []
    known: set[str] = set()
    s = Server(data, database_url=db, sweep_interval=None).start()
    started = time.monotonic()
    total_acks = 0
    timing = []  # per cycle: load and kill, restart, check (seconds)
    for cycle in range(CYCLES):
        ak, sk = s.credentials
        workers = [Worker(run, cycle, i) for i in range(THREADS)]
        clients = [kms_client(s.endpoint, ak, sk, connect_timeout=2, read_timeout=15) for _ in workers]
        stop, killed = threading.Event(), threading.Event()
        threads = [threading.Thread(target=run_worker, args=(c, w, stop, killed), daemon=True)
                   for c, w in zip(clients, workers)]
        for t in threads:
            t.start()
        t0 = time.monotonic()
        deadline = t0 + LOAD_MIN + rng.uniform(0, LOAD_JITTER)
        while True:
            time.sleep(0.01)
            now = time.monotonic()
            failed = [w.error for w in workers if w.error]
            enough = sum(w.acks for w in workers) >= MIN_ACKS
            if failed or now - t0 > LOAD_MAX or (now >= deadline and enough):
                break
        killed.set()
        s.kill9()
        stop.set()
        for t in threads:
            t.join(20)
        assert not any(t.is_alive() for t in threads), "a client hung after the kill"
        failed = [w.error for w in workers if w.error]
        assert not failed, f"cycle {cycle}: calls failed before the kill: {failed[:3]}"
        acks = sum(w.acks for w in workers)
        assert acks >= MIN_ACKS, f"cycle {cycle}: too little traffic before the kill ({acks} acknowledged)"
        total_acks += acks
        t1 = time.monotonic()
        s = Server(data, database_url=db, sweep_interval=None).start()
        t2 = time.monotonic()
        settle(s.client(), workers, known, f"after kill -9 #{cycle + 1}")
        timing.append((t1 - t0, t2 - t1, time.monotonic() - t2))
        everyone += workers
    try:
        # Everything once more, after the last restart: no later crash lost what an earlier one kept.
        kms = s.client()
        for w in everyone:
            for kid, shape in w.keys.items():
                assert observe_key(kms, kid) == shape, f"key {kid} changed after a later crash"
                if shape["state"] == "Disabled":
                    kms.enable_key(KeyId=kid)
            check_blobs(kms, w.blobs, "at the end")
        # The store still takes writes.
        kid = kms.create_key()["KeyMetadata"]["KeyId"]
        kms.generate_data_key(KeyId=kid, KeySpec="AES_256")
    finally:
        s.stop()
    load, restart, check = (sum(t[i] for t in timing) for i in range(3))
    print(f"{store}: load {load:.1f}s, restarts {restart:.1f}s, checks {check:.1f}s")
    print(f"{store}: {CYCLES} kill -9 cycles, {total_acks} acknowledged writes, {len(known)} keys, "
          f"{time.monotonic() - started:.1f}s")


# -- a full disk -----------------------------------------------------------------------------------

def privileged(argv: list[str]) -> list[str]:
    """`argv` as root: as is when root, through password-less sudo otherwise (a CI runner)."""
    if os.geteuid() == 0:
        return argv
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n", *argv]
    why = "mounting a small filesystem needs root or password-less sudo"
    if os.environ.get("CI"):
        pytest.fail(why)  # under CI the full-disk test always runs
    pytest.skip(why)


def fill(directory: Path, name: str = "filler") -> Path:
    """Writes a file in `directory` until the filesystem has no byte left; returns it."""
    filler = directory / name
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 16, 4096, 512, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as e:
                    assert e.errno == errno.ENOSPC, e
                    break
    finally:
        os.close(fd)
    return filler


def refused_by_store(e: Exception) -> bool:
    """A storage failure as AWS answers its own: KMSInternalException, HTTP 500 (retryable), and not
    the answer of a call whose task panicked ("The operation failed.")."""
    return (hasattr(e, "response") and error_code(e) == "KMSInternalException"
            and e.response["ResponseMetadata"]["HTTPStatusCode"] == 500
            and e.response["Error"]["Message"] != "The operation failed.")


def test_full_disk_refuses_cleanly_and_recovers_without_a_restart(tmp_path):
    """SQLite in a 8 MiB tmpfs filled to the last byte: every write is answered, acknowledged or
    KMSInternalException (500, which the AWS SDKs retry), reads go on, nothing refused is half-written,
    and once space returns the same process takes writes again and has lost nothing."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(privileged(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0777", "tmpfs", str(mnt)]),
                       capture_output=True, text=True)
    assert r.returncode == 0, f"cannot mount a tmpfs for the full-disk test: {r.stderr}"
    s = None
    try:
        data = mnt / "envelope-data"
        data.mkdir()
        s = Server(data, sweep_interval=None).start()
        kms = s.client()
        retrying = s.client(retries={"total_max_attempts": 3, "mode": "standard"})
        model = {"keys": {}, "aliases": {}}
        blobs = []

        def create(i, tag_count=3, client=None):
            tags = {f"t{j}": f"v{i}" * 40 for j in range(tag_count)}
            kid = (client or kms).create_key(Description=f"disk-{i}", Tags=[{"TagKey": k, "TagValue": v}
                                                               for k, v in tags.items()])["KeyMetadata"]["KeyId"]
            model["keys"][kid] = {"description": f"disk-{i}", "state": "Enabled", "tags": tags,
                                  "rotation": [False, None], "rotations": 0}
            return kid

        base = [create(i) for i in range(4)]
        for kid in base:
            dk = kms.generate_data_key(KeyId=kid, KeySpec="AES_256", EncryptionContext={"k": "disk"})
            blobs.append((kid, dk["CiphertextBlob"], dk["Plaintext"], "disk"))

        filler = fill(mnt)
        # Leave a little room, so that the first writes are stored and the later ones find no space.
        os.truncate(filler, max(0, filler.stat().st_size - 64 * 1024))
        ok = refused = reads = reads_refused = 0
        for i in range(60):
            kid = base[i % len(base)]
            ops = [
                lambda: create(100 + i, tag_count=20),
                lambda: (kms.tag_resource(KeyId=kid, Tags=[{"TagKey": f"x{j}", "TagValue": str(i)} for j in range(5)]),
                         model["keys"][kid]["tags"].update({f"x{j}": str(i) for j in range(5)})),
                lambda: (kms.create_alias(AliasName=f"alias/disk-{i}", TargetKeyId=kid),
                         model["aliases"].__setitem__(f"alias/disk-{i}", kid)),
                lambda: (kms.rotate_key_on_demand(KeyId=kid),
                         model["keys"][kid].__setitem__("rotations", model["keys"][kid]["rotations"] + 1))
                if model["keys"][kid]["rotations"] < 10 else None,
            ]
            t0 = time.monotonic()
            try:
                ops[i % len(ops)]()
                ok += 1
            except Exception as e:  # noqa: BLE001
                assert refused_by_store(e), f"a write on a full disk was answered {e!r}"
                refused += 1
            # No call waits on a lock left behind by an earlier one (SQLite's busy timeout, 10 s). A
            # connection that cannot be opened on the full disk may cost the store's 5 s wait.
            took = time.monotonic() - t0
            assert took < 8.0, f"call {i} on a full disk took {took:.1f}s"
            if took > 4.0:
                break  # the pool is empty until space returns: every call would wait 5 s
            # Reads go on, or fail as cleanly: after a failed write SQLite can leave sqlx counting a
            # transaction that is gone, so the store closes that connection (else the next write
            # on it kept a write lock: 10 s waits), and a new connection needs a byte of the full
            # disk (SQLITE_IOERR_SHMSIZE), so once the pool is empty every call waits the store's 5 s.
            b = blobs[i % len(blobs)]
            for read, want in ((lambda: kms.describe_key(KeyId=kid)["KeyMetadata"]["KeyId"], kid),
                               (lambda: kms.decrypt(CiphertextBlob=b[1], EncryptionContext={"k": b[3]})["Plaintext"],
                                b[2])):
                t0 = time.monotonic()
                try:
                    assert read() == want
                    reads += 1
                except Exception as e:  # noqa: BLE001
                    assert refused_by_store(e), f"a read on a full disk was answered {e!r}"
                    reads_refused += 1
                assert time.monotonic() - t0 < 8.0, f"a read on a full disk took {time.monotonic() - t0:.1f}s"
            if reads_refused:
                break  # as above
        print(f"full disk: {ok} writes acknowledged, {refused} refused; {reads} reads answered, "
              f"{reads_refused} refused")
        assert refused > 0, "the disk never filled up: the test proves nothing"
        assert ok > 0, "no write was stored before the disk filled up"
        # An AWS SDK retries the refusal (standard mode: 500 is transient). Whatever SQLite freed
        # (a WAL restarted from its start) is taken first.
        filler2 = fill(mnt, "filler2")
        for i in range(30):
            try:
                create(200 + i, tag_count=40, client=retrying)
            except Exception as e:  # noqa: BLE001
                assert refused_by_store(e), e
                assert e.response["ResponseMetadata"]["RetryAttempts"] == 2, e.response["ResponseMetadata"]
                break
        else:
            raise AssertionError("30 large CreateKey calls on a full disk all succeeded")
        assert s.proc.poll() is None, "the server died on a full disk"

        # Space returns: the same process takes writes again.
        filler.unlink()
        filler2.unlink()
        t0 = time.monotonic()
        while True:
            try:
                create(1000)
                break
            except Exception as e:  # noqa: BLE001
                assert refused_by_store(e), e
                assert time.monotonic() - t0 < 15, "no recovery within 15 s of space returning"
                time.sleep(0.2)
        print(f"recovered {time.monotonic() - t0:.2f}s after space returned")
        dk = kms.generate_data_key(KeyId=base[0], KeySpec="AES_256", EncryptionContext={"k": "disk"})
        blobs.append((base[0], dk["CiphertextBlob"], dk["Plaintext"], "disk"))

        def check(kms, where):
            keys = {k["KeyId"] for k in all_pages(kms.list_keys, "Keys", Limit=1000)}
            assert keys == set(model["keys"]), f"{where}: keys other than the acknowledged ones"
            for kid, shape in model["keys"].items():
                assert observe_key(kms, kid) == shape, f"{where}: key {kid}"
            aliases = {a["AliasName"]: a.get("TargetKeyId") for a in all_pages(kms.list_aliases, "Aliases")}
            assert aliases == model["aliases"], where
            check_blobs(kms, blobs, where)

        check(kms, "after space returned")
        assert s.proc.poll() is None
        s.stop()
        # The audit log holds no half record, and kept the records of the calls made while full.
        records = audit_records(data)
        failed = [r for r in records if r.get("errorCode") == "KMSInternalException"]
        assert len(failed) >= refused, f"{refused} refused calls, {len(failed)} audit records of them"
        s = Server(data, sweep_interval=None).start()
        check(s.client(), "after a restart")
    finally:
        if s is not None and s.proc is not None and s.proc.poll() is None:
            s.stop(expect_rc=None)
        subprocess.run(privileged(["umount", "-l", str(mnt)]), capture_output=True)


# -- PostgreSQL restarted under load ---------------------------------------------------------------

OUTAGE_SECONDS = 7.0      # longer than the store's wait for a connection (5 s), so calls fail
RECOVERY_SECONDS = 10.0   # every call started this long after PostgreSQL is back must succeed


def test_postgres_restart_under_load(tmp_path):
    """PostgreSQL stopped for OUTAGE_SECONDS and started again while clients call: calls fail with
    KMSInternalException (500, retried by the AWS SDKs) within a bound, never hang or another error;
    once PostgreSQL is back the same envelope process serves again, and nothing acknowledged is lost."""
    if not postgres_url():
        pytest.skip("ENVELOPE_TEST_POSTGRES_URL not set (PostgreSQL is needed)")
    script = str(REPO / "scripts" / "postgres.sh")
    pgdir = Path(tempfile.mkdtemp(prefix="envelope-pg-outage."))
    s = None
    try:
        r = subprocess.run([script, "start", str(pgdir)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"cannot start a PostgreSQL of its own: {r.stderr}"
        url = dict(line.split("=", 1) for line in r.stdout.split())["ENVELOPE_TEST_POSTGRES_URL"]
        data = tmp_path / "envelope-data"
        data.mkdir()
        s = Server(data, database_url=url, sweep_interval=1).start()
        ak, sk = s.credentials
        lock = threading.Lock()
        calls: list[tuple[float, float, str, str | None]] = []  # (start, end, op, error or None)
        acked: list[str] = []
        stop = threading.Event()

        def worker(i):
            kms = kms_client(s.endpoint, ak, sk, connect_timeout=2, read_timeout=60)
            kid = None
            n = 0
            while not stop.is_set():
                n += 1
                op = ("CreateKey", "TagResource", "GenerateDataKey", "DescribeKey")[n % 4] if kid else "CreateKey"
                t0 = time.monotonic()
                err = None
                try:
                    if op == "CreateKey":
                        kid = kms.create_key(Description=f"pg-{i}-{n}",
                                             Tags=[{"TagKey": "n", "TagValue": str(n)}])["KeyMetadata"]["KeyId"]
                        with lock:
                            acked.append(kid)
                    elif op == "TagResource":
                        kms.tag_resource(KeyId=kid, Tags=[{"TagKey": "n", "TagValue": str(n)}])
                    elif op == "GenerateDataKey":
                        kms.generate_data_key(KeyId=kid, KeySpec="AES_256")
                    else:
                        kms.describe_key(KeyId=kid)
                except Exception as e:  # noqa: BLE001
                    err = (f"{error_code(e)}/{e.response['ResponseMetadata']['HTTPStatusCode']}"
                           if hasattr(e, "response") else repr(e))
                    time.sleep(0.05)
                with lock:
                    calls.append((t0, time.monotonic(), op, err))

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(3)]
        for t in threads:
            t.start()
        t0 = time.monotonic()
        while len([c for c in list(calls) if not c[3]]) < 20:
            assert time.monotonic() - t0 < 60, "no load before the outage"
            time.sleep(0.05)
        t_down = time.monotonic()
        r = subprocess.run([script, "stop", str(pgdir)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        # One call through an AWS SDK's retries while the database is away: the 500 is retried.
        retrying = s.client(retries={"total_max_attempts": 2, "mode": "standard"}, read_timeout=60)
        try:
            meta = retrying.create_key(Description="retried")["ResponseMetadata"]
        except Exception as e:  # noqa: BLE001
            assert refused_by_store(e), e
            meta = e.response["ResponseMetadata"]
        assert meta["RetryAttempts"] >= 1, f"the outage's error was not retried: {meta}"
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - t_down)))
        r = subprocess.run([script, "resume", str(pgdir)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        t_up = time.monotonic()
        # Run until every worker has had RECOVERY_SECONDS + 2 s of calls after PostgreSQL is back.
        time.sleep(RECOVERY_SECONDS + 2)
        stop.set()
        for t in threads:
            t.join(70)
        assert s.proc.poll() is None, "envelope died during the outage"

        before = [c for c in calls if c[1] < t_down]
        during = [c for c in calls if c[1] >= t_down and c[0] < t_up + RECOVERY_SECONDS]
        after = [c for c in calls if c[0] >= t_up + RECOVERY_SECONDS]
        failed = [c for c in calls if c[3]]
        print(f"postgres restart: {len(before)} calls before, {len(during)} around the outage "
              f"({len(failed)} failed), {len(after)} after recovery; "
              f"first success after restart: "
              f"{min((c[1] - t_up for c in calls if c[0] >= t_up and not c[3]), default=None)}")
        assert before and not [c for c in before if c[3]], f"calls failed before the outage: {before[:3]}"
        wrong = [c for c in failed if c[3] != "KMSInternalException/500"]
        assert not wrong, f"errors other than KMSInternalException (500) during the outage: {wrong[:5]}"
        assert failed, "no call failed during the outage: the test proves nothing"
        slow = [c for c in failed if c[1] - c[0] > 8.0]
        assert not slow, f"failing calls waited too long: {[(round(c[1] - c[0], 1), c[2]) for c in slow[:5]]}"
        assert after and not [c for c in after if c[3]], f"no recovery without a restart: {after[:3]}"
        kms = s.client()
        missing = [kid for kid in acked if not kms.describe_key(KeyId=kid)["KeyMetadata"]["KeyId"] == kid]
        assert not missing
    finally:
        if s is not None and s.proc is not None:
            s.stop(expect_rc=None)
        subprocess.run([script, "stop", str(pgdir)], capture_output=True, timeout=60)
        shutil.rmtree(pgdir, ignore_errors=True)
