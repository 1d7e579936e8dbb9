#!/usr/bin/env bash
# Dump and restore of process trees, threads and descriptors, each against a floor measured
# on this machine in the same run (workloads: examples/bench_tree.rs, bench_threads.rs,
# bench_fds.rs):
#   tree-dirty   100 processes, 4 MiB of private memory each (every child rewrites its copy
#                after fork). Floors: writing as many bytes as the images hold to the same
#                directory (dump); forking the same tree with the same first touches (restore).
#                Also: cores busy (user+sys of criu and its children over wall time) and the
#                summed Pss of the restored tree over the original's.
#   tree-shared  the same tree, but the children leave the root's pages shared copy-on-write.
#   tree-ns      the tree-dirty tree as the init of its own pid, ipc, uts and net namespaces
#                (unshare). Floor: tree-dirty, the same tree without namespaces (run it too).
#   threads      one process with 50 threads, each with 64 KiB of stack written. Floor:
#                starting the same 50 threads.
#   tree-1000    1000 processes, little memory. Floor: fork + exit of 1000 processes.
#   fds          one process with 10,000 fds: 5,000 regular files, 2,500 pipes (both ends).
#                Floor: opening the same files and pipes in a fresh process.
# Usage: bench-tree.sh [ROUNDS [CASE...]] (default 3 rounds, every case). Prints one line per
# round and a markdown table of medians. After every restore the restored tree must have the
# original's shape (processes, threads and fds of the root), or the script stops with an error
# (exit 1). Needs root. CRIU=path overrides the criu binary.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
shift || true
cases=${*:-tree-dirty tree-shared tree-ns threads tree-1000 fds}
cargo build --release -p criu --bins --examples -q
out=${CARGO_TARGET_DIR:-$PWD/target}/release
criu=${CRIU:-$out/criu}
ex=$out/examples
dir=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/bench-tree.XXXXXX")
roots=""
# Restoring 10,000 descriptions keeps them open in criu at once.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# Prints PID and every descendant (through /proc/PID/task/*/children).
tree_pids() {
    echo "$1"
    local c
    for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do tree_pids "$c"; done
}
# Waits until none of the given pids exists any more (zombies of a dumped tree keep their pid,
# and their process group's, busy: the restore would meet EEXIST).
wait_gone() {
    local p i
    for p in "$@"; do
        for i in $(seq 400); do [ -e /proc/"$p" ] || break; sleep 0.025; done
    done
}
kill_tree() {
    local pids
    pids=$(tree_pids "$1")
    # shellcheck disable=SC2086
    kill -9 $pids 2>/dev/null || true
    kill -9 -- -"$1" 2>/dev/null || true
    # shellcheck disable=SC2086
    wait_gone $pids
}
cleanup() {
    local r
    for r in $roots; do kill_tree "$r"; done
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

median() { sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]}'; }
# record CASE METRIC VALUE
record() { echo "$3" >> "$dir/$1.$2"; }
med() { median < "$dir/$1.$2"; }
calc() { echo "$*" | bc -l; }
pss_kib() {
    local sum=0 p v
    for p in $(tree_pids "$1"); do
        v=$(awk '/^Pss:/ {print $2}' /proc/"$p"/smaps_rollup 2>/dev/null || true)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}
