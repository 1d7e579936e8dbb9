#!/usr/bin/env bash
# Dump and restore of N established loopback TCP connections (both ends in one process,
# BYTES queued unread in each direction of each connection; workload: examples/bench_tcp.rs)
# with --tcp-established, against the floor measured in the same round: the time the workload
# took to set the same connections up (connect, accept, write both ways). After every
# restore the workload checks that every end still reads exactly its bytes, or the script
# stops with an error. With UPSTREAM=path, upstream CRIU runs the same workload in the same
# rounds, interleaved with ours.
# Usage: bench-tcp.sh [ROUNDS [N [BYTES]]] (defaults 3, 1000, 65536). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3} n=${2:-1000} bytes=${3:-65536}
cargo build --release -p criu --bins --examples -q
out=${CARGO_TARGET_DIR:-$PWD/target}/release
dir=$(mktemp -d "${TMPDIR:-/tmp}/bench-tcp.XXXXXX")
pid=
cleanup() {
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
now() { date +%s.%N; }
calc() { echo "scale=6; $1" | bc; }
med() { sort -g "$dir/$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# One round with one criu binary, its name (ours, upstream) for the result files.
round() {
    local name=$1 criu=$2 t0 t1 t2
    rm -rf "$dir/img" "$dir"/ready*
    mkdir "$dir/img"
    # Started from a subshell, so init reaps it (and the shell reports nothing of its death).
    pid=$(setsid "$out/examples/bench_tcp" "$n" "$bytes" "$dir/ready" </dev/null >/dev/null 2>&1 &
        echo $!)
    for _ in $(seq 600); do [ -e "$dir/ready" ] && break; sleep 0.05; done
    [ -e "$dir/ready" ] || { echo "bench_tcp never got ready" >&2; exit 1; }
    cat "$dir/ready.setup" >>"$dir/$name.floor"
    t0=$(now)
    "$criu" dump --no-default-config -t "$pid" -D "$dir/img" -o dump.log --tcp-established ||
        { echo "$name: dump failed:" >&2; tail -5 "$dir/img/dump.log" >&2; exit 1; }
    t1=$(now)
    for _ in $(seq 400); do [ -e /proc/"$pid" ] || break; sleep 0.025; done
    t2=$(now)
    "$criu" restore --no-default-config -D "$dir/img" -o restore.log --tcp-established -d ||
        { echo "$name: restore failed:" >&2; tail -5 "$dir/img/restore.log" >&2; exit 1; }
    calc "$t1 - $t0" >>"$dir/$name.dump"
    calc "$(now) - $t2" >>"$dir/$name.restore"
    kill -USR1 "$pid"
    for _ in $(seq 600); do [ -e "$dir/ready.verdict" ] && break; sleep 0.05; done
    if [ "$(cat "$dir/ready.verdict" 2>/dev/null)" != PASS ]; then
        echo "$name: the restored connections lost bytes: $(cat "$dir/ready.verdict" 2>/dev/null)" >&2
        exit 1
    fi
    kill -9 "$pid"
    pid=
    printf '%s round: setup %s s, dump %s s, restore %s s\n' "$name" \
        "$(tail -n1 "$dir/$name.floor")" "$(tail -n1 "$dir/$name.dump")" "$(tail -n1 "$dir/$name.restore")"
}

impls="ours"
[ -n "${UPSTREAM:-}" ] && impls="ours upstream"
for _ in $(seq "$rounds"); do
    round ours "${CRIU:-$out/criu}"
    [ -n "${UPSTREAM:-}" ] && round upstream "$UPSTREAM"
done

per() { printf '%.0f us' "$(calc "$1 * 1000000 / $n")"; }
echo
echo "$n connections, $bytes bytes queued each way; medians over $rounds rounds"
echo
echo "| criu | setup (floor), per connection | dump, per connection | restore, per connection | dump / setup | restore / setup |"
echo "|---|---|---|---|---|---|"
for name in $impls; do
    f=$(med "$name.floor") d=$(med "$name.dump") r=$(med "$name.restore")
    printf '| %s | %s | %s | %s | %.2f | %.2f |\n' "$name" "$(per "$f")" "$(per "$d")" "$(per "$r")" \
        "$(calc "$d / $f")" "$(calc "$r / $f")"
done
