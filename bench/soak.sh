#!/usr/bin/env bash
# Soak: a steady load through an edge and a hub (`postern up`: both nodes
# in one process, edge -> hub over mutual TLS, hub -> Maildir) for a fixed
# time, sampling every INTERVAL seconds:
#   the process's RSS (/proc/PID/status VmRSS), its open files
#   (/proc/PID/fd), the edge's and the hub's queue length
#   (postern_queue_length on their metrics endpoints), and how many
#   messages have reached the mailbox.
# Writes samples.csv and a summary (first/last/max RSS, fds, queues) to
# OUT_DIR, and prints the summary.
#
# Usage: bench/soak.sh            (run from anywhere; builds nothing:
#                                 uses target/{release,debug}/postern)
# Environment (defaults in brackets):
#   DURATION [1800 s]  INTERVAL [10 s]  WORKERS [4 concurrent senders]
#   PAUSE [0.5 s between a worker's messages]  SIZE [4096 octets of body]
#   OUT_DIR [a new /tmp/postern-soak.XXXXXX]  POSTERN [the binary]
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
DURATION=${DURATION:-1800}
INTERVAL=${INTERVAL:-10}
WORKERS=${WORKERS:-4}
PAUSE=${PAUSE:-0.5}
SIZE=${SIZE:-4096}
OUT_DIR=${OUT_DIR:-$(mktemp -d /tmp/postern-soak.XXXXXX)}
POSTERN=${POSTERN:-}
if [ -z "$POSTERN" ]; then
    for candidate in "$ROOT/target/release/postern" "$ROOT/target/debug/postern"; do
        if [ -x "$candidate" ]; then POSTERN=$candidate; break; fi
    done
fi
[ -x "$POSTERN" ] || { echo "soak.sh: build postern first (cargo build -p postern-cli)" >&2; exit 1; }
command -v swaks >/dev/null || { echo "soak.sh: swaks is needed" >&2; exit 1; }
mkdir -p "$OUT_DIR"
: > "$OUT_DIR/failures.log"
log() { echo "soak.sh: $*" >&2; }

# A base port whose whole `postern up` family (+0 +1 +3 +62 +7400 +7401) is free.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
BASE=""
for _ in $(seq 1 50); do
    p=$(( (RANDOM % 20000) + 20000 ))
    ok=1
    for off in 0 1 3 62 7400 7401; do port_free $((p + off)) || { ok=0; break; }; done
    if [ $ok = 1 ]; then BASE=$p; break; fi
done
[ -n "$BASE" ] || { log "no free ports"; exit 1; }
EDGE_SMTP=127.0.0.1:$BASE
EDGE_METRICS=http://127.0.0.1:$((BASE + 7401))/metrics
HUB_METRICS=http://127.0.0.1:$((BASE + 7400))/metrics
DATA=$OUT_DIR/data
MAILDIR=$DATA/hub/mailboxes/contoso.test/admin/Maildir

"$POSTERN" up --data-dir "$DATA" --port "$BASE" --log warn > "$OUT_DIR/up.out" 2> "$OUT_DIR/up.log" &
PID=$!
cleanup() {
    [ -n "${WORKER_PIDS:-}" ] && kill $WORKER_PIDS 2>/dev/null || true
    kill -INT "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 600); do
    grep -q "Ctrl-C stops" "$OUT_DIR/up.out" 2>/dev/null && break
    kill -0 "$PID" 2>/dev/null || { log "postern up died:"; cat "$OUT_DIR/up.log" >&2; exit 1; }
    sleep 0.2
done
log "postern up (pid $PID) on $EDGE_SMTP; writing to $OUT_DIR"

BODY=$(head -c $((SIZE * 3 / 4)) /dev/urandom | base64 -w 76)
worker() {
    local n=0
    while :; do
        n=$((n + 1))
        swaks --server "$EDGE_SMTP" --from "soak$1@example.org" --to admin@contoso.test --tls \
            --header "Subject: soak $1 $n" --body "$BODY" >/dev/null 2>&1 \
            || echo "$(date +%s) worker $1 message $n failed" >> "$OUT_DIR/failures.log"
        sleep "$PAUSE"
    done
}
WORKER_PIDS=""
for w in $(seq 1 "$WORKERS"); do
    worker "$w" &
    WORKER_PIDS="$WORKER_PIDS $!"
done

metric() { { curl -fsS "$1" 2>/dev/null || true; } | awk -v m="$2" '$1 == m { print $2; exit }'; }
count() { { ls "$1" 2>/dev/null || true; } | wc -l; }
echo "elapsed_s,rss_kb,open_fds,edge_queue,hub_queue,delivered" > "$OUT_DIR/samples.csv"
START=$(date +%s)
while :; do
    now=$(date +%s)
    elapsed=$((now - START))
    rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$PID/status")
    fds=$(count "/proc/$PID/fd")
    eq=$(metric "$EDGE_METRICS" postern_queue_length)
    hq=$(metric "$HUB_METRICS" postern_queue_length)
    delivered=$(( $(count "$MAILDIR/new") + $(count "$MAILDIR/cur") ))
    echo "$elapsed,$rss,$fds,${eq:-?},${hq:-?},$delivered" >> "$OUT_DIR/samples.csv"
    [ "$elapsed" -ge "$DURATION" ] && break
    sleep "$INTERVAL"
done
kill $WORKER_PIDS 2>/dev/null || true
WORKER_PIDS=""
failures=$(wc -l < "$OUT_DIR/failures.log")

{
    echo "soak: $DURATION s, $WORKERS senders (pause $PAUSE s, ~$SIZE-octet bodies) through edge -> hub -> Maildir"
    echo "binary: $POSTERN"
    echo "machine: $(nproc) cores, $(awk '/MemTotal/ { print $2 " kB" }' /proc/meminfo), $(uname -r)"
    awk -F, 'NR == 2 { r0 = $2; f0 = $3 }
        NR > 1 { if ($2 > rmax) rmax = $2; if ($3 > fmax) fmax = $3; if ($4 + 0 > eqmax) eqmax = $4 + 0; if ($5 + 0 > hqmax) hqmax = $5 + 0
                 r = $2; f = $3; e = $4; h = $5; d = $6; t = $1 }
        NR > 1 && $1 >= 300 && !r5 { r5 = $2 }
        END {
            printf "samples: %d\n", NR - 1
            printf "rss_kb: first %d, after 5 min %d, last %d, max %d\n", r0, r5, r, rmax
            printf "open_fds: first %d, last %d, max %d\n", f0, f, fmax
            printf "queue length: edge last %s max %s; hub last %s max %s\n", e, eqmax, h, hqmax
            printf "delivered: %d in %d s (%.1f msg/s)\n", d, t, (t > 0 ? d / t : 0)
        }' "$OUT_DIR/samples.csv"
    echo "failed sends: $failures"
} | tee "$OUT_DIR/summary.txt"
