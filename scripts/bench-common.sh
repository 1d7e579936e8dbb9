# Shared by bench-predump.sh and bench-page-server.sh (sourced): builds criu and the workload,
# makes a scratch dir removed on exit (killing the workload), and starts and waits for
# `bench_mem` workloads. Sets: out, criu, bench, dir, pid.
cargo build --release -p criu --bins --examples -q
out=${CARGO_TARGET_DIR:-$PWD/target}/release
criu=$out/criu
bench=$out/examples/bench_mem
dir=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/$(basename "$0" .sh).XXXXXX")
pid=
trap '[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }
ratio() { echo "$1 / $2" | bc -l; }
fail() {
    echo "$(basename "$0"): $*" >&2
    exit 1
}
# `bench_mem ARGS... DIR/ready`, not this shell's child (no job report when criu kills it).
start() {
    rm -f "$dir"/ready*
    ("$bench" "$@" "$dir/ready" </dev/null >/dev/null 2>&1 & echo $! > "$dir/pid")
    pid=$(cat "$dir/pid")
    for _ in $(seq 1200); do [ -e "$dir/ready" ] && break; sleep 0.05; done
    [ -e "$dir/ready" ] || fail "the workload never got ready"
}
# Waits until the workload is gone (killed by a dump).
gone() {
    for _ in $(seq 400); do [ -e /proc/"$pid" ] || break; sleep 0.025; done
    pid=
}
# The restored workload (same pid) checks every page of its memory.
check_restored() {
    pid=$(cat "$dir/pid")
    touch "$dir/ready.check"
    for _ in $(seq 1200); do [ -e "$dir/ready.verdict" ] && break; sleep 0.05; done
    verdict=$(cat "$dir/ready.verdict" 2>/dev/null || echo "no answer from pid $pid")
    [ "$verdict" = PASS ] || fail "the restored process's memory is wrong: $verdict"
}
