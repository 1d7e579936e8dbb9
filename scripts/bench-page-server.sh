#!/usr/bin/env bash
# A dump of a process with MIB MiB (default 1024) of dirty private memory through a page
# server on loopback, against the same dump written locally and against writing the same bytes
# to a file (dd), each round on fresh workloads (examples/bench_mem.rs `hold`):
#   page server  `criu page-server -D DIR --port P -d`, then `criu dump --page-server
#                --address 127.0.0.1 --port P`: pages go over TCP, the page server writes them.
#   local        `criu dump` into a directory of the same filesystem.
#   floor        dd of the pages image's size into that filesystem.
# The dump through the page server is restored from the page server's directory (with the
# other images copied there) and the restored process checks every page, each round.
# Prints one line per round and the medians. Usage: bench-page-server.sh [MIB [ROUNDS]].
set -euo pipefail
cd "$(dirname "$0")/.."
mib=${1:-1024}
rounds=${2:-3}
source scripts/bench-common.sh
port=$((20000 + RANDOM % 20000))
for r in $(seq "$rounds"); do
    rm -rf "$dir/ps" "$dir/img" "$dir/local"
    mkdir -p "$dir/ps" "$dir/img" "$dir/local"
    start hold "$mib"
    "$criu" page-server --no-default-config -D "$dir/ps" --address 127.0.0.1 --port "$port" \
        -d -o ps.log || fail "the page server did not start"
    sync
    t0=$(now)
    "$criu" dump --no-default-config -t "$pid" -D "$dir/img" -o dump.log --page-server \
        --address 127.0.0.1 --port "$port" || fail "dump failed; see $dir/img/dump.log"
    t1=$(now)
    echo "$t1 - $t0" | bc -l >> "$dir/ps.txt"
    gone
    for _ in $(seq 200); do pgrep -f "page-server.*$port" >/dev/null || break; sleep 0.05; done
    cp -n "$dir"/img/*.img "$dir/ps/"
    "$criu" restore --no-default-config -D "$dir/ps" -o restore.log -d ||
        fail "restore from the page server's images failed; see $dir/ps/restore.log"
    check_restored
    kill -9 "$pid"
    gone
    bytes=$(stat -c %s "$dir"/ps/pages-*.img | awk '{s += $1} END {print s}')

    start hold "$mib"
    sync
    t0=$(now)
    "$criu" dump --no-default-config -t "$pid" -D "$dir/local" -o dump.log ||
        fail "local dump failed"
    t1=$(now)
    echo "$t1 - $t0" | bc -l >> "$dir/local.txt"
    gone
    rm -rf "$dir/local"
    sync
    t0=$(now)
    dd if=/dev/zero of="$dir/floor" bs=1M iflag=count_bytes count="$bytes" status=none
    t1=$(now)
    rm -f "$dir/floor"
    echo "$t1 - $t0" | bc -l >> "$dir/write.txt"
    last() { tail -n1 "$dir/$1.txt"; }
    printf 'round %s: dump through the page server %.3f s, local dump %.3f s, writing %s bytes %.3f s; restored memory checked\n' \
        "$r" "$(last ps)" "$(last local)" "$bytes" "$(last write)"
done
p=$(median < "$dir/ps.txt") l=$(median < "$dir/local.txt") w=$(median < "$dir/write.txt")
printf 'median over %s rounds, %s MiB: page server %.3f s / local dump %.3f s = %.2f; page server / writing the bytes %.3f s = %.2f (%.0f MiB/s through the page server)\n' \
    "$rounds" "$mib" "$p" "$l" "$(ratio "$p" "$l")" "$w" "$(ratio "$p" "$w")" "$(echo "$mib / $p" | bc -l)"
