#!/usr/bin/env bash
# Dump and restore of a tree's mount namespace: (1) M bind mounts of directories of one tmpfs,
# reported per mount; (2) a tmpfs holding S MiB of files (1 MiB each), against the floor
# measured in the same round: `cp -a` of the same files into a fresh tmpfs. The tree is one
# `sleep` in a mount namespace of its own (`unshare -m --propagation private`); criu's own
# mounts are external to it (`--external mnt[]`, restored with `--ext-mount-map auto --root
# /`). After every restore the script compares the tree's mount points (and the tmpfs
# content's checksum) with what they were, or stops with an error. With UPSTREAM=path,
# upstream CRIU runs the same workloads in the same rounds.
# Usage: bench-mounts.sh [ROUNDS [M [S]]] (defaults 3, 1000, 256). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3} m=${2:-1000} s=${3:-256}
cargo build --release -p criu --bins -q
out=${CARGO_TARGET_DIR:-$PWD/target}/release
dir=$(mktemp -d "${TMPDIR:-/tmp}/bench-mounts.XXXXXX")
pid=
cleanup() {
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    umount -R "$dir/floor" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
now() { date +%s.%N; }
calc() { echo "scale=6; $1" | bc; }
med() { sort -g "$dir/$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
points() { awk '{print $5}' "/proc/$1/mountinfo" | grep "^$dir/t" | sort; }

# The tree: its own mount namespace with SETUP run in it, then `sleep`.
start() {
    pid=$(setsid unshare -m --propagation private sh -c "$1; exec sleep 1000 </dev/null >/dev/null 2>&1" \
        </dev/null >/dev/null 2>&1 & echo $!)
    for _ in $(seq 1200); do
        [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = sleep ] && return
        sleep 0.05
    done
    echo "the tree never got ready" >&2
    exit 1
}

# One dump and restore of the running tree with `criu`; times into NAME.dump/NAME.restore.
cycle() {
    local name=$1 criu=$2 check=$3 t0 t1
    rm -rf "$dir/img" && mkdir "$dir/img"
    local before
    before=$($check)
    t0=$(now)
    "$criu" dump --no-default-config -t "$pid" -D "$dir/img" -o dump.log --external 'mnt[]' ||
        { echo "$name: dump failed" >&2; tail -5 "$dir/img/dump.log" >&2; exit 1; }
    calc "$(now) - $t0" >>"$dir/$name.dump"
    for _ in $(seq 1200); do [ -e /proc/"$pid" ] || break; sleep 0.025; done
    sleep 1
    t1=$(now)
    "$criu" restore --no-default-config -D "$dir/img" -o restore.log -d \
        --ext-mount-map auto --root / ||
        { echo "$name: restore failed" >&2; tail -5 "$dir/img/restore.log" >&2; exit 1; }
    calc "$(now) - $t1" >>"$dir/$name.restore"
    [ "$($check)" = "$before" ] || { echo "$name: the tree's mounts differ" >&2; exit 1; }
    kill -9 "$pid"
    pid=
}

binds() {
    local name=$1 criu=$2
    mkdir -p "$dir/t"
    start "mount -t tmpfs base $dir/t && for i in \$(seq $m); do mkdir $dir/t/d\$i $dir/t/b\$i; \
        done && for i in \$(seq $m); do mount --bind $dir/t/d\$i $dir/t/b\$i; done"
    cycle "binds.$name" "$criu" "points $pid"
}

tmpfs_files() {
    local name=$1 criu=$2 t0
    mkdir -p "$dir/t" "$dir/src" "$dir/floor"
    # The floor: the same files copied into a fresh tmpfs.
    [ -e "$dir/src/f1" ] || for i in $(seq "$s"); do
        head -c 1M /dev/urandom >"$dir/src/f$i"
    done
    mount -t tmpfs floor "$dir/floor"
    t0=$(now)
    cp -a "$dir/src/." "$dir/floor/"
    calc "$(now) - $t0" >>"$dir/files.floor"
    umount "$dir/floor"
    start "mount -t tmpfs -o size=$((s + 64))m data $dir/t && cp -a $dir/src/. $dir/t/"
    sum() { nsenter -t "$pid" -m sh -c "cat $dir/t/* | md5sum"; }
    cycle "files.$name" "$criu" sum
}

impls="ours"
[ -n "${UPSTREAM:-}" ] && impls="ours upstream"
for _ in $(seq "$rounds"); do
    for impl in $impls; do
        bin=$out/criu
        [ "$impl" = upstream ] && bin=$UPSTREAM
        binds "$impl" "$bin"
        tmpfs_files "$impl" "$bin"
    done
done
echo "medians over $rounds rounds:"
for impl in $impls; do
    bd=$(med "binds.$impl.dump") br=$(med "binds.$impl.restore")
    printf '%s, %s bind mounts: dump %s s (%s ms per mount), restore %s s (%s ms per mount)\n' \
        "$impl" "$m" "$bd" "$(calc "$bd * 1000 / $m")" "$br" "$(calc "$br * 1000 / $m")"
    fd=$(med "files.$impl.dump") fr=$(med "files.$impl.restore") fl=$(med files.floor)
    printf '%s, tmpfs with %s MiB of files: dump %s s, restore %s s; cp -a %s s; dump / cp %s, restore / cp %s\n' \
        "$impl" "$s" "$fd" "$fr" "$fl" "$(calc "$fd / $fl")" "$(calc "$fr / $fl")"
done
