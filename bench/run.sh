#!/usr/bin/env bash
# Postern vs Postfix, same machine, same client, same chain shape:
#
#   postern-bench --STARTTLS + client cert--> node A --mutual TLS--> node B --> Maildir
#
# Systems (each a chain of two nodes):
#   postfix        two Postfix instances, defaults (a TLS handshake per relayed message)
#   postfix-reuse  the same with smtp_tls_connection_reuse = yes on A
#   postern        the real roles: `postern edge` subscribed to `postern hub`
#   lab            two postern-lab-node processes (the engine alone, static routing)
#
# For each case (size x concurrency) and system it starts a fresh chain,
# sends a warm-up batch, then REPEATS measured runs, and keeps the run with
# the median end-to-end rate. Around every run it reads what the MTA
# processes spent: CPU (utime+stime from /proc), peak RSS, and the sessions
# and TLS handshakes on the relay hop. Prints a Markdown table and the
# machine's description.
#
# Usage (as root, from anywhere): bench/run.sh
# Environment (defaults in brackets):
#   SIZES ["1K 50K"]  CONCURRENCY ["50"]  N_1K [2000]  N_50K [500]
#   N_<SIZE> for any other size, e.g. N_4K=1000 [1000]
#   REPEATS [3]  WARMUP [100 messages, 0 = none]  TIMEOUT [300 s per run]
#   SYSTEMS ["postfix postfix-reuse postern lab"]  RESULTS_DIR [a new temp dir; JSON per run]
#   PROFILE_DIR [unset]: after the measured runs of a Postern system, one
#     more run under `perf record -g` on each node; top symbols written there
#   POSTERN_BIN [target/release/postern]: the postern binary to measure
#   BENCH_BIN_DIR [unset]: take postern, postern-bench and postern-lab-node
#     from this directory and build nothing (e.g. a copy of an older build)
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
SIZES=${SIZES:-"1K 50K"}
CONCURRENCY=${CONCURRENCY:-"50"}
REPEATS=${REPEATS:-3}
WARMUP=${WARMUP:-100}
TIMEOUT=${TIMEOUT:-300}
SYSTEMS=${SYSTEMS:-"postfix postfix-reuse postern lab"}
RESULTS_DIR=${RESULTS_DIR:-$(mktemp -d /tmp/postern-bench-results.XXXXXX)}
PROFILE_DIR=${PROFILE_DIR:-}
BENCH_BIN_DIR=${BENCH_BIN_DIR:-}
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


