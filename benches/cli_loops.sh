#!/usr/bin/env bash
# Invocations per second of the `statelog` command line from shell loops
# (issue 5): 1 loop and 16 concurrent loops of `statelog incr`, each invocation
# opening the store, committing with a sync and closing it. Checks the final
# counts. Usage: benches/cli_loops.sh [INVOCATIONS_PER_LOOP] (default 200).
# The store goes under target/tmp (same disk as the checkout), or $STATELOG_BENCH_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
per_loop="${1:-200}"
cargo build --release --quiet --bin statelog
bin="$PWD/target/release/statelog"
base="${STATELOG_BENCH_DIR:-$PWD/target/tmp}"
mkdir -p "$base"
work="$(mktemp -d "$base/cli-loops-XXXXXX")"
trap 'rm -rf "$work"' EXIT

run() {
    local loops="$1" store="$work/store-$1"
    "$bin" --store "$store" init >/dev/null
    local start end
    start=$(date +%s.%N)
    for _ in $(seq "$loops"); do
        (for _ in $(seq "$per_loop"); do "$bin" --store "$store" incr jobs counter n >/dev/null; done) &
    done
    wait
    end=$(date +%s.%N)
    local total=$((loops * per_loop))
    local got
    got=$("$bin" --store "$store" get jobs counter --field n)
    if [ "$got" != "$total" ]; then
        echo "FAILED: $loops loops ended at $got, expected $total" >&2
        exit 1
    fi
    awk -v n="$total" -v s="$start" -v e="$end" -v l="$loops" \
        'BEGIN { printf "%2d loop(s) x %d: %d invocations in %.2f s = %.0f invocations/s (final count %d)\n", l, n / l, n, e - s, n / (e - s), n }'
}

echo "$(nproc) cores, $(uname -sr), store under $work"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
run 1
run 16
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
