#!/usr/bin/env bash
# Seizing a 1,000-task tree through the cgroup freezer against seizing it task by task
# (workload: examples/bench_tree.rs, `hold 1000 0 dirty`, every task in one fresh cgroup of
# the v1 freezer hierarchy and one of cgroup2).
#   task   `criu dump -R`: the tree is seized level by level, each task stopped on its own.
#   v1     `criu dump -R --freeze-cgroup /sys/fs/cgroup/freezer/CG`: freeze, seize and
#          interrupt every task, thaw, collect the stops.
#   v2     the same through cgroup2's `cgroup.freeze` (/sys/fs/cgroup/unified/CG).
# The measure is the dump's seize time (its log's "seized N task(s) in US us", stats-dump's
# freezing_time): from the start of the seize (the freeze included) until every task is
# stopped. The tree runs on (-R) and is reused by every round; each round must seize all its
# tasks or the script stops with an error (exit 1).
# Usage: bench-freeze.sh [ROUNDS] (default 5). Prints one line per round and a markdown table
# of medians with the ratio task / freezer. Needs root and the hybrid cgroup layout (v1
# freezer and cgroup2 at /sys/fs/cgroup/unified). CRIU=path overrides the criu binary.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
tasks=1000
cargo build --release -p criu --bins --examples -q
out=${CARGO_TARGET_DIR:-$PWD/target}/release
criu=${CRIU:-$out/criu}
ex=$out/examples
dir=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/bench-freeze.XXXXXX")
v1=/sys/fs/cgroup/freezer/bench-freeze-$$
v2=/sys/fs/cgroup/unified/bench-freeze-$$
root=""

cleanup() {
    local cg p
    for cg in "$v1" "$v2"; do
        [ -d "$cg" ] || continue
        echo THAWED 2>/dev/null > "$cg/freezer.state" || true
        echo 0 2>/dev/null > "$cg/cgroup.freeze" || true
        for p in $(cat "$cg/cgroup.procs" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        for p in $(seq 200); do rmdir "$cg" 2>/dev/null && break; sleep 0.05; done
    done
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

median() { sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]}'; }

mkdir "$v1" "$v2"
# The holder enters both cgroups before it execs the workload: its children are born there.
(sh -c 'echo $$ > "$1/cgroup.procs" && echo $$ > "$2/cgroup.procs" && exec "$3" hold "$4" 0 dirty "$5"' \
    sh "$v1" "$v2" "$ex/bench_tree" "$tasks" "$dir/ready" </dev/null >/dev/null 2>&1 & echo $! > "$dir/root")
root=$(cat "$dir/root")
for i in $(seq 2400); do [ -e "$dir/ready" ] && break; sleep 0.05; done
[ -e "$dir/ready" ] || { echo "workload not ready after 120 s" >&2; exit 1; }

# seize CASE ARGS...: one dump -R of the tree; records the seize time in microseconds.
seize() {
    local c=$1 line n us
    shift
    rm -rf "$dir/img"
    mkdir "$dir/img"
    "$criu" dump --no-default-config -t "$root" -D "$dir/img" -o dump.log -v3 -R "$@"
    line=$(grep -o 'seized [0-9]* task(s) in [0-9]* us' "$dir/img/dump.log")
    n=$(echo "$line" | awk '{print $2}')
    us=$(echo "$line" | awk '{print $5}')
    if [ "$n" != "$tasks" ]; then
        echo "$c: seized $n tasks, not $tasks" >&2
        exit 1
    fi
    echo "$us" >> "$dir/$c"
}

for r in $(seq "$rounds"); do
    seize task
    seize v1 --freeze-cgroup "$v1"
    seize v2 --freeze-cgroup "$v2"
    printf 'round %s: seize of %s tasks: task by task %s us, v1 freezer %s us, v2 freezer %s us\n' \
        "$r" "$tasks" "$(tail -n1 "$dir/task")" "$(tail -n1 "$dir/v1")" "$(tail -n1 "$dir/v2")"
done

t=$(median < "$dir/task")
f1=$(median < "$dir/v1")
f2=$(median < "$dir/v2")
echo
echo "| seize of $tasks tasks, median of $rounds | time | task by task / this |"
echo "| --- | --- | --- |"
echo "| task by task | $t us | 1.00 |"
echo "| v1 freezer (\`freezer.state\`) | $f1 us | $(echo "scale=2; $t / $f1" | bc -l) |"
echo "| v2 freezer (\`cgroup.freeze\`) | $f2 us | $(echo "scale=2; $t / $f2" | bc -l) |"
