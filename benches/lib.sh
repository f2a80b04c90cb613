# Shared by the benches' scripts (sourced, not run).

# start_envelope BIN DATA_DIR OUT LOG [ARGS...]: starts `BIN serve` on a free loopback port with the
# data directory DATA_DIR (made if missing), stdout to OUT and stderr to LOG, and waits for its
# "listening on" line. Sets envelope_pid and endpoint; exits the script if the server does not start.
start_envelope() {
    local bin=$1 data=$2 out=$3 log=$4
    shift 4
    mkdir -p "$data"
    "$bin" serve --data-dir "$data" --listen 127.0.0.1:0 "$@" >"$out" 2>"$log" &
    envelope_pid=$!
    endpoint=
    for _ in $(seq 1 150); do
        endpoint=$(sed -n 's/^listening on \(http:\/\/[^ ]*\).*/\1/p' "$out" | head -n1)
        [[ -n $endpoint ]] && return 0
        if ! kill -0 "$envelope_pid" 2>/dev/null; then
            echo "envelope serve exited early; log:" >&2
            cat "$log" >&2
            exit 1
        fi
        sleep 0.2
    done
    echo "envelope serve did not print 'listening on' within 30 s" >&2
    exit 1
}

# bench_setup: a work directory $work (removed at exit), $results (RESULTS_DIR, else inside $work),
# and a trap that stops $envelope_pid and $moto_pid at exit if they still run.
bench_setup() {
    work=$(mktemp -d)
    results=${RESULTS_DIR:-$work/results}
    mkdir -p "$results"
    envelope_pid=
    moto_pid=
    trap bench_cleanup EXIT
}

bench_cleanup() {
    for pid in $envelope_pid $moto_pid; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$work"
}
