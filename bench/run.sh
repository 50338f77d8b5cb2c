#!/usr/bin/env bash
# Postern vs Postfix, same machine, same client, same chain shape:
#
#   postern-bench --STARTTLS + client cert--> node A --mutual TLS--> node B --> Maildir
#
# For each case (size x concurrency) it starts a fresh chain, sends a warm-up
# batch, then REPEATS measured runs, and keeps the run with the median
# end-to-end rate. Prints a Markdown table and the machine's description.
#
# Usage (as root, from anywhere): bench/run.sh
# Environment (defaults in brackets):
#   SIZES ["1K 50K"]  CONCURRENCY ["10 50"]  N_1K [2000]  N_50K [500]
#   N_<SIZE> for any other size, e.g. N_4K=1000 [1000]
#   REPEATS [3]  WARMUP [100 messages, 0 = none]  TIMEOUT [300 s per run]
#   SYSTEMS ["postfix postern"]  RESULTS_DIR [a new temp dir; JSON per run]
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
SIZES=${SIZES:-"1K 50K"}
CONCURRENCY=${CONCURRENCY:-"10 50"}
REPEATS=${REPEATS:-3}
WARMUP=${WARMUP:-100}
TIMEOUT=${TIMEOUT:-300}
SYSTEMS=${SYSTEMS:-"postfix postern"}
RESULTS_DIR=${RESULTS_DIR:-$(mktemp -d /tmp/postern-bench-results.XXXXXX)}
mkdir -p "$RESULTS_DIR"

log() { echo "run.sh: $*" >&2; }

# ---------------------------------------------------------------------------
# The two chains. Each start function prints, on stdout, KEY=VALUE lines:
#   PORT_A       node A's SMTP port on 127.0.0.1 (STARTTLS, client cert required)
#   MAILDIR      node B's Maildir for b@sink.test (the directory holding new/ and cur/)
#   CA           PEM CA that node A's server certificate chains to
#   CLIENT_CERT  PEM client certificate node A accepts
#   CLIENT_KEY   its key
#   TLS_NAME     the name to send as SNI and verify in A's certificate
#   FROM, TO     (optional) envelope; default a@bench.test, b@sink.test
# and returns non-zero when the chain cannot be started (the system is
# then skipped). The stop function tears everything down.

start_postfix_chain() { "$BENCH_DIR/postfix-chain.sh" start; }
stop_postfix_chain() { "$BENCH_DIR/postfix-chain.sh" stop; }

