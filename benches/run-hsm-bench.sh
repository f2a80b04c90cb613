#!/usr/bin/env bash
# HSM-backed keys through the endpoint beside a software key, and the token's raw rate, in one run.
#
#   benches/run-hsm-bench.sh
#
# Builds release binaries; makes two fresh SoftHSMv2 tokens (scripts/softhsm.sh); measures
#   1. token-raw:     the token's own AES-GCM encrypt/decrypt rate (hsm example token_throughput),
#                     one session, then SESSIONS threads over SESSIONS sessions;
#   2. software-key:  GenerateDataKey and Decrypt for a software key (software root of trust);
#   3. cks-key:       the same for a key in a custom key store on the second token
#                     (`envelope serve --hsm-cluster`): every request runs AES-GCM inside the token;
#   4. hsm-root-key:  the same with the root of trust in the first token (`envelope serve --hsm-*`):
#                     key material is unwrapped in the token, then cached (--cache-ttl), so requests
#                     mostly do not reach the token;
# and prints one table, with the issue's target: cks-key req/s >= 0.5 x raw single-session ops/s x SESSIONS.
#
# Knobs (environment): SESSIONS (PKCS#11 sessions, default 4), CONCURRENCY (default 1,8,32),
# DURATION (10), WARMUP (2), THREADS (driver tokio threads, 1), RAW_SECS (3),
# VENV (Python with boto3 for the custom key store set-up; default .venv),
# RESULTS_DIR (keep JSON lines and logs there; default a temp dir that is removed),
# PROFILE (cargo profile, default release; PROFILE=dev only to smoke-test the script).
#
# Measure on a quiet machine: the driver, the server and SoftHSM share the CPUs.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

SESSIONS=${SESSIONS:-4}
CONCURRENCY=${CONCURRENCY:-1,8,32}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
THREADS=${THREADS:-1}
RAW_SECS=${RAW_SECS:-3}
VENV=${VENV:-$repo/.venv}
PROFILE=${PROFILE:-release}

if [[ ! -x $VENV/bin/python ]]; then
    echo "no Python at $VENV/bin/python (set VENV to a venv with tests/requirements.txt installed)" >&2
    exit 1
fi

# shellcheck source=benches/lib.sh
. "$repo/benches/lib.sh"
bench_setup

echo "== building ($PROFILE)" >&2
# One cargo invocation for the three: separate `-p` selections unify dependency features differently
# and would each rebuild the AWS SDK.
cargo build --profile "$PROFILE" -p envelope -p benches -p hsm \
    --bin envelope --bin kms-load --example token_throughput >&2
target_dir=${CARGO_TARGET_DIR:-$repo/target}
out_dir=$target_dir/$([[ $PROFILE == dev ]] && echo debug || echo "$PROFILE")
envelope_bin=$out_dir/envelope
load_bin=$out_dir/kms-load
raw_bin=$out_dir/examples/token_throughput

# Two tokens in one SoftHSM token directory: bench-root (root of trust), bench-cks (the cluster).
scripts/softhsm.sh init "$work/hsm" bench-root >/dev/null
set -a
# shellcheck disable=SC1091
source "$work/hsm/env"
set +a
cks_pin=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
softhsm2-util --init-token --free --label bench-cks --so-pin "$(cat "$work/hsm/so.pin")" \
    --pin "$cks_pin" >/dev/null
(umask 077 && printf '%s\n' "$cks_pin" >"$work/hsm/cks.pin")
module=$ENVELOPE_TEST_HSM_MODULE

# --- 1. the token's raw rate ------------------------------------------------------------------
echo "== token-raw (bench-cks, $SESSIONS sessions)" >&2
ENVELOPE_TEST_HSM_TOKEN_LABEL=bench-cks ENVELOPE_TEST_HSM_PIN_FILE=$work/hsm/cks.pin \
    "$raw_bin" "$SESSIONS" "$RAW_SECS" | tee "$results/raw.jsonl" >&2

start_server() { # label data-dir args...
    local label=$1 data=$2
    shift 2
    start_envelope "$envelope_bin" "$data" "$work/$label.out" "$results/$label.log" \
        --hsm-sessions "$SESSIONS" "$@"
}

stop_server() {
    kill -TERM "$envelope_pid"
    wait "$envelope_pid" || true
    envelope_pid=
}

