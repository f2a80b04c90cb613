#!/usr/bin/env bash
# Reproducible load run: envelope vs moto's KMS server, same driver, same run.
#
#   benches/run-kms-load.sh
#
# Builds release binaries, starts `envelope serve` (fresh data dir, free port) and
# `moto_server` (free port, from the repo's .venv), runs kms-load against each for
# GenerateDataKey and Decrypt at each concurrency, stops both, prints both tables.
#
# Knobs (environment): CONCURRENCY (default 1,8,32), DURATION (10), WARMUP (2),
# THREADS (driver tokio threads, 1), OPS (GenerateDataKey,Decrypt),
# FLOOD (comma-separated flood sizes for envelope, e.g. 0,16: connections sending forged requests
# beside the measured stream; default 0), FLOOD_KIND (bad-signature or unknown-key),
# MOTO_SERVER (path to moto_server; default .venv/bin/moto_server), SKIP_MOTO=1,
# RESULTS_DIR (keep JSON lines and logs there; default a temp dir that is removed).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# shellcheck source=benches/lib.sh
. "$repo/benches/lib.sh"

CONCURRENCY=${CONCURRENCY:-1,8,32}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
THREADS=${THREADS:-1}
OPS=${OPS:-GenerateDataKey,Decrypt}
FLOOD=${FLOOD:-0}
FLOOD_KIND=${FLOOD_KIND:-bad-signature}
MOTO_SERVER=${MOTO_SERVER:-$repo/.venv/bin/moto_server}
SKIP_MOTO=${SKIP_MOTO:-0}

bench_setup

if [[ $SKIP_MOTO != 1 && ! -x $MOTO_SERVER ]]; then
    echo "moto_server not found at $MOTO_SERVER" >&2
    echo "create the test venv first: python3 -m venv .venv && .venv/bin/pip install -r tests/requirements.txt" >&2
    echo "(or set MOTO_SERVER=/path/to/moto_server, or SKIP_MOTO=1)" >&2
    exit 1
fi

echo "== building (release)" >&2
cargo build --release -p envelope -p benches >&2
target_dir=${CARGO_TARGET_DIR:-$repo/target}
envelope_bin=$target_dir/release/envelope
load_bin=$target_dir/release/kms-load

wait_for_port() { # host port seconds
    local deadline=$((SECONDS + $3))
    while ((SECONDS < deadline)); do
        if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

driver_args=(--concurrency "$CONCURRENCY" --duration "$DURATION" --warmup "$WARMUP"
    --threads "$THREADS" --ops "$OPS")

# --- envelope ---------------------------------------------------------------
data=$work/envelope-data
start_envelope "$envelope_bin" "$data" "$work/envelope.out" "$results/envelope.log"
echo "== envelope at $endpoint" >&2
"$load_bin" --endpoint "$endpoint" --credentials-file "$data/credentials" --profile envelope \
    --label envelope "${driver_args[@]}" --flood "$FLOOD" --flood-kind "$FLOOD_KIND" --json | tee "$results/envelope.jsonl" >&2
kill -TERM "$envelope_pid"
wait "$envelope_pid" || true
envelope_pid=

# --- moto -------------------------------------------------------------------
if [[ $SKIP_MOTO != 1 ]]; then
    port=$(free_port)
    "$MOTO_SERVER" -H 127.0.0.1 -p "$port" >"$results/moto.log" 2>&1 &
    moto_pid=$!
    if ! wait_for_port 127.0.0.1 "$port" 60; then
        echo "moto_server did not start; log:" >&2
        cat "$results/moto.log" >&2
        exit 1
    fi
    echo "== moto at http://127.0.0.1:$port" >&2
    # moto ignores signatures, but the requests are signed exactly the same way.
    "$load_bin" --endpoint "http://127.0.0.1:$port" --access-key-id AKIAIOSFODNN7EXAMPLE \
        --secret-access-key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY \
        --label moto "${driver_args[@]}" --json | tee "$results/moto.jsonl" >&2
    kill -TERM "$moto_pid"
    wait "$moto_pid" 2>/dev/null || true
    moto_pid=
fi

# --- tables -----------------------------------------------------------------
echo
echo "kms-load: $(nproc) CPUs, driver threads=$THREADS, ${DURATION}s measured after ${WARMUP}s warm-up per row"
python3 - "$results"/*.jsonl <<'EOF'
import json, sys
rows = [json.loads(l) for f in sys.argv[1:] for l in open(f) if l.strip()]
order = {"envelope": 0, "moto": 1}
rows.sort(key=lambda r: (order.get(r["target"], 9), r["op"] != "GenerateDataKey", r["concurrency"]))
print(f'{"target":<12} {"op":<16} {"conc":>5} {"requests":>9} {"errors":>7} {"req/s":>10} {"p50 ms":>9} {"p99 ms":>9} {"max ms":>9} {"flood":>6} {"flood/s":>9}')
for r in rows:
    flood = f'{r.get("flood", 0):>6} {r.get("flood_rps", 0):>9.0f}' if r.get("flood") else f'{"-":>6} {"-":>9}'
    print(f'{r["target"]:<12} {r["op"]:<16} {r["concurrency"]:>5} {r["requests"]:>9} {r["errors"]:>7} '
          f'{r["rps"]:>10.0f} {r["p50_us"]/1000:>9.3f} {r["p99_us"]/1000:>9.3f} {r["max_us"]/1000:>9.3f} {flood}')
EOF
if [[ -n ${RESULTS_DIR:-} ]]; then
    echo "JSON lines and server logs in $results" >&2
fi