# ==================== POSTERN: THE REAL ROLES ================================
# What users run: `postern edge` (its default receive connector: STARTTLS,
# client certificate asked) subscribed to `postern hub` (its organisation
# connector: mutual TLS, direct trust), set up with the CLI as in
# deploy/bootstrap.sh, with certificates from the bench CA imported and
# enabled for SMTP before the subscription. The hub delivers b@sink.test to
# its Maildir.
# The load generator sends from one address, 127.0.0.1. The edge's default
# connector admits 20 sessions per source (Exchange's
# MaxInboundConnectionPerSource) and refuses the 21st with 421 4.3.2, which
# failed every run at C = 50. Postfix admits 50 per client by default
# (smtpd_client_connection_count_limit), so the edge's per-source limits are
# lifted for the bench; the total (5000) stays.
start_postern_chain() {
    local d
    d=$(mktemp -d /tmp/postern-chain.XXXXXX)
    echo "$d" > /tmp/postern-chain.current
    "$BENCH_DIR/postfix-chain.sh" certs "$d/certs" >&2 || return 1
    # Leaf, issuer, key: what `cert import` takes as one PEM file.
    cat "$d/certs/node-a.pem" "$d/certs/ca.pem" "$d/certs/node-a.key" > "$d/certs/edge.bundle.pem"
    cat "$d/certs/node-b.pem" "$d/certs/ca.pem" "$d/certs/node-b.key" > "$d/certs/hub.bundle.pem"
    chmod 0600 "$d/certs/"*.bundle.pem
    local port_edge port_hub port_sync port_hm port_em port_dns
    port_edge=$(free_port)
    port_hub=$(free_port "$port_edge")
    port_sync=$(free_port "$port_hub")
    port_hm=$(free_port "$port_sync")
    port_em=$(free_port "$port_hm")
    port_dns=$(free_port "$port_em")
    # The nodes' name server (see dns-stub.py: the edge's SPF/DKIM/DMARC
    # checks must not measure the machine's resolver).
    python3 "$BENCH_DIR/dns-stub.py" "$port_dns" > "$d/dns.log" 2>&1 &
    echo $! > "$d/dns.pid"
    "$POSTERN" hub run --data-dir "$d/hub" --name hub1 --fqdn b.bench.test \
        --smtp-bind "127.0.0.1:$port_hub" --metrics-bind "127.0.0.1:$port_hm" --mta-sts-port 0 \
        --dns-server "127.0.0.1:$port_dns" \
        > "$d/hub.out" 2> "$d/hub.log" &
    echo $! > "$d/hub.pid"
    "$POSTERN" edge run --data-dir "$d/edge" --name edge1 --fqdn a.bench.test \
        --smtp-bind "127.0.0.1:$port_edge" --edgesync-bind "127.0.0.1:$port_sync" \
        --metrics-bind "127.0.0.1:$port_em" --mta-sts-port 0 --dns-server "127.0.0.1:$port_dns" \
        > "$d/edge.out" 2> "$d/edge.log" &
    echo $! > "$d/edge.pid"
    local i node
    for node in hub edge; do
        for i in $(seq 1 300); do
            "$POSTERN" --node "$d/$node" node-info > /dev/null 2>&1 && break
            sleep 0.1
        done
    done
    pn() { local n=$1; shift; "$POSTERN" --node "$d/$n" "$@" > /dev/null; }
    if ! { pn hub cert import --path "$d/certs/hub.bundle.pem" --enable-services smtp &&
        pn edge cert import --path "$d/certs/edge.bundle.pem" --enable-services smtp &&
        pn edge edge-subscription new --file "$d/edge.sub" \
            --edgesync-endpoint "127.0.0.1:$port_sync" --smtp-endpoint "127.0.0.1:$port_edge" &&
        pn hub edge-subscription import --file "$d/edge.sub" &&
        pn hub accepted-domain new sink.test &&
        pn hub mailbox new b@sink.test &&
        pn edge receive-connector set "Default internal receive connector edge1" \
            --max-inbound-connection-per-source unlimited \
            --max-inbound-connection-percentage-per-source 100; }; then
        log "Postern nodes could not be set up"
        tail -20 "$d/hub.log" "$d/edge.log" >&2
        return 1
    fi
    # The edge takes mail for b@sink.test once EdgeSync brought it there.
    for i in $(seq 1 300); do
        rcpt_accepted "$port_edge" b@sink.test && break
        sleep 0.2
    done
    if ! rcpt_accepted "$port_edge" b@sink.test; then
        log "the edge never accepted b@sink.test"
        tail -20 "$d/hub.log" "$d/edge.log" >&2
        return 1
    fi
    echo "PORT_A=$port_edge"
    echo "MAILDIR=$d/hub/mailboxes/sink.test/b/Maildir"
    echo "CA=$d/certs/ca.pem"
    echo "CLIENT_CERT=$d/certs/client.pem"
    echo "CLIENT_KEY=$d/certs/client.key"
    echo "TLS_NAME=a.bench.test"
    echo "PIDS=$(cat "$d/edge.pid") $(cat "$d/hub.pid")"
    echo "RELAY_METRICS=http://127.0.0.1:$port_hm/metrics"
}
stop_postern_chain() {
    local d
    d=$(cat /tmp/postern-chain.current 2>/dev/null) || return 0
    case $d in /tmp/postern-chain.*) ;; *) return 0 ;; esac
    local pids=() f
    for f in "$d"/*.pid; do [ -f "$f" ] && pids+=("$(cat "$f")"); done
    [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null
    local i
    for i in $(seq 1 100); do
        kill -0 "${pids[@]}" 2>/dev/null || break
        sleep 0.1
    done
    rm -rf "$d" /tmp/postern-chain.current
}

# rcpt_accepted PORT ADDRESS: whether the SMTP server on 127.0.0.1:PORT
# answers 250 to RCPT TO:<ADDRESS> (plain text, no message sent).
rcpt_accepted() {
    local line code=""
    { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
    reply() { while IFS= read -r -t 5 line <&3; do [ "${line:3:1}" = "-" ] || { code=${line:0:3}; return 0; }; done; code=""; }
    reply
    printf 'EHLO bench.test\r\n' >&3; reply
    printf 'MAIL FROM:<probe@bench.test>\r\n' >&3; reply
    printf 'RCPT TO:<%s>\r\n' "$2" >&3; reply
    local rcpt=$code
    printf 'QUIT\r\n' >&3; reply
    exec 3>&-
    [ "$rcpt" = 250 ]
}

# ==================== LAB CHAIN (engine only) ================================
# Two `postern-lab-node` processes: the transport library's MTA with a
# static router, no EdgeSync, no replicated configuration. Kept as the
# engine-only figure beside the real roles.
start_lab_chain() {
    local d
    d=$(mktemp -d /tmp/postern-chain.XXXXXX)
    echo "$d" > /tmp/postern-chain.current
    "$BENCH_DIR/postfix-chain.sh" certs "$d/certs" >&2 || return 1
    cat "$d/certs/node-a.pem" "$d/certs/node-a.key" > "$d/certs/node-a.bundle.pem"
    cat "$d/certs/node-b.pem" "$d/certs/node-b.key" > "$d/certs/node-b.bundle.pem"
    local tp_a tp_b tp_client port_a port_b port_mb
    tp_a=$(thumbprint "$d/certs/node-a.pem")
    tp_b=$(thumbprint "$d/certs/node-b.pem")
    tp_client=$(thumbprint "$d/certs/client.pem")
    port_b=$(free_port)
    port_a=$(free_port "$port_b")
    port_mb=$(free_port "$port_a")
    # Node B: organisation connector (a client certificate in the
    # direct-trust set: node A's), delivers sink.test to Maildir.
    printf '%s\n' "{\"data_dir\":\"$d/b\",\"fqdn\":\"b.bench.test\",\"smtp_bind\":\"127.0.0.1:$port_b\"," \
        "\"local_domains\":[\"sink.test\"],\"relay\":null,\"trust\":[\"$tp_a\"],\"require_client_cert\":true," \
        "\"expiration_secs\":172800,\"retry_secs\":5,\"import_cert\":\"$d/certs/node-b.bundle.pem\"," \
        "\"metrics_bind\":\"127.0.0.1:$port_mb\"}" > "$d/b.json"
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
        log "lab nodes did not start"
        cat "$d/a.log" "$d/b.log" >&2
        return 1
    fi
    echo "PORT_A=$port_a"
    echo "MAILDIR=$d/b/mailboxes/sink.test/b/Maildir"
    echo "CA=$d/certs/ca.pem"
    echo "CLIENT_CERT=$d/certs/client.pem"
    echo "CLIENT_KEY=$d/certs/client.key"
    echo "TLS_NAME=a.bench.test"
    echo "PIDS=$(cat "$d/a.pid") $(cat "$d/b.pid")"
    echo "RELAY_METRICS=http://127.0.0.1:$port_mb/metrics"
}
stop_lab_chain() { stop_postern_chain; }

# ==================== POSTFIX, WITH AND WITHOUT TLS CONNECTION REUSE =========
start_postfix_chain() { POSTFIX_TLS_REUSE=no postfix_chain_with_pids; }
stop_postfix_chain() { "$BENCH_DIR/postfix-chain.sh" stop; }
start_postfix_reuse_chain() { POSTFIX_TLS_REUSE=yes postfix_chain_with_pids; }
stop_postfix_reuse_chain() { "$BENCH_DIR/postfix-chain.sh" stop; }
postfix_chain_with_pids() {
    local env dir inst pids=""
    env=$("$BENCH_DIR/postfix-chain.sh" start) || return 1
    echo "$env"
    dir=$(sed -n 's/^DIR=//p' <<< "$env")
    for inst in a b; do
        pids+=" $(tr -d ' \n' < "$dir/$inst/queue/pid/master.pid")"
    done
    echo "PIDS=${pids# }"
    # B's smtpd logs every session and handshake on the relay hop.
    echo "RELAY_LOG=$dir/b/maillog"
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

# ==================== WHAT THE MTA PROCESSES SPENT ===========================
# tree_pids ROOT... -> the roots and all their descendants, one per line.
tree_pids() {
    cat /proc/[0-9]*/stat 2>/dev/null | sed -n 's/^\([0-9]*\) (.*) [A-Za-z] \([0-9]*\) .*/\1 \2/p' |
        awk -v roots="$*" '
            { parent[$1] = $2 }
            END {
                n = split(roots, r, " ")
                for (i = 1; i <= n; i++) keep[r[i]] = 1
                do {
                    grew = 0
                    for (p in parent) if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; grew = 1 }
                } while (grew)
                for (p in keep) if (p in parent) print p
            }'
}
# cpu_ms ROOT... -> user + system CPU of the process trees, in ms, children
# that exited included (cutime/cstime of the parent that reaped them).
cpu_ms() {
    local hz pid total=0 v
    hz=$(getconf CLK_TCK)
    for pid in $(tree_pids "$@"); do
        # Fields after the command name: state is 1, utime 12 … cstime 15.
        v=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 + $14 + $15 }') || v=0
        total=$((total + ${v:-0}))
    done
    echo $((total * 1000 / hz))
}
# rss_kb FIELD ROOT... -> the sum of FIELD (VmHWM: peak, VmRSS: now) over
# the process trees, in kB.
rss_kb() {
    local field=$1 pid total=0 v
    shift
    for pid in $(tree_pids "$@"); do
        v=$(awk -v f="$field:" '$1 == f { print $2 }' "/proc/$pid/status" 2>/dev/null)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}