load() { # label data-dir [--key-id ID]
    local label=$1 data=$2
    shift 2
    echo "== $label at $endpoint" >&2
    "$load_bin" --endpoint "$endpoint" --credentials-file "$data/credentials" --profile envelope \
        --label "$label" --concurrency "$CONCURRENCY" --duration "$DURATION" --warmup "$WARMUP" \
        --threads "$THREADS" --ops GenerateDataKey,Decrypt --json "$@" | tee "$results/$label.jsonl" >&2
}

# --- 2 and 3: software key and custom key store key, one server ----------------------------------
data=$work/data-cks
start_server cks "$data" --hsm-cluster "cluster-benchtoken1=$module:bench-cks"
cks_key=$(ENDPOINT=$endpoint DATA=$data PIN_FILE=$work/hsm/cks.pin "$VENV/bin/python" - <<'PY'
import configparser, os, boto3
cp = configparser.ConfigParser()
cp.read(os.path.join(os.environ["DATA"], "credentials"))
c = cp["envelope"]
kms = boto3.client("kms", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1",
                   aws_access_key_id=c["aws_access_key_id"], aws_secret_access_key=c["aws_secret_access_key"])
pin = open(os.environ["PIN_FILE"]).read().strip()
sid = kms.create_custom_key_store(CustomKeyStoreName="bench", CloudHsmClusterId="cluster-benchtoken1",
                                  TrustAnchorCertificate="bench", KeyStorePassword=pin)["CustomKeyStoreId"]
kms.connect_custom_key_store(CustomKeyStoreId=sid)
state = kms.describe_custom_key_stores(CustomKeyStoreId=sid)["CustomKeyStores"][0]
assert state["ConnectionState"] == "CONNECTED", state
print(kms.create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId=sid)["KeyMetadata"]["KeyId"])
PY
)
load software-key "$data"
load cks-key "$data" --key-id "$cks_key"
stop_server

# --- 4. root of trust in the token ------------------------------------------------------------
data=$work/data-root
start_server hsm-root "$data" --hsm-module "$module" --hsm-token-label bench-root \
    --hsm-pin-file "$ENVELOPE_TEST_HSM_PIN_FILE"
load hsm-root-key "$data"
stop_server

# --- table ------------------------------------------------------------------------------------
echo
echo "hsm bench: $(nproc) CPUs, $SESSIONS PKCS#11 sessions, driver threads=$THREADS, ${DURATION}s measured after ${WARMUP}s warm-up per row"
python3 - "$SESSIONS" "$results"/*.jsonl <<'EOF2'
import json, sys
sessions = int(sys.argv[1])
rows = [json.loads(l) for f in sys.argv[2:] for l in open(f) if l.strip()]
raw = {(r["op"], r["sessions"]): r["ops_per_s"] for r in rows if r.get("target") == "token-raw"}
print(f'{"token-raw":<14} {"op":<16} {"sessions":>8} {"ops/s":>10}')
for (op, n), v in sorted(raw.items()):
    print(f'{"token-raw":<14} {op:<16} {n:>8} {v:>10.0f}')
print()
load = [r for r in rows if r.get("target") != "token-raw"]
order = {"software-key": 0, "cks-key": 1, "hsm-root-key": 2}
load.sort(key=lambda r: (order.get(r["target"], 9), r["op"] != "GenerateDataKey", r["concurrency"]))
print(f'{"target":<14} {"op":<16} {"conc":>5} {"requests":>9} {"errors":>7} {"req/s":>10} {"p50 ms":>9} {"p99 ms":>9}')
for r in load:
    print(f'{r["target"]:<14} {r["op"]:<16} {r["concurrency"]:>5} {r["requests"]:>9} {r["errors"]:>7} '
          f'{r["rps"]:>10.0f} {r["p50_us"]/1000:>9.3f} {r["p99_us"]/1000:>9.3f}')
print()
for op, raw_op in (("GenerateDataKey", "encrypt"), ("Decrypt", "decrypt")):
    single = raw.get((raw_op, 1))
    best = max((r["rps"] for r in load if r["target"] == "cks-key" and r["op"] == op), default=None)
    if single is None or best is None:
        continue
    goal = 0.5 * single * sessions
    verdict = "meets" if best >= goal else "MISSES"
    print(f'cks-key {op}: best {best:.0f} req/s vs target 0.5 x {single:.0f} x {sessions} = {goal:.0f}: {verdict}')
EOF2
if [[ -n ${RESULTS_DIR:-} ]]; then
    echo "JSON lines and server logs in $results" >&2
fi
