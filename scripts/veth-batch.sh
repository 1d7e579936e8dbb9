#!/usr/bin/env bash
# Prints an `ip -batch` script: N veth pairs up, an address on each first end, R routes spread
# over the pairs. Shared by bench-netdev.sh and bench-ns-fill.sh.
# Usage: veth-batch.sh N R
set -euo pipefail
n=$1 r=$2
for i in $(seq 0 $((n - 1))); do
    echo "link add va$i type veth peer name vb$i"
    echo "link set va$i up"
    echo "link set vb$i up"
    echo "addr add 10.$((i / 250)).$((i % 250)).1/24 dev va$i"
done
for j in $(seq 0 $((r - 1))); do
    i=$((j % n))
    echo "route add 172.$((16 + j / 250)).$((j % 250)).0/24 via 10.$((i / 250)).$((i % 250)).2"
done