# relay_counts -> "SESSIONS FULL_HANDSHAKES RESUMED" seen so far on the
# receiving side of the relay hop (node B / the hub).
relay_counts() {
    if [ -n "$RELAY_METRICS" ]; then
        curl -s "$RELAY_METRICS" | awk '
            index($0, "postern_smtp_sessions_total{direction=\"receive\"") == 1 { s += $NF }
            index($0, "postern_tls_handshakes_total{direction=\"receive\",outcome=\"ok\"}") == 1 { h += $NF }
            index($0, "postern_tls_resumed_total{direction=\"receive\"}") == 1 { r += $NF }
            END { printf "%d %d %d\n", s, h - r, r }'
    else
        # Postfix logs no resumption at smtpd_tls_loglevel 1: all count as full.
        awk '
            / postfix[^ ]*\/smtpd\[[0-9]+\]: connect from / { s++ }
            / postfix[^ ]*\/smtpd\[[0-9]+\]: .*TLS connection established from / { h++ }
            END { printf "%d %d 0\n", s, h }' "$RELAY_LOG"
    fi
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

# run_case SYSTEM SIZE C N -> $RESULTS_DIR/SYSTEM-SIZE-cC.json (the median
# run) and .mta beside it (what the MTA processes spent in that run).
run_case() {
    local system=$1 size=$2 c=$3 n=$4
    local out="$RESULTS_DIR/$system-$size-c$c"
    local env
    if ! env=$("start_${system//-/_}_chain"); then
        log "$system: chain not started; skipping $size C=$c"
        "stop_${system//-/_}_chain" || true
        return 0
    fi
    local PORT_A="" MAILDIR="" CA="" CLIENT_CERT="" CLIENT_KEY="" TLS_NAME="" FROM=a@bench.test TO=b@sink.test
    local PIDS="" RELAY_METRICS="" RELAY_LOG=""
    local line
    while IFS= read -r line; do
        case $line in
            PORT_A=*|MAILDIR=*|CA=*|CLIENT_CERT=*|CLIENT_KEY=*|TLS_NAME=*|FROM=*|TO=*|PIDS=*|RELAY_METRICS=*|RELAY_LOG=*)
                printf -v "${line%%=*}" '%s' "${line#*=}" ;;
        esac
    done <<< "$env"
    local idle_rss
    idle_rss=$(rss_kb VmRSS $PIDS)
    local args=(load --target "127.0.0.1:$PORT_A" --cert "$CLIENT_CERT" --key "$CLIENT_KEY" --ca "$CA"
        --tls-name "$TLS_NAME" --from "$FROM" --to "$TO" --maildir "$MAILDIR"
        --size "$size" --concurrency "$c" --timeout "$TIMEOUT")
    local ok=1
    if [ "$WARMUP" -gt 0 ]; then
        if ! "$BIN" "${args[@]}" --messages "$WARMUP" > /dev/null 2> "$out.warmup.err"; then
            log "$system: warm-up failed: $(tail -c 400 "$out.warmup.err")"
            ok=0
        fi
    fi
    local r cpu0 cpu1 relay0 relay1 load0 load1
    for r in $(seq 1 "$REPEATS"); do
        [ "$ok" = 1 ] || break
        log "$system $size C=$c N=$n run $r/$REPEATS"
        local switches=""
        if [ -n "$RELAY_METRICS" ] && command -v perf > /dev/null; then
            # Context switches of every thread of the Postern nodes (perf
            # stat follows the threads a process starts later); Postfix's
            # children come and go, so its switches are not counted.
            perf stat -e context-switches -x, -o "$out.run$r.switches" -p "$(echo $PIDS | tr ' ' ,)" \
                > /dev/null 2>&1 &
            switches=$!
            sleep 0.2
        fi
        cpu0=$(cpu_ms $PIDS) relay0=$(relay_counts) load0=$(cut -d' ' -f1 /proc/loadavg)
        if ! "$BIN" "${args[@]}" --messages "$n" > "$out.run$r.json" 2> >(sed 's/^/    /' >&2); then
            log "$system $size C=$c run $r failed"
            [ -z "$switches" ] || kill -INT "$switches" 2> /dev/null || true
            ok=0
            break
        fi
        # Deliveries are recorded in the queue just after the Maildir write.
        sleep 0.3
        cpu1=$(cpu_ms $PIDS) relay1=$(relay_counts) load1=$(cut -d' ' -f1 /proc/loadavg)
        if [ -n "$switches" ]; then
            kill -INT "$switches" 2> /dev/null || true
            wait "$switches" 2> /dev/null || true
        fi
        {
            echo "cpu_ms=$((cpu1 - cpu0))"
            if [ -n "$switches" ]; then
                echo "context_switches=$(awk -F, '$3 == "context-switches" { print $1 }' "$out.run$r.switches")"
            fi
            set -- $relay0 $relay1
            echo "relay_sessions=$(($4 - $1))"
            echo "relay_full_handshakes=$(($5 - $2))"
            echo "relay_resumed=$(($6 - $3))"
            echo "peak_rss_kb=$(rss_kb VmHWM $PIDS)"
            echo "idle_rss_kb=$idle_rss"
            echo "load=$load0-$load1"
        } > "$out.run$r.mta"
    done
    if [ "$ok" = 1 ] && [ -n "$PROFILE_DIR" ] && [ -n "$RELAY_METRICS" ]; then
        profile_run "$system-$size-c$c" "$n" "${args[@]}"
    fi
    "stop_${system//-/_}_chain" || true
    [ "$ok" = 1 ] || return 0
    # Median run by end-to-end rate.
    local pick
    pick=$(for f in "$out".run*.json; do
        echo "$(json_field "$f" e2e_msgs_per_s) $f"
    done | sort -g | awk '{a[NR]=$2} END {print a[int((NR+1)/2)]}')
    cp "$pick" "$out.json"
    cp "${pick%.json}.mta" "$out.mta"
}