# timed CASE WHAT LOG CMD...: runs a criu command, records its wall and cpu (user+sys) seconds.
timed() {
    local c=$1 what=$2 log=$3 w u s rc=0
    shift 3
    local TIMEFORMAT='%3R %3U %3S'
    { time "$@" >>"$dir/criu.out" 2>&1; } 2>"$dir/time" || rc=$?
    if [ "$rc" != 0 ]; then
        echo "$c: criu $what failed (exit $rc); last lines of $log:" >&2
        tail -n 20 "$dir/img/$log" "$dir/criu.out" >&2 || true
        exit 1
    fi
    read -r w u s < "$dir/time"
    record "$c" "$what" "$w"
    record "$c" "$what.cpu" "$(calc "$u + $s")"
}
# start_hold CASE CMD...: starts a workload whose last argument is its ready file, waits.
# The workload is not this shell's child (init reaps it), so no job reports when criu kills it.
start_hold() {
    local c=$1 i
    shift
    rm -f "$dir/ready"
    ("$@" </dev/null >/dev/null 2>&1 & echo $! > "$dir/root")
    root=$(cat "$dir/root")
    roots="$roots $root"
    for i in $(seq 2400); do [ -e "$dir/ready" ] && return; sleep 0.05; done
    echo "$c: workload not ready after 120 s" >&2
    exit 1
}
# live_tasks PID: how many processes of the tree under PID are alive (zombies left out).
live_tasks() {
    local p n=0 state
    for p in $(tree_pids "$1"); do
        state=$(awk '{sub(/.*\) /, ""); print $1}' /proc/"$p"/stat 2>/dev/null || true)
        [ -n "$state" ] && [ "$state" != Z ] && n=$((n + 1))
    done
    echo "$n"
}
# shape PID: "TASKS THREADS FDS": live processes in the tree, threads and fds of its root.
shape() {
    echo "$(live_tasks "$1") $(find /proc/"$1"/task -mindepth 1 -maxdepth 1 | wc -l) $(find /proc/"$1"/fd -mindepth 1 -maxdepth 1 | wc -l)"
}
# dump_restore CASE: dumps the tree of $root (measuring Pss first), restores it detached,
# checks that the restored tree has the original's shape (else the script fails), measures its
# Pss, kills it.
dump_restore() {
    local c=$1 pids before after tasks threads fds
    rm -rf "$dir/img"
    mkdir "$dir/img"
    record "$c" pss.before "$(pss_kib "$root")"
    before=$(shape "$root")
    pids=$(tree_pids "$root")
    sync
    timed "$c" dump dump.log "$criu" dump --no-default-config -t "$root" -D "$dir/img" -o dump.log
    # criu killed the tree: forget it until the restore brings it back (its pid may be reused).
    roots=${roots% "$root"}
    # shellcheck disable=SC2086
    wait_gone $pids
    record "$c" img.bytes "$(du -sb "$dir/img" | cut -f1)"
    timed "$c" restore restore.log "$criu" restore --no-default-config -D "$dir/img" -o restore.log -d \
        --pidfile "$dir/pid"
    # In a pid namespace of its own the tree comes back under other pids (criu's view).
    root=$(cat "$dir/pid")
    rm -f "$dir/pid"
    roots="$roots $root"
    after=$(shape "$root")
    if [ "$after" != "$before" ]; then
        echo "$c round $r: partial restore: tasks, root threads, root fds were $before, restored $after" >&2
        exit 1
    fi
    read -r tasks threads fds <<< "$after"
    record "$c" pss.after "$(pss_kib "$root")"
    record "$c" tasks "$tasks"
    record "$c" threads "$threads"
    record "$c" fds "$fds"
    kill_tree "$root"
    roots=${roots% "$root"}
}
# write_floor CASE: writes as many bytes as the images hold to the same directory.
write_floor() {
    local c=$1 bytes t0 t1
    bytes=$(tail -n1 "$dir/$c.img.bytes")
    rm -rf "$dir/img"
    sync
    t0=$(date +%s.%N)
    dd if=/dev/zero of="$dir/floor" bs=4M iflag=count_bytes count="$bytes" status=none
    t1=$(date +%s.%N)
    rm -f "$dir/floor"
    record "$c" floor.dump "$(calc "$t1 - $t0")"
}

