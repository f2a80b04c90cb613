#!/usr/bin/env bash
# The encrypt + Content-MD5 upload pipeline over one file from the page cache, beside `md5sum` of the
# same file in the same run: into a null sink and into Garage on loopback (a framed object, parts
# uploaded concurrently), at 1 and 2 threads, with the peak memory of each run.
#
#   benches/run-upload-bench.sh                  1 GiB, 3 runs per row (median)
#   SIZE=64M RUNS=1 benches/run-upload-bench.sh  a smoke run
#
# Knobs (environment): SIZE (bytes, or with K/M/G suffix: powers of 1024; default 1G), RUNS (3),
# THREADS ("1 2"), SINKS ("null s3"), PART_SIZE (5M), FRAME (64K), BUDGET (256M: the part buffers'
# memory budget), CONCURRENCY (4), UPLOAD_BENCH (use this binary instead of building it), WORK_DIR
# (parent of the temp dir; needs SIZE free, and SIZE more in Garage's data dir for the s3 rows).
# ENVELOPE_TEST_S3_* set: use that store instead of starting Garage with scripts/garage.sh.
#
# Timing is the pipeline's own (from the first read to the last part hashed, or the upload
# completed), printed by upload-bench; md5sum's is wall time. Peak memory is /usr/bin/time -v's
# maximum resident set size. Prints a markdown table to stdout (progress goes to stderr).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

SIZE=${SIZE:-1G}
RUNS=${RUNS:-3}
THREADS=${THREADS:-1 2}
SINKS=${SINKS:-null s3}
PART_SIZE=${PART_SIZE:-5M}
FRAME=${FRAME:-64K}
BUDGET=${BUDGET:-256M}
CONCURRENCY=${CONCURRENCY:-4}

log() { printf '== %s\n' "$*" >&2; }

bytes=$(numfmt --from=iec "$SIZE")
part_size=$(numfmt --from=iec "$PART_SIZE")
frame=$(numfmt --from=iec "$FRAME")
budget=$(numfmt --from=iec "$BUDGET")
if [[ ! -x /usr/bin/time ]]; then
    echo "/usr/bin/time (Debian package time) is needed for the peak memory" >&2
    exit 1
fi

if [[ -n ${UPLOAD_BENCH:-} ]]; then
    bench=$UPLOAD_BENCH
else
    log "building upload-bench (release)"
    cargo build --release -p benches --bin upload-bench >&2
    bench=${CARGO_TARGET_DIR:-$repo/target}/release/upload-bench
fi

tmp=$(mktemp -d "${WORK_DIR:-${TMPDIR:-/tmp}}/upload-bench.XXXXXX")
garage_dir=""
cleanup() {
    if [[ -n $garage_dir ]]; then
        scripts/garage.sh stop "$garage_dir" || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

log "writing $SIZE of random bytes"
head -c "$bytes" /dev/urandom >"$tmp/input"
cat "$tmp/input" >/dev/null # into the page cache

# peak_rss FILE: the maximum resident set size (MiB) in a /usr/bin/time -v report.
peak_rss() { awk -F': ' '/Maximum resident set size/ { printf "%.0f", $2 / 1024 }' "$1"; }
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

rows=()
# md5sum: the single-stream reference.
secs=()
for _ in $(seq "$RUNS"); do
    /usr/bin/time -v -o "$tmp/time" md5sum "$tmp/input" >/dev/null
    secs+=("$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; print s }' "$tmp/time")")
done
md5_secs=$(printf '%s\n' "${secs[@]}" | median)
md5_gbps=$(awk -v b="$bytes" -v s="$md5_secs" 'BEGIN { printf "%.3f", b / s / 1e9 }')
rows+=("| md5sum | 1 | $md5_gbps | 1.00 | $(peak_rss "$tmp/time") | – |")
log "md5sum: $md5_gbps GB/s"

for sink in $SINKS; do
    if [[ $sink == s3 && -z ${ENVELOPE_TEST_S3_ENDPOINT:-} ]]; then
        log "starting Garage"
        garage_dir=$tmp/garage
        scripts/garage.sh start "$garage_dir" >/dev/null
        set -a
        # shellcheck disable=SC1091
        source "$garage_dir/env"
        set +a
    fi
    for threads in $THREADS; do
        rates=()
        rss=0
        line=""
        for _ in $(seq "$RUNS"); do
            line=$(/usr/bin/time -v -o "$tmp/time" "$bench" --file "$tmp/input" --sink "$sink" \
                --threads "$threads" --part-size "$part_size" --frame-length "$frame" \
                --memory-budget "$budget" --concurrency "$CONCURRENCY")
            log "$line"
            rates+=("$(sed -n 's/.*GB\/s=\([0-9.]*\).*/\1/p' <<<"$line")")
            r=$(peak_rss "$tmp/time")
            ((r > rss)) && rss=$r
        done
        rate=$(printf '%s\n' "${rates[@]}" | median)
        ratio=$(awk -v a="$rate" -v b="$md5_gbps" 'BEGIN { printf "%.2f", a / b }')
        batch=$(sed -n 's/.*batch_parts=\([0-9]*\).*/\1/p' <<<"$line")
        rows+=("| pipeline → $sink | $threads | $rate | $ratio | $rss | $batch |")
    done
done

echo "Input: $SIZE from the page cache; parts ≥ $PART_SIZE, frames of $FRAME, buffer budget $BUDGET, $CONCURRENCY uploads at once; median of $RUNS runs."
echo
echo "| what | threads | GB/s | × md5sum | peak RSS (MiB) | parts hashed together |"
echo "| --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"