# profile_run NAME N ARGS… : one more run (not counted) with `perf record`
# on each Postern node; the top symbols go to $PROFILE_DIR/NAME-PID.txt.
profile_run() {
    local name=$1 n=$2 pid perfs=()
    shift 2
    mkdir -p "$PROFILE_DIR"
    for pid in $PIDS; do
        perf record -F 499 -g -p "$pid" -o "$PROFILE_DIR/$name-$pid.data" > /dev/null 2>&1 &
        perfs+=($!)
    done
    sleep 0.5
    "$BIN" "$@" --messages "$n" > "$PROFILE_DIR/$name.json" 2> /dev/null || log "profile run failed"
    kill -INT "${perfs[@]}" 2> /dev/null || true
    wait "${perfs[@]}" 2> /dev/null || true
    for pid in $PIDS; do
        perf report -i "$PROFILE_DIR/$name-$pid.data" --no-children --sort dso,symbol --stdio 2> /dev/null |
            grep -v '^#' | grep -v '^$' | grep '%' | head -40 > "$PROFILE_DIR/$name-$pid.txt" || true
        log "profile of $pid ($(tr '\0' ' ' < "/proc/$pid/cmdline" | cut -c1-40)): $PROFILE_DIR/$name-$pid.txt"
    done
}

fmt_rate() { [ -n "$1" ] && [ "$1" != null ] && printf '%.0f' "$1" || printf '–'; }
fmt_lat() {
    if [ -n "$1" ] && [ "$1" != null ]; then printf '%.1f / %.1f' "$1" "$2"; else printf '–'; fi
}
mta_field() { sed -n "s/^$2=//p" "$1"; }
per_msg() { awk -v a="$1" -v n="$2" -v f="$3" 'BEGIN { printf f, a / n }'; }

