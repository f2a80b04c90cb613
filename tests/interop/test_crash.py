"""Durability: kill -9 the server in the middle of a stream of CreateKey/GenerateDataKey calls, restart it
on the same data, and every acknowledged key must exist and every returned ciphertext must decrypt to the
plaintext that came with it. Runs on every store."""

import threading
import time

import pytest

from conftest import STORES, Server, fresh_postgres_database, kms_client

THREADS = 6
RUN_SECONDS = 2.5
MIN_ACKS = 20
MAX_SECONDS = 30.0


@pytest.mark.parametrize("store", STORES)
def test_kill9_mid_stream_loses_no_acknowledged_write(tmp_path, store):
    data = tmp_path / "envelope-data"
    data.mkdir()
    db = fresh_postgres_database() if store == "postgres" else None
    s = Server(data, database_url=db).start()
    ak, sk = s.credentials
    endpoint = s.endpoint

    lock = threading.Lock()
    keys: list[str] = []                            # acknowledged CreateKey
    blobs: list[tuple[str, bytes, bytes, str]] = []  # acknowledged GenerateDataKey: (key arn, blob, plaintext, ctx)
    stop = threading.Event()
    errors_before_kill: list[BaseException] = []
    killed = threading.Event()

    clients = [kms_client(endpoint, ak, sk, connect_timeout=2, read_timeout=10) for _ in range(THREADS)]

    def worker(i):
        kms = clients[i]
        while not stop.is_set():
            try:
                kid = kms.create_key(Description=f"crash-{i}")["KeyMetadata"]["KeyId"]
                with lock:
                    keys.append(kid)
                for spec in ("AES_256", "AES_128"):
                    r = kms.generate_data_key(KeyId=kid, KeySpec=spec, EncryptionContext={"w": str(i)})
                    with lock:
                        blobs.append((r["KeyId"], r["CiphertextBlob"], r["Plaintext"], str(i)))
            except Exception as e:  # noqa: BLE001 - after the kill every call fails; before it none may
                if not killed.is_set():
                    errors_before_kill.append(e)
                time.sleep(0.01)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(THREADS)]
    for t in threads:
        t.start()
    # Run for RUN_SECONDS, and at least until some writes are acknowledged (bounded).
    t0 = time.monotonic()
    while True:
        time.sleep(0.05)
        with lock:
            acked_at_kill = len(keys), len(blobs)
        elapsed = time.monotonic() - t0
        if elapsed >= RUN_SECONDS and min(acked_at_kill) >= MIN_ACKS or elapsed > MAX_SECONDS or errors_before_kill:
            break
    killed.set()
    s.kill9()
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join(15)

    print(f"acknowledged before kill -9: {len(keys)} keys, {len(blobs)} data keys ({store})")
    assert not errors_before_kill, f"calls failed before the kill: {errors_before_kill[:3]}"
    assert min(acked_at_kill) >= MIN_ACKS, f"too little traffic before the kill: {acked_at_kill}"

    s2 = Server(data, database_url=db).start()
    try:
        kms = s2.client()
        missing = []
        for kid in keys:
            try:
                st = kms.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"]
                assert st == "Enabled", (kid, st)
            except kms.exceptions.NotFoundException:
                missing.append(kid)
        assert not missing, f"{len(missing)} of {len(keys)} acknowledged keys lost: {missing[:5]}"
        bad = []
        for arn, blob, pt, ctx in blobs:
            try:
                got = kms.decrypt(CiphertextBlob=blob, EncryptionContext={"w": ctx})
                if got["Plaintext"] != pt or got["KeyId"] != arn:
                    bad.append((arn, "wrong plaintext or key"))
            except kms.exceptions.ClientError as e:
                bad.append((arn, e.response["Error"]["Code"]))
        assert not bad, f"{len(bad)} of {len(blobs)} acknowledged data keys do not decrypt: {bad[:5]}"
        # The restarted server takes new writes.
        kid = kms.create_key()["KeyMetadata"]["KeyId"]
        kms.generate_data_key(KeyId=kid, KeySpec="AES_256")
    finally:
        s2.stop()
