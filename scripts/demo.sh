#!/usr/bin/env bash
# The built-in example: builds criu and runs its main job on this machine.
# Until dump/restore of a live process land, that is the kernel check and the CPU image.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace
criu=target/release/criu
crit=target/release/crit
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== criu check (real probes of this kernel)"
"$criu" check --no-default-config || echo "(criu check exited $?)"
echo "== criu cpuinfo dump, then crit show"
"$criu" cpuinfo dump --no-default-config -D "$work"
"$crit" show "$work/cpuinfo.img" | head -20
echo "== criu cpuinfo check"
"$criu" cpuinfo check --no-default-config -D "$work"
