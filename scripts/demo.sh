#!/usr/bin/env bash
# The built-in example: build criu, start a sample process, dump it, restore it, and show that
# it continues counting where it stopped. Needs root (ptrace, exact pids).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins --examples
# CRIU and CRIT pick other binaries, for example the installed package's.
criu=${CRIU:-$PWD/target/release/criu}
crit=${CRIT:-$PWD/target/release/crit}
work=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "== criu check (real probes of this kernel)"
"$criu" check --no-default-config || echo "(criu check exited $?)"

echo "== start the sample process: it appends a count to $work/count every 100 ms"
target/release/examples/counter "$work/count" </dev/null >/dev/null 2>&1 &
pid=$!
sleep 1
echo "pid $pid has counted to $(tail -n1 "$work/count")"

mkdir "$work/images"
echo "== criu dump -t $pid (the process is checkpointed, then killed)"
"$criu" dump --no-default-config -t "$pid" -D "$work/images" -o dump.log
wait "$pid" 2>/dev/null || true
last=$(tail -n1 "$work/count")
sleep 0.5
echo "after the dump: pid $pid is gone, the count stays at $(tail -n1 "$work/count")"
ls "$work/images"
"$crit" show "$work/images/pstree.img" | head -12

echo "== criu restore -d"
"$criu" restore --no-default-config -D "$work/images" -o restore.log -d --pidfile "$work/pid"
echo "restored as pid $(cat "$work/pid")"
sleep 1
now=$(tail -n1 "$work/count")
echo "the restored process continues: the count went from $last to $now"
[ "$now" -gt "$last" ] || { echo "FAIL: the restored process did not continue"; exit 1; }
echo "== done: dump and restore worked"
