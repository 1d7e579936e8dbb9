#!/usr/bin/env bash
# Restore time of a tree with a network namespace (N veth pairs, R routes) and a mount
# namespace (M tmpfs mounts) of its own, for two criu binaries A and B, interleaved round by
# round; prints each one's median. Used to weigh filling the network namespace on a thread of
# its own against filling the namespaces in turn (build each variant, pass both).
# Usage: bench-ns-fill.sh A B [ROUNDS [N [R [M]]]] (defaults 5, 100, 1000, 60). Needs root.
set -euo pipefail
a=$1 b=$2 rounds=${3:-5} n=${4:-100} r=${5:-1000} m=${6:-60}
dir=$(mktemp -d "${TMPDIR:-/tmp}/bench-ns-fill.XXXXXX")
pid=
cleanup() {
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
bash "$(dirname "$0")/veth-batch.sh" "$n" "$r" >"$dir/batch"

round() {
    local name=$1 criu=$2 t0
    rm -rf "$dir/img" "$dir/mnt"
    mkdir -p "$dir/img" "$dir/mnt"
    pid=$(setsid unshare -n -m --propagation private sh -c "ip link set lo up && \
        ip -batch $dir/batch && for i in \$(seq $m); do mkdir $dir/mnt/m\$i && \
        mount -t tmpfs t\$i $dir/mnt/m\$i; done; exec sleep 1000" </dev/null >/dev/null 2>&1 &
        echo $!)
    for _ in $(seq 600); do
        [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = sleep ] && break
        sleep 0.05
    done
    "$criu" dump --no-default-config -t "$pid" -D "$dir/img" -o dump.log --external 'mnt[]' ||
        { echo "$name: dump failed" >&2; exit 1; }
    for _ in $(seq 1200); do [ -e /proc/"$pid" ] || break; sleep 0.025; done
    sleep 1
    t0=$(date +%s.%N)
    "$criu" restore --no-default-config -D "$dir/img" -o restore.log -d \
        --ext-mount-map auto --root / || { echo "$name: restore failed" >&2; exit 1; }
    echo "scale=6; $(date +%s.%N) - $t0" | bc >>"$dir/$name"
    kill -9 "$pid"
    pid=
}
for _ in $(seq "$rounds"); do
    round a "$a"
    round b "$b"
done
med() { sort -g "$dir/$1" | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
echo "medians of $rounds rounds ($n veth pairs, $r routes, $m tmpfs): A $(med a) s, B $(med b) s"
