#!/usr/bin/env bash
# ListUsers against account size (README, "IAM listings"): for each account size, each binary
# serves a fresh SQLite data directory, benches/iam_list.py fills it with that many users and times
# ListUsers; binaries alternate, ROUNDS times.
#
#   benches/run-iam-list.sh [LABEL=BINARY ...]     default: a release build of this tree, `this`
#
# Knobs (environment): USERS (account sizes, default "100 5000"), ROUNDS (2).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# shellcheck source=benches/lib.sh
. "$repo/benches/lib.sh"

USERS=${USERS:-100 5000}
ROUNDS=${ROUNDS:-2}
builds=("$@")
if [[ ${#builds[@]} -eq 0 ]]; then
    cargo build --release -p envelope --bin envelope >&2
    builds=("this=$repo/${CARGO_TARGET_DIR:-target}/release/envelope")
fi

bench_setup
for n in $USERS; do
    for round in $(seq 1 "$ROUNDS"); do
        for b in "${builds[@]}"; do
            label=${b%%=*} bin=${b#*=}
            data=$work/$label-$n-$round
            start_envelope "$bin" "$data" "$data.out" "$data.log"
            AWS_SHARED_CREDENTIALS_FILE=$data/credentials AWS_CONFIG_FILE=/dev/null \
                "$repo/.venv/bin/python" benches/iam_list.py "$endpoint" "$label-r$round" "$n"
            kill -TERM "$envelope_pid"
            wait "$envelope_pid" || true
            envelope_pid=
        done
    done
done
