#!/usr/bin/env bash
# Invocations per second of the `statelog` command line from shell loops: 1 loop
# and 16 concurrent loops of `statelog incr` on one counter, first with no
# process holding the store (each invocation opens the store, commits with a
# sync and closes it; invocations take turns on the lock), then with
# `statelog serve` holding it (each invocation works through the server, and
# concurrent commits share its syncs). Checks the final counts and prints both
# runs and their ratio, and a floor measured the same way: 16 loops of
# `/bin/true` (the shell's own fork and exec: no command can beat it). Usage:
# benches/cli_loops.sh [INVOCATIONS_PER_LOOP] (default 200). The store goes
# under target/tmp (same disk as the checkout), or $STATELOG_BENCH_DIR.
# $STATELOG_BENCH_BIN runs another build of `statelog` instead of building
# this checkout's (to compare two builds in turn); STATELOG_BENCH_STATIC=1
# builds and runs the statically linked one.
set -euo pipefail
cd "$(dirname "$0")/.."
per_loop="${1:-200}"
if [ -n "${STATELOG_BENCH_BIN:-}" ]; then
    bin="$(realpath "$STATELOG_BENCH_BIN")"
elif [ -n "${STATELOG_BENCH_STATIC:-}" ]; then
    # The statically linked build the README describes for shell-heavy use.
    triple="$(rustc -vV | sed -n 's/^host: //p')"
    RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
        cargo build --release --quiet --bin statelog --target "$triple"
    bin="$PWD/target/$triple/release/statelog"
else
    cargo build --release --quiet --bin statelog
    bin="$PWD/target/release/statelog"
fi
base="${STATELOG_BENCH_DIR:-$PWD/target/tmp}"
mkdir -p "$base"
work="$(mktemp -d "$base/cli-loops-XXXXXX")"
server=""
cleanup() {
    if [ -n "$server" ]; then kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# run NAME LOOPS: prints one line and sets $rate.
run() {
    local name="$1" loops="$2" store="$work/store-$1-$2"
    "$bin" --store "$store" init >/dev/null
    if [ "$name" = serve ]; then
        "$bin" --store "$store" serve >"$work/serve.out" 2>&1 &
        server=$!
        # Wait until it serves (its first line says so).
        for _ in $(seq 200); do grep -q serving "$work/serve.out" 2>/dev/null && break; sleep 0.05; done
    fi
    local start end pids=()
    start=$(date +%s.%N)
    for _ in $(seq "$loops"); do
        (for _ in $(seq "$per_loop"); do "$bin" --store "$store" incr jobs counter n >/dev/null; done) &
        pids+=($!)
    done
    wait "${pids[@]}"
    end=$(date +%s.%N)
    local total=$((loops * per_loop))
    local got
    got=$("$bin" --store "$store" get jobs counter --field n)
    if [ -n "$server" ]; then kill -TERM "$server"; wait "$server"; server=""; fi
    if [ "$got" != "$total" ]; then
        echo "FAILED: $name, $loops loops ended at $got, expected $total" >&2
        exit 1
    fi
    rate=$(awk -v n="$total" -v s="$start" -v e="$end" 'BEGIN { printf "%.0f", n / (e - s) }')
    awk -v n="$total" -v s="$start" -v e="$end" -v l="$loops" -v name="$name" \
        'BEGIN { printf "%-13s %2d loop(s) x %d: %d invocations in %.2f s = %.0f invocations/s (final count %d)\n", name, l, n / l, n, e - s, n / (e - s), n }'
}

# floor NAME LOOPS COMMAND...: the loops of a command that touches no store.
floor() {
    local name="$1" loops="$2" start end pids=()
    shift 2
    start=$(date +%s.%N)
    for _ in $(seq "$loops"); do
        (for _ in $(seq "$per_loop"); do "$@" >/dev/null; done) &
        pids+=($!)
    done
    wait "${pids[@]}"
    end=$(date +%s.%N)
    awk -v n="$((loops * per_loop))" -v s="$start" -v e="$end" -v l="$loops" -v name="$name" \
        'BEGIN { printf "%-13s %2d loop(s) x %d: %d invocations in %.2f s = %.0f invocations/s (floor)\n", name, l, n / l, n, e - s, n / (e - s) }'
}

echo "$(nproc) cores, $(uname -sr), store under $work"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
floor /bin/true 16 /bin/true
run no-holder 1; plain1=$rate
run no-holder 16; plain16=$rate
run serve 1; serve1=$rate
run serve 16; serve16=$rate
awk -v a="$serve1" -v b="$plain1" -v c="$serve16" -v d="$plain16" \
    'BEGIN { printf "with statelog serve / without: %.1fx from 1 loop, %.1fx from 16 loops\n", a / b, c / d }'
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
