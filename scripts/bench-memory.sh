#!/usr/bin/env bash
# Dump and restore of a process with MIB MiB (default 1024) of dirty anonymous memory, against
# floors measured on this machine in the same run (workload and floors: examples/bench_mem.rs):
#   dump     writing as many bytes as the dump's images hold to the same directory (dd).
#   restore  (1) the same bytes (the dump's pages image) put into fresh memory of a process
#            with the same mechanism and number of threads as criu's restore: UFFDIO_COPY from
#            a read-only mapping of the image, in 2 threads from 64 MiB on (1 below: see
#            fill() in memory/src/restore.rs);
#            (2) the physical limit: a plain memcpy of those bytes into memory that is already
#            there, in the same number of threads.
# After each restore the restored process checks every page of its memory; a wrong or partial
# restore stops the script with an error. Prints one line per round and the medians.
# Usage: bench-memory.sh [MIB [ROUNDS]]. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
mib=${1:-1024}
rounds=${2:-3}
cargo build --release -p criu --bins --examples -q
out=${CARGO_TARGET_DIR:-$PWD/target}/release
criu=${CRIU:-$out/criu}
bench=$out/examples/bench_mem
dir=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/bench-memory.XXXXXX")
pid=
trap '[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
threads=1
[ "$mib" -ge 64 ] && threads=2
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }
fail() {
    echo "bench-memory: $*" >&2
    exit 1
}
for r in $(seq "$rounds"); do
    rm -rf "$dir/img" "$dir/floor" "$dir"/ready* "$dir/pid"
    mkdir "$dir/img"
    # Not this shell's child (init reaps it): no job report when criu kills it.
    ("$bench" hold "$mib" "$dir/ready" </dev/null >/dev/null 2>&1 & echo $! > "$dir/pid")
    pid=$(cat "$dir/pid")
    for _ in $(seq 1200); do [ -e "$dir/ready" ] && break; sleep 0.05; done
    [ -e "$dir/ready" ] || fail "the workload never got ready"
    sync
    echo 3 > /proc/sys/vm/drop_caches || true
    t0=$(now)
    "$criu" dump --no-default-config -t "$pid" -D "$dir/img" -o dump.log ||
        fail "dump failed; see $dir/img/dump.log"
    t1=$(now)
    for _ in $(seq 400); do [ -e /proc/"$pid" ] || break; sleep 0.025; done
    echo "$t1 - $t0" | bc -l >> "$dir/dump.txt"
    bytes=$(du -sb "$dir/img" | cut -f1)
    t0=$(now)
    "$criu" restore --no-default-config -D "$dir/img" -o restore.log -d ||
        fail "restore failed; see $dir/img/restore.log"
    t1=$(now)
    echo "$t1 - $t0" | bc -l >> "$dir/restore.txt"
    # The restored process checks its memory.
    touch "$dir/ready.check"
    for _ in $(seq 1200); do [ -e "$dir/ready.verdict" ] && break; sleep 0.05; done
    verdict=$(cat "$dir/ready.verdict" 2>/dev/null || echo "no answer from pid $pid")
    [ "$verdict" = PASS ] || fail "round $r: the restored process's memory is wrong: $verdict"
    kill -9 "$pid" 2>/dev/null || true
    pid=
    image=$(ls -S "$dir"/img/pages-*.img | head -n1)
    "$bench" uffd "$image" "$threads" >> "$dir/uffd.txt"
    "$bench" memcpy "$image" "$threads" >> "$dir/memcpy.txt"
    rm -rf "$dir/img"
    sync
    t0=$(now)
    dd if=/dev/zero of="$dir/floor" bs=1M iflag=count_bytes count="$bytes" status=none
    t1=$(now)
    rm -f "$dir/floor"
    echo "$t1 - $t0" | bc -l >> "$dir/write.txt"
    last() { tail -n1 "$dir/$1.txt"; }
    printf 'round %s: dump %.3f s (write %s bytes: %.3f s); restore %.3f s (UFFDIO_COPY in %s threads: %.3f s, memcpy: %.3f s); restored memory checked\n' \
        "$r" "$(last dump)" "$bytes" "$(last write)" "$(last restore)" "$threads" "$(last uffd)" "$(last memcpy)"
done
d=$(median < "$dir/dump.txt") w=$(median < "$dir/write.txt") rs=$(median < "$dir/restore.txt")
u=$(median < "$dir/uffd.txt") m=$(median < "$dir/memcpy.txt")
ratio() { echo "$1 / $2" | bc -l; }
printf 'median over %s rounds, %s MiB: dump %.3f s / write %.3f s = %.2f; restore %.3f s / UFFDIO_COPY fill %.3f s = %.2f, / memcpy %.3f s = %.2f\n' \
    "$rounds" "$mib" "$d" "$w" "$(ratio "$d" "$w")" "$rs" "$u" "$(ratio "$rs" "$u")" "$m" "$(ratio "$rs" "$m")"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
