#!/usr/bin/env bash
# Frozen time of the final dump of a process with MIB MiB (default 1024) of private memory that
# keeps writing PERCENT % of its pages per second (default 1), after two pre-dumps one second
# apart (workload: `bench_mem writing`, examples/bench_mem.rs). Each round, on fresh workloads:
#   ours, iterative  pre-dump, 1 s, pre-dump --prev-images-dir, 1 s, dump --prev-images-dir
#                    --track-mem; restore; the restored process checks every page.
#   floor            writing as many bytes as that final dump's pages image holds to the same
#                    directory (dd): the copy a final dump cannot avoid.
#   ours, whole      a plain dump of the same workload.
#   upstream         CRIU's plain dump (when UPSTREAM names its binary): CRIU cannot pre-dump on
#                    a kernel without soft-dirty ("Dirty tracking is OFF"), checked each round.
# Frozen times are the dumps' own ("Frozen time" of --display-stats: from the freeze to the
# release of the tree). Prints one line per round and the medians.
# Usage: [UPSTREAM=/path/to/criu] bench-predump.sh [MIB [ROUNDS [PERCENT]]]. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
mib=${1:-1024}
rounds=${2:-3}
percent=${3:-1}
source scripts/bench-common.sh
# The frozen time (ms) a dump printed with --display-stats.
frozen() { awk '/^Frozen time:/ {printf "%.1f\n", $3 / 1000}' "$1"; }
for r in $(seq "$rounds"); do
    rm -rf "$dir"/img*
    mkdir -p "$dir/img/1" "$dir/img/2" "$dir/img/3" "$dir/img-whole" "$dir/img-up"
    start writing "$mib" "$percent"
    "$criu" pre-dump --no-default-config -t "$pid" -D "$dir/img/1" -o dump.log ||
        fail "pre-dump 1 failed; see $dir/img/1/dump.log"
    sleep 1
    "$criu" pre-dump --no-default-config -t "$pid" -D "$dir/img/2" --prev-images-dir ../1 \
        -o dump.log || fail "pre-dump 2 failed; see $dir/img/2/dump.log"
    sleep 1
    "$criu" dump --no-default-config -t "$pid" -D "$dir/img/3" --prev-images-dir ../2 \
        --track-mem -o dump.log --display-stats > "$dir/stats.txt" ||
        fail "dump failed; see $dir/img/3/dump.log"
    frozen "$dir/stats.txt" >> "$dir/iterative.txt"
    gone
    "$criu" restore --no-default-config -D "$dir/img/3" -o restore.log -d ||
        fail "restore failed; see $dir/img/3/restore.log"
    check_restored
    kill -9 "$pid"
    gone
    bytes=$(stat -c %s "$dir"/img/3/pages-*.img | awk '{s += $1} END {print s}')
    sync
    t0=$(now)
    dd if=/dev/zero of="$dir/floor" bs=1M iflag=count_bytes count="$bytes" conv=fsync status=none
    t1=$(now)
    rm -f "$dir/floor"
    echo "($t1 - $t0) * 1000" | bc -l >> "$dir/floor.txt"

    start writing "$mib" "$percent"
    "$criu" dump --no-default-config -t "$pid" -D "$dir/img-whole" -o dump.log \
        --display-stats > "$dir/stats.txt" || fail "whole dump failed"
    frozen "$dir/stats.txt" >> "$dir/whole.txt"
    gone
    line="round $r: iterative final dump frozen $(tail -n1 "$dir/iterative.txt") ms ($bytes bytes of pages; writing them: $(printf %.1f "$(tail -n1 "$dir/floor.txt")") ms); whole dump frozen $(tail -n1 "$dir/whole.txt") ms"
    if [ -n "${UPSTREAM:-}" ]; then
        start writing "$mib" "$percent"
        if "$UPSTREAM" pre-dump --no-default-config -t "$pid" -D "$dir/img-up" -o pre.log \
            2>/dev/null; then
            fail "upstream CRIU pre-dumped here: compare its iterative dump instead"
        fi
        "$UPSTREAM" dump --no-default-config -t "$pid" -D "$dir/img-up" -o dump.log \
            --display-stats > "$dir/stats.txt" || fail "upstream dump failed"
        frozen "$dir/stats.txt" >> "$dir/upstream.txt"
        gone
        line="$line; upstream whole dump frozen $(tail -n1 "$dir/upstream.txt") ms (its pre-dump refused)"
    fi
    echo "$line; restored memory checked"
done
i=$(median < "$dir/iterative.txt") f=$(median < "$dir/floor.txt") w=$(median < "$dir/whole.txt")
printf 'median over %s rounds, %s MiB at %s %%/s: iterative final dump frozen %.1f ms / writing its pages %.1f ms = %.2f; whole dump frozen %.1f ms (%.1fx the iterative one)\n' \
    "$rounds" "$mib" "$percent" "$i" "$f" "$(ratio "$i" "$f")" "$w" "$(ratio "$w" "$i")"
if [ -s "$dir/upstream.txt" ]; then
    u=$(median < "$dir/upstream.txt")
    printf 'upstream CRIU whole dump frozen %.1f ms (%.1fx our iterative one)\n' "$u" "$(ratio "$u" "$i")"
fi