# ==================== POSTERN CHAIN ==========================================
# Node A receives (STARTTLS, client certificate), queues durably and relays
# over mutual TLS with direct trust to node B, which delivers b@sink.test to
# Maildir. Both are `postern-lab-node` processes (the transport library's MTA
# with a static router) with certificates from the same openssl CA.
start_postern_chain() {
    local d
    d=$(mktemp -d /tmp/postern-chain.XXXXXX)
    echo "$d" > /tmp/postern-chain.current
    "$BENCH_DIR/postfix-chain.sh" certs "$d/certs" >&2 || return 1
    cat "$d/certs/node-a.pem" "$d/certs/node-a.key" > "$d/certs/node-a.bundle.pem"
    cat "$d/certs/node-b.pem" "$d/certs/node-b.key" > "$d/certs/node-b.bundle.pem"
    local tp_a tp_b tp_client port_a port_b
    tp_a=$(thumbprint "$d/certs/node-a.pem")
    tp_b=$(thumbprint "$d/certs/node-b.pem")
    tp_client=$(thumbprint "$d/certs/client.pem")
    port_b=$(free_port)
    port_a=$(free_port "$port_b")
    # Node B: organisation connector (a client certificate in the
    # direct-trust set: node A's), delivers sink.test to Maildir.
    printf '%s\n' "{\"data_dir\":\"$d/b\",\"fqdn\":\"b.bench.test\",\"smtp_bind\":\"127.0.0.1:$port_b\"," \
        "\"local_domains\":[\"sink.test\"],\"relay\":null,\"trust\":[\"$tp_a\"],\"require_client_cert\":true," \
        "\"expiration_secs\":172800,\"retry_secs\":5,\"import_cert\":\"$d/certs/node-b.bundle.pem\"}" > "$d/b.json"
    # Node A: STARTTLS with the load generator's client certificate, queues
    # durably, relays everything to B over mutual TLS with direct trust.
    printf '%s\n' "{\"data_dir\":\"$d/a\",\"fqdn\":\"a.bench.test\",\"smtp_bind\":\"127.0.0.1:$port_a\"," \
        "\"local_domains\":[],\"relay\":\"127.0.0.1:$port_b\",\"trust\":[\"$tp_client\",\"$tp_b\"]," \
        "\"require_client_cert\":true,\"expiration_secs\":172800,\"retry_secs\":5," \
        "\"import_cert\":\"$d/certs/node-a.bundle.pem\"}" > "$d/a.json"
    "$LAB_NODE" "$d/b.json" > "$d/b.out" 2> "$d/b.log" &
    echo $! > "$d/b.pid"
    "$LAB_NODE" "$d/a.json" > "$d/a.out" 2> "$d/a.log" &
    echo $! > "$d/a.pid"
    local i
    for i in $(seq 1 200); do
        grep -q READY "$d/a.out" && grep -q READY "$d/b.out" && break
        sleep 0.1
    done
    if ! { grep -q READY "$d/a.out" && grep -q READY "$d/b.out"; }; then
        log "Postern nodes did not start"
        cat "$d/a.log" "$d/b.log" >&2
        return 1
    fi
    echo "PORT_A=$port_a"
    echo "MAILDIR=$d/b/mailboxes/sink.test/b/Maildir"
    echo "CA=$d/certs/ca.pem"
    echo "CLIENT_CERT=$d/certs/client.pem"
    echo "CLIENT_KEY=$d/certs/client.key"
    echo "TLS_NAME=a.bench.test"
}
stop_postern_chain() {
    local d
    d=$(cat /tmp/postern-chain.current 2>/dev/null) || return 0
    case $d in /tmp/postern-chain.*) ;; *) return 0 ;; esac
    kill "$(cat "$d/a.pid")" "$(cat "$d/b.pid")" 2>/dev/null || true
    sleep 0.5
    rm -rf "$d" /tmp/postern-chain.current
}
thumbprint() { openssl x509 -in "$1" -noout -fingerprint -sha1 | cut -d= -f2 | tr -d :; }
free_port() { # free_port [AVOID] -> a port nothing listens on
    local p
    while :; do
        p=$((20000 + RANDOM % 20000))
        [ "$p" = "${1:-}" ] && continue
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
}
# =============================================================================

json_field() { # json_field FILE KEY -> value (flat JSON from postern-bench)
    sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" "$1" | tr -d '"'
}

messages_for() { # messages_for SIZE
    local var="N_$1"
    case $1 in
        1K) echo "${N_1K:-2000}" ;;
        50K) echo "${N_50K:-500}" ;;
        *) echo "${!var:-1000}" ;;
    esac
}

# run_case SYSTEM SIZE C N -> writes $RESULTS_DIR/SYSTEM-SIZE-cC.json (median run)
run_case() {
    local system=$1 size=$2 c=$3 n=$4
    local out="$RESULTS_DIR/$system-$size-c$c.json"
    local env
    if ! env=$("start_${system}_chain"); then
        log "$system: chain not started; skipping $size C=$c"
        return 0
    fi
    local PORT_A="" MAILDIR="" CA="" CLIENT_CERT="" CLIENT_KEY="" TLS_NAME="" FROM=a@bench.test TO=b@sink.test
    local line
    while IFS= read -r line; do
        case $line in
            PORT_A=*|MAILDIR=*|CA=*|CLIENT_CERT=*|CLIENT_KEY=*|TLS_NAME=*|FROM=*|TO=*)
                printf -v "${line%%=*}" '%s' "${line#*=}" ;;
        esac
    done <<< "$env"
    local args=(load --target "127.0.0.1:$PORT_A" --cert "$CLIENT_CERT" --key "$CLIENT_KEY" --ca "$CA"
        --tls-name "$TLS_NAME" --from "$FROM" --to "$TO" --maildir "$MAILDIR"
        --size "$size" --concurrency "$c" --timeout "$TIMEOUT")
    local ok=1
    if [ "$WARMUP" -gt 0 ]; then
        "$BIN" "${args[@]}" --messages "$WARMUP" > /dev/null 2>&1 || { log "$system: warm-up failed"; ok=0; }
    fi
    local r
    for r in $(seq 1 "$REPEATS"); do
        [ "$ok" = 1 ] || break
        log "$system $size C=$c N=$n run $r/$REPEATS"
        if ! "$BIN" "${args[@]}" --messages "$n" > "$RESULTS_DIR/$system-$size-c$c.run$r.json" \
            2> >(sed 's/^/    /' >&2); then
            log "$system $size C=$c run $r failed"
            ok=0
        fi
    done
    "stop_${system}_chain" || true
    [ "$ok" = 1 ] || return 0
    # Median run by end-to-end rate.
    local pick
    pick=$(for f in "$RESULTS_DIR/$system-$size-c$c".run*.json; do
        echo "$(json_field "$f" e2e_msgs_per_s) $f"
    done | sort -g | awk '{a[NR]=$2} END {print a[int((NR+1)/2)]}')
    cp "$pick" "$out"
}

