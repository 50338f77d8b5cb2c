#!/usr/bin/env bash
# Memory of an idle edge, and of an edge holding many idle SMTP sessions.
#
# Starts the real roles as run.sh does (`postern hub` + `postern edge`,
# subscribed, bench-CA certificates), waits until the edge takes mail for
# b@sink.test, then reads the edge's VmRSS:
#   1. idle, SETTLE seconds after setup;
#   2. with SESSIONS sessions open from 127.0.0.1, each past the greeting
#      and EHLO, then silent (plain text);
#   3. the same with each session past STARTTLS and a second EHLO.
# The sessions are opened by a small Python client (one thread, blocking
# sockets) and held until the reading is taken; all stay within the
# edge's inactivity timeout (1 minute).
#
# Usage (as root, from anywhere): bench/idle.sh
# Environment: SESSIONS [1000], SETTLE [5 s], POSTERN_BIN [target/release/postern]
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
SESSIONS=${SESSIONS:-1000}
SETTLE=${SETTLE:-5}
RUN_SH_FUNCTIONS_ONLY=1 source "$BENCH_DIR/run.sh"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}/release
POSTERN=${POSTERN_BIN:-$TARGET/postern}
[ -x "$POSTERN" ] || { echo "idle.sh: no postern binary at $POSTERN (cargo build --release -p postern-cli)" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" 2> /dev/null || true

env=$(start_postern_chain) || { stop_postern_chain; exit 1; }
trap stop_postern_chain EXIT
port=$(sed -n 's/^PORT_A=//p' <<< "$env")
read -r edge_pid hub_pid <<< "$(sed -n 's/^PIDS=//p' <<< "$env")"
sleep "$SETTLE"
rss() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

idle_edge=$(rss "$edge_pid")
idle_hub=$(rss "$hub_pid")

# hold_sessions MODE: opens $SESSIONS sessions (MODE plain or starttls),
# prints "open N" when they are all open and idle, then waits for stdin
# to close.
hold_sessions() {
    python3 - "$port" "$SESSIONS" "$1" <<'PY'
import socket, ssl, sys
port, n, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
def reply(f):
    while True:
        line = f.readline()
        if not line:
            raise EOFError("closed")
        if line[3:4] != b"-":
            return line
held = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    f = s.makefile("rb")
    reply(f)
    s.sendall(b"EHLO idle.bench.test\r\n"); reply(f)
    if mode == "starttls":
        s.sendall(b"STARTTLS\r\n"); r = reply(f)
        if not r.startswith(b"220"):
            raise SystemExit(f"STARTTLS refused: {r!r}")
        s = ctx.wrap_socket(s, server_hostname="a.bench.test")
        f = s.makefile("rb")
        s.sendall(b"EHLO idle.bench.test\r\n"); reply(f)
    held.append((s, f))
print("open", len(held), flush=True)
sys.stdin.read()
PY
}

measure() { # measure MODE -> edge VmRSS in kB with the sessions held
    local mode=$1 fifo pid kb i
    fifo=$(mktemp -u /tmp/postern-idle.XXXXXX)
    mkfifo "$fifo"
    hold_sessions "$mode" < "$fifo" > "$fifo.out" &
    pid=$!
    exec 7> "$fifo" # the client's stdin: open until the reading is taken
    for i in $(seq 1 1200); do
        grep -q '^open' "$fifo.out" 2> /dev/null && break
        kill -0 "$pid" 2> /dev/null || break
        sleep 0.1
    done
    if ! grep -q '^open' "$fifo.out" 2> /dev/null; then
        echo "idle.sh: the $mode sessions could not be opened" >&2
        exec 7>&-
        rm -f "$fifo" "$fifo.out"
        return 1
    fi
    sleep 1
    kb=$(rss "$edge_pid")
    exec 7>&-
    wait "$pid" 2> /dev/null || true
    rm -f "$fifo" "$fifo.out"
    echo "$kb"
}
plain=$(measure plain)
sleep 2
tls=$(measure starttls)

echo "| edge | VmRSS MB | more than idle MB | per session kB |"
echo "|---|---|---|---|"
echo "| idle (hub beside it: $(mb "$idle_hub") MB) | $(mb "$idle_edge") | – | – |"
echo "| $SESSIONS idle sessions after EHLO | $(mb "$plain") | $(mb $((plain - idle_edge))) | $(( (plain - idle_edge) / SESSIONS )) |"
echo "| $SESSIONS idle sessions after STARTTLS + EHLO | $(mb "$tls") | $(mb $((tls - idle_edge))) | $(( (tls - idle_edge) / SESSIONS )) |"
echo
echo "Machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1); load $(cut -d' ' -f1-3 /proc/loadavg); $(date -u '+%Y-%m-%d %H:%M UTC')"