round() {
    local c=$1
    case $c in
    tree-dirty | tree-shared)
        local mode=${c#tree-}
        start_hold "$c" "$ex/bench_tree" hold 100 4 "$mode" "$dir/ready"
        dump_restore "$c"
        write_floor "$c"
        record "$c" floor.restore "$("$ex/bench_tree" build 100 4 "$mode")"
        ;;
    tree-ns)
        start_hold "$c" unshare --pid --fork --ipc --uts --net "$ex/bench_tree" hold 100 4 dirty "$dir/ready"
        # The dump root is unshare's child, the init of the new pid namespace.
        roots=${roots% "$root"}
        root=$(awk '{print $1}' /proc/"$root"/task/*/children)
        roots="$roots $root"
        dump_restore "$c"
        ;;
    threads)
        start_hold "$c" "$ex/bench_threads" hold 50 "$dir/ready"
        dump_restore "$c"
        record "$c" floor "$("$ex/bench_threads" spawn 50)"
        ;;
    tree-1000)
        start_hold "$c" "$ex/bench_tree" hold 1000 0 dirty "$dir/ready"
        dump_restore "$c"
        record "$c" floor "$("$ex/bench_tree" forkexit 1000)"
        ;;
    fds)
        mkdir -p "$dir/files"
        start_hold "$c" "$ex/bench_fds" hold 10000 "$dir/files" "$dir/ready"
        dump_restore "$c"
        record "$c" floor "$("$ex/bench_fds" open 10000 "$dir/files")"
        ;;
    *)
        echo "unknown case $c (tree-dirty tree-shared tree-ns threads tree-1000 fds)" >&2
        exit 2
        ;;
    esac
    last() { tail -n1 "$dir/$c.$1"; }
    printf '%s round %s: dump %s s (cpu %s s), restore %s s (cpu %s s); restored: %s tasks, root has %s threads, %s fds; Pss %s -> %s KiB\n' \
        "$c" "$r" "$(last dump)" "$(last dump.cpu)" "$(last restore)" "$(last restore.cpu)" \
        "$(last tasks)" "$(last threads)" "$(last fds)" "$(last pss.before)" "$(last pss.after)"
}

for r in $(seq "$rounds"); do
    for c in $cases; do round "$c"; done
done

# The table: medians over the rounds; each ratio is median / median floor.
row() { printf '| %s | %s | %s | %s |\n' "$@"; }
secs() { printf '%.3f s' "$1"; }
ratio() { printf '%.2f' "$(calc "$1 / $2")"; }
usec() { printf '%.0f us' "$(calc "$1 * 1000000 / $2")"; }
mib() { printf '%.0f MiB' "$(calc "$1 / 1024")"; }
busy() { printf '%.2f' "$(calc "$(med "$1" "$2.cpu") / $(med "$1" "$2")")"; }
echo
echo "medians over $rounds rounds, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo
row benchmark measure "median (floor)" "ratio to floor"
row --- --- --- ---
for c in $cases; do
    d=$(med "$c" dump) rs=$(med "$c" restore)
    case $c in
    tree-dirty | tree-shared)
        name="100 procs x 4 MiB, $([ "$c" = tree-dirty ] && echo "dirtied by each child" || echo "shared COW")"
        fd=$(med "$c" floor.dump) fr=$(med "$c" floor.restore)
        row "$name" dump "$(secs "$d") (write $(mib "$(calc "$(med "$c" img.bytes) / 1024")"): $(secs "$fd"))" "$(ratio "$d" "$fd")"
        row "" restore "$(secs "$rs") (fork + first touch: $(secs "$fr"))" "$(ratio "$rs" "$fr")"
        row "" "cores busy (cpu / wall)" "dump $(busy "$c" dump), restore $(busy "$c" restore)" ""
        pb=$(med "$c" pss.before) pa=$(med "$c" pss.after)
        row "" "Pss of the tree, restored / original" "$(mib "$pa") / $(mib "$pb")" "$(ratio "$pa" "$pb")"
        ;;
    tree-ns)
        [ -e "$dir/tree-dirty.dump" ] || continue
        row "100 procs x 4 MiB dirtied, own pid+ipc+uts+net ns" dump "$(secs "$d") (no namespaces: $(secs "$(med tree-dirty dump)"))" "$(ratio "$d" "$(med tree-dirty dump)")"
        row "" restore "$(secs "$rs") (no namespaces: $(secs "$(med tree-dirty restore)"))" "$(ratio "$rs" "$(med tree-dirty restore)")"
        ;;
    threads)
        f=$(med "$c" floor)
        row "1 process x 50 threads" dump "$(secs "$d") (start 50 threads: $(secs "$f"))" "$(ratio "$d" "$f")"
        row "" restore "$(secs "$rs")" "$(ratio "$rs" "$f")"
        ;;
    tree-1000)
        f=$(med "$c" floor)
        row "1000 procs, little memory" "dump, per task" "$(usec "$d" 1000) (fork + exit: $(usec "$f" 1000))" "$(ratio "$d" "$f")"
        row "" "restore, per task" "$(usec "$rs" 1000)" "$(ratio "$rs" "$f")"
        ;;
    fds)
        f=$(med "$c" floor)
        row "10,000 fds (5,000 files, 2,500 pipes)" "dump, per fd" "$(usec "$d" 10000) (open + pipe: $(usec "$f" 10000))" "$(ratio "$d" "$f")"
        row "" "restore, per fd" "$(usec "$rs" 10000)" "$(ratio "$rs" "$f")"
        ;;
    esac
done