fmt_rate() { [ -n "$1" ] && [ "$1" != null ] && printf '%.0f' "$1" || printf 'pending'; }
fmt_lat() {
    if [ -n "$1" ] && [ "$1" != null ]; then printf '%.1f / %.1f' "$1" "$2"; else printf 'pending'; fi
}

[ "$(id -u)" -eq 0 ] || { echo "run.sh: run as root (Postfix instances are started)" >&2; exit 1; }

log "building postern-bench (release)"
(cd "$ROOT" && cargo build --release -q -p postern-bench -p postern-tests --bin postern-bench --bin postern-lab-node)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/postern-bench
LAB_NODE=${CARGO_TARGET_DIR:-$ROOT/target}/release/postern-lab-node
[ -x "$BIN" ] || { log "no binary at $BIN"; exit 1; }

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for size in $SIZES; do
    n=$(messages_for "$size")
    for c in $CONCURRENCY; do
        for system in $SYSTEMS; do
            run_case "$system" "$size" "$c" "$n"
        done
    done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

echo
echo "| case | N | Postfix msgs/s e2e | Postern msgs/s e2e | ratio | Postfix p50/p99 ms | Postern p50/p99 ms |"
echo "|---|---|---|---|---|---|---|"
for size in $SIZES; do
    n=$(messages_for "$size")
    for c in $CONCURRENCY; do
        pf="$RESULTS_DIR/postfix-$size-c$c.json"
        pt="$RESULTS_DIR/postern-$size-c$c.json"
        pf_rate="" pt_rate="" pf50="" pf99="" pt50="" pt99=""
        if [ -f "$pf" ]; then
            pf_rate=$(json_field "$pf" e2e_msgs_per_s)
            pf50=$(json_field "$pf" latency_p50_ms) pf99=$(json_field "$pf" latency_p99_ms)
        fi
        if [ -f "$pt" ]; then
            pt_rate=$(json_field "$pt" e2e_msgs_per_s)
            pt50=$(json_field "$pt" latency_p50_ms) pt99=$(json_field "$pt" latency_p99_ms)
        fi
        ratio=pending
        if [ -n "$pf_rate" ] && [ -n "$pt_rate" ] && [ "$pf_rate" != null ] && [ "$pt_rate" != null ]; then
            ratio=$(awk -v a="$pt_rate" -v b="$pf_rate" 'BEGIN { printf "%.2f×", a / b }')
        fi
        echo "| $size, C=$c | $n | $(fmt_rate "$pf_rate") | $(fmt_rate "$pt_rate") | $ratio | $(fmt_lat "$pf50" "$pf99") | $(fmt_lat "$pt50" "$pt99") |"
    done
done
echo
echo "Median of $REPEATS runs by end-to-end rate, after a $WARMUP-message warm-up; JSON per run in $RESULTS_DIR"
echo
echo "Machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)"
free -g | sed 's/^/    /'
echo "Load average before/after: $load_before / $load_after"
echo "Postfix: $(postconf -h mail_version 2>/dev/null || echo '?'), rustc: $(rustc --version 2>/dev/null || echo '?')"
echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
