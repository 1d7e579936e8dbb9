#!/usr/bin/env bash
# Restore of a network namespace holding N veth pairs (both ends inside, each pair's first end
# with an address) and R routes over them, against the floor measured in the same round: the
# time `ip -batch` takes to create the same in a fresh namespace (`unshare -n`). The tree is one
# `sleep` in that namespace. After every restore the script compares `ip -o link`, `ip -4
# addr` and `ip -4 route` inside with what they read before the dump, or stops with an error.
# With UPSTREAM=path, upstream CRIU runs the same workload in the same rounds.
# Usage: bench-netdev.sh [ROUNDS [N [R]]] (defaults 3, 100, 1000). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3} n=${2:-100} r=${3:-1000}
cargo build --release -p criu --bins -q
out=${CARGO_TARGET_DIR:-$PWD/target}/release
dir=$(mktemp -d "${TMPDIR:-/tmp}/bench-netdev.XXXXXX")
pid=
cleanup() {
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
now() { date +%s.%N; }
calc() { echo "scale=6; $1" | bc; }
med() { sort -g "$dir/$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

bash scripts/veth-batch.sh "$n" "$r" >"$dir/batch"
show() { nsenter -t "$1" -n sh -c 'ip -o link; ip -o -4 addr; ip -4 route' | sed 's/@if[0-9]*//'; }

round() {
    local name=$1 criu=$2 t0 t1 t2
    rm -rf "$dir/img"
    mkdir "$dir/img"
    t0=$(now)
    unshare -n ip -batch "$dir/batch"
    calc "$(now) - $t0" >>"$dir/$name.floor"
    pid=$(setsid unshare -n sh -c "ip link set lo up && ip -batch $dir/batch && exec sleep 1000" \
        </dev/null >/dev/null 2>&1 & echo $!)
    for _ in $(seq 600); do
        [ "$(show "$pid" 2>/dev/null | grep -c ' via ')" = "$r" ] && break
        sleep 0.05
    done
    show "$pid" >"$dir/before"
    "$criu" dump --no-default-config -t "$pid" -D "$dir/img" -o dump.log ||
        { echo "$name: dump failed:" >&2; tail -5 "$dir/img/dump.log" >&2; exit 1; }
    # Gone, and its pid free again (this machine's pid 1 reaps slowly).
    for _ in $(seq 1200); do [ -e /proc/"$pid" ] || break; sleep 0.025; done
    sleep 1
    t1=$(now)
    "$criu" restore --no-default-config -D "$dir/img" -o restore.log -d ||
        { echo "$name: restore failed:" >&2; tail -5 "$dir/img/restore.log" >&2; exit 1; }
    t2=$(now)
    calc "$t2 - $t1" >>"$dir/$name.restore"
    show "$pid" >"$dir/after"
    diff -u "$dir/before" "$dir/after" >&2 || { echo "$name: the namespace differs" >&2; exit 1; }
    kill -9 "$pid"
    pid=
    printf '%s round: ip -batch %s s, restore %s s\n' "$name" \
        "$(tail -n1 "$dir/$name.floor")" "$(tail -n1 "$dir/$name.restore")"
}

impls="ours"
[ -n "${UPSTREAM:-}" ] && impls="ours upstream"
for _ in $(seq "$rounds"); do
    round ours "$out/criu"
    [ -n "${UPSTREAM:-}" ] && round upstream "$UPSTREAM"
done
echo "medians over $rounds rounds, $n veth pairs, $r routes:"
for name in $impls; do
    f=$(med "$name.floor") s=$(med "$name.restore")
    printf '%s: ip -batch %s s, restore %s s, restore / ip -batch %s\n' "$name" "$f" "$s" \
        "$(calc "$s / $f")"
done
