#!/usr/bin/env bash
# Dump and restore of a process with MIB MiB (default 1024) of dirty anonymous memory, against
# this machine's floors measured in the same run: writing the same bytes to the same
# directory (dump) and first-touching the same amount of fresh memory in one thread (restore).
# Prints one line per round and the medians. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
mib=${1:-1024}
rounds=${2:-3}
cargo build --release --bins --examples -q
criu=$PWD/target/release/criu
bench=$PWD/target/release/examples/bench_mem
dir=${BENCH_DIR:-$(mktemp -d)}
pid=
trap '[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$dir"/img "$dir"/floor' EXIT
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }
: > "$dir/dump.txt"; : > "$dir/write.txt"; : > "$dir/restore.txt"; : > "$dir/touch.txt"
for r in $(seq "$rounds"); do
    rm -rf "$dir/img" "$dir/floor"; mkdir "$dir/img"
    sync; echo 3 > /proc/sys/vm/drop_caches || true
    t0=$(now); dd if=/dev/zero of="$dir/floor" bs=4M count=$((mib / 4)) status=none; t1=$(now)
    echo "$t1 - $t0" | bc -l >> "$dir/write.txt"
    rm -f "$dir/floor"
    rm -f "$dir/ready"
    "$bench" hold "$mib" "$dir/ready" </dev/null >/dev/null 2>&1 &
    pid=$!
    while [ ! -e "$dir/ready" ]; do sleep 0.05; done
    t0=$(now); "$criu" dump --no-default-config -t "$pid" -D "$dir/img" -o dump.log; t1=$(now)
    wait "$pid" 2>/dev/null || true
    echo "$t1 - $t0" | bc -l >> "$dir/dump.txt"
    t0=$(now); "$criu" restore --no-default-config -D "$dir/img" -o restore.log -d; t1=$(now)
    echo "$t1 - $t0" | bc -l >> "$dir/restore.txt"
    kill -9 "$pid" 2>/dev/null || true
    "$bench" touch "$mib" >> "$dir/touch.txt"
    echo "round $r: dump $(tail -n1 "$dir/dump.txt") s (write $(tail -n1 "$dir/write.txt") s), restore $(tail -n1 "$dir/restore.txt") s (first touch $(tail -n1 "$dir/touch.txt") s)"
done
d=$(median < "$dir/dump.txt"); w=$(median < "$dir/write.txt"); rs=$(median < "$dir/restore.txt"); t=$(median < "$dir/touch.txt")
printf 'median over %s rounds, %s MiB: dump %.3f s / write %.3f s = %.2f; restore %.3f s / first touch %.3f s = %.2f\n' \
    "$rounds" "$mib" "$d" "$w" "$(echo "$d / $w" | bc -l)" "$rs" "$t" "$(echo "$rs / $t" | bc -l)"