# Sourced by bench/idle.sh for the chain functions above: stop here.
[ "${RUN_SH_FUNCTIONS_ONLY:-}" = 1 ] && return 0

[ "$(id -u)" -eq 0 ] || { echo "run.sh: run as root (Postfix instances are started)" >&2; exit 1; }

if [ -n "$BENCH_BIN_DIR" ]; then
    TARGET=$BENCH_BIN_DIR
    log "measuring the binaries in $TARGET (not building)"
else
    log "building postern, postern-bench and postern-lab-node (release)"
    (cd "$ROOT" && cargo build --release -q -p postern-cli -p postern-bench -p postern-tests \
        --bin postern --bin postern-bench --bin postern-lab-node)
    TARGET=${CARGO_TARGET_DIR:-$ROOT/target}/release
fi
BIN=$TARGET/postern-bench
POSTERN=${POSTERN_BIN:-$TARGET/postern}
LAB_NODE=$TARGET/postern-lab-node
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
echo "| case | system | msgs/s e2e | submit msgs/s | accept p50 / p99 ms | CPU ms/msg | context switches/msg | relay sessions/msg | relay handshakes/msg (full + resumed) | peak RSS MB | idle RSS MB | load during run |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for size in $SIZES; do
    n=$(messages_for "$size")
    for c in $CONCURRENCY; do
        for system in $SYSTEMS; do
            f="$RESULTS_DIR/$system-$size-c$c"
            [ -f "$f.json" ] || { echo "| $size, C=$c | $system | failed or skipped | | | | | | | | | |"; continue; }
            sw=$(mta_field "$f.mta" context_switches)
            echo "| $size, C=$c | $system | $(fmt_rate "$(json_field "$f.json" e2e_msgs_per_s)")" \
                "| $(fmt_rate "$(json_field "$f.json" submit_msgs_per_s)")" \
                "| $(fmt_lat "$(json_field "$f.json" latency_p50_ms)" "$(json_field "$f.json" latency_p99_ms)")" \
                "| $(per_msg "$(mta_field "$f.mta" cpu_ms)" "$n" %.2f)" \
                "| $([ -n "$sw" ] && per_msg "$sw" "$n" %.1f || printf '–')" \
                "| $(per_msg "$(mta_field "$f.mta" relay_sessions)" "$n" %.3f)" \
                "| $(per_msg "$(mta_field "$f.mta" relay_full_handshakes)" "$n" %.3f) + $(per_msg "$(mta_field "$f.mta" relay_resumed)" "$n" %.3f)" \
                "| $(per_msg "$(mta_field "$f.mta" peak_rss_kb)" 1024 %.0f)" \
                "| $(per_msg "$(mta_field "$f.mta" idle_rss_kb)" 1024 %.0f)" \
                "| $(mta_field "$f.mta" load) |"
        done
    done
