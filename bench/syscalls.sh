#!/usr/bin/env bash
# Counts, per message and per node, what the Postern chain's two nodes do
# in the kernel during one run: context switches, CPU (task-clock) and the
# system calls that matter for durability and hand-offs (fsync,
# sync_file_range, futex, …), with `perf stat` attached to each node.
# The counts do not depend on the machine's load; the task-clock does, and
# the tracepoints add overhead of their own (compare runs of this script
# with each other, not with bench/run.sh's CPU column).
#
#   bench/syscalls.sh [BIN_DIR]     # postern and postern-bench from BIN_DIR
#                                   # (default: target/release)
#   SIZE=50K N=500 bench/syscalls.sh
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
RUN_SH_FUNCTIONS_ONLY=1 source "$BENCH_DIR/run.sh"
BIN_DIR=${1:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
POSTERN=$BIN_DIR/postern
BIN=$BIN_DIR/postern-bench
N=${N:-2000}
SIZE=${SIZE:-1K}
OUT=$(mktemp -d /tmp/postern-syscalls.XXXXXX)
[ -x "$POSTERN" ] && [ -x "$BIN" ] || { echo "syscalls.sh: no postern or postern-bench in $BIN_DIR" >&2; exit 1; }
command -v perf > /dev/null || { echo "syscalls.sh: perf is not installed (linux-perf)" >&2; exit 1; }

env=$(start_postern_chain) || { stop_postern_chain; exit 1; }
trap stop_postern_chain EXIT
PORT_A="" MAILDIR="" CA="" CLIENT_CERT="" CLIENT_KEY="" TLS_NAME="" PIDS=""
while IFS= read -r line; do
    case $line in
        PORT_A=*|MAILDIR=*|CA=*|CLIENT_CERT=*|CLIENT_KEY=*|TLS_NAME=*|PIDS=*)
            printf -v "${line%%=*}" '%s' "${line#*=}" ;;
    esac
done <<< "$env"
args=(load --target "127.0.0.1:$PORT_A" --cert "$CLIENT_CERT" --key "$CLIENT_KEY" --ca "$CA"
    --tls-name "$TLS_NAME" --from a@bench.test --to b@sink.test --maildir "$MAILDIR"
    --size "$SIZE" --concurrency 50 --timeout 300)
"$BIN" "${args[@]}" --messages 200 > /dev/null 2>&1
read -r edge hub <<< "$PIDS"
events=context-switches,task-clock
for call in fsync fdatasync sync_file_range futex epoll_wait sched_yield write writev read recvfrom openat rename; do
    events="$events,syscalls:sys_enter_$call"
done
perf stat -e "$events" -x, -o "$OUT/edge.stat" -p "$edge" > /dev/null 2>&1 &
edge_perf=$!
perf stat -e "$events" -x, -o "$OUT/hub.stat" -p "$hub" > /dev/null 2>&1 &
hub_perf=$!
sleep 0.3
"$BIN" "${args[@]}" --messages "$N" 2>&1 | tail -1
sleep 0.3
kill -INT "$edge_perf" "$hub_perf"
wait "$edge_perf" "$hub_perf" || true
for node in edge hub; do
    echo "== $node, per message ($SIZE, N = $N; task-clock in ms)"
    awk -F, -v n="$N" '$1 ~ /^[0-9.]+$/ { name = $3; sub(/^syscalls:sys_enter_/, "", name); printf "  %-20s %8.2f\n", name, $1 / n }' "$OUT/$node.stat"
done