done
echo
echo "Ratios of end-to-end rates (Postern real roles ÷ Postfix):"
for size in $SIZES; do
    for c in $CONCURRENCY; do
        pt="$RESULTS_DIR/postern-$size-c$c.json"
        [ -f "$pt" ] || continue
        for base in postfix postfix-reuse; do
            pf="$RESULTS_DIR/$base-$size-c$c.json"
            [ -f "$pf" ] || continue
            echo "  $size, C=$c: ÷ $base = $(awk -v a="$(json_field "$pt" e2e_msgs_per_s)" -v b="$(json_field "$pf" e2e_msgs_per_s)" 'BEGIN { printf "%.2f×", a / b }')"
        done
    done
done
echo
echo "Median of $REPEATS runs by end-to-end rate, after a $WARMUP-message warm-up; JSON and .mta per run in $RESULTS_DIR"
echo "CPU: utime+stime (+ reaped children) of the MTA processes over the run: Postfix's two process trees (masters and every child), Postern's two nodes."
echo "Context switches: every thread of Postern's two nodes over the run (perf stat); not counted for Postfix, whose children come and go."
echo "Relay: the receiving side of the hop from A to B (Postfix B's smtpd log; the hub's or node B's metrics)."
echo
echo "Machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)"
free -g | sed 's/^/    /'
echo "Load average before/after: $load_before / $load_after"
echo "Postfix: $(postconf -h mail_version 2>/dev/null || echo '?'), rustc: $(rustc --version 2>/dev/null || echo '?')"
echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
