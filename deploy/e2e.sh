#!/usr/bin/env bash
# End-to-end scenarios on the compose deployment (DESIGN.md §9):
#   builds the image, starts both organisations, bootstraps them, then
#   1. a configuration change on adatum-hub reaches both edges (ms, commit to both acks)
#   2. adatum-hub restarted: edges resume by deltas, no snapshot
#   3. a third adatum edge started and subscribed gets the configuration
#   4. an edge cut off from its hub gets the changes made meanwhile
# and mail flow (swaks on this host, Maildirs read with docker cp):
#   M1. domain-secured mail adatum.com -> northwindtraders.com and back (ms, submit to Maildir)
#   M3. mail keeps flowing while adatum-edge3 subscribes, edge3 carries some, none lost
#   M4. adatum-edge1 killed mid-stream: every acked message is delivered
#   M5. the cut-off edge queues mail from the internet; the queue drains after reconnection
# and adatum's several hubs on its three-member etcd cluster (issue 15):
#   H0. adatum-hub2 joins: same configuration version, stands by for every edge
#   H1. a change made on adatum-hub2 reaches every adatum edge (ms)
#   H2. one etcd member (the leader) killed: nothing changes (no lease moves,
#       changes still arrive, mail flows)
#   H4. (run before H2) a mailbox homed on adatum-hub2: mail for it lands in that hub's
#       Maildir only (ms)
#   H3. docker kill of the hub holding adatum-edge1's lease: the other hub takes every
#       edge over (ms), a later change arrives, mail submitted at it keeps flowing, 0 lost
# Tears everything down at the end, also on failure (KEEP=1 keeps it up).
# Skips loudly, exit 0, when no Docker engine answers.
#
#   deploy/e2e.sh
#   KEEP=1 deploy/e2e.sh        # leave the deployment running afterwards
#   SKIP_BUILD=1 deploy/e2e.sh  # use the images already built
#   POSTERN_IMAGE=postern:h15 ETCD_IMAGE=postern-etcd:h15 deploy/e2e.sh
#                               # other image tags (another build on this engine)
# Container and network names are fixed: one run per Docker engine at a time.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-postern}"
export POSTERN_IMAGE="${POSTERN_IMAGE:-postern:latest}" ETCD_IMAGE="${ETCD_IMAGE:-postern-etcd:latest}"
ETCD_MEMBERS=(adatum-etcd1 adatum-etcd2 adatum-etcd3)
ROUNDS="${ROUNDS:-5}"

skip_loudly() {
    printf '\n%s\n' "######################################################################" >&2
    printf '## deploy/e2e.sh SKIPPED: %s\n' "$*" >&2
    printf '%s\n\n' "######################################################################" >&2
    exit 0
}
command -v docker >/dev/null || skip_loudly "no docker client on this machine"
docker info >/dev/null 2>&1 || skip_loudly "no Docker engine answers (docker info failed)"
command -v docker-compose >/dev/null || skip_loudly "no docker-compose on this machine"
for tool in jq openssl swaks; do
    command -v "$tool" >/dev/null || { echo "e2e.sh: $tool is needed" >&2; exit 1; }
done

compose() { docker-compose -f "$here/docker-compose.yml" "$@"; }
pn() { local c=$1; shift; docker exec "$c" /postern "$@"; }

tmp="$(mktemp -d)"
export PKI_DIR="$tmp/pki" WORK="$tmp"
teardown() {
    local rc=$? f
    for f in "$tmp"/stream-*.pid; do   # background mail streams of this run
        [ -e "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
    done
    if [ "$rc" -ne 0 ]; then
        echo "e2e.sh: FAILED (exit $rc); last log lines of each node:" >&2
        for c in adatum-hub adatum-hub2 adatum-edge1 adatum-edge2 adatum-edge3 northwind-hub northwind-edge "${ETCD_MEMBERS[@]}"; do
            docker logs --tail 15 "$c" 2>&1 | sed "s/^/[$c] /" >&2 || true
        done
        # Again below the logs: CI keeps only the tail of what a run prints.
        printf 'e2e.sh: FAILED (exit %s) in %s: %s\n' "$rc" "${SCENARIO:-setup}" \
            "$(cat "$tmp/failure" 2>/dev/null || echo "no reason recorded")" >&2
    fi
    if [ "${KEEP:-0}" = 1 ]; then
        echo "e2e.sh: KEEP=1, leaving the deployment up (PKI in $tmp/pki)" >&2
    else
        echo "==> tearing down" >&2
        compose --profile edge3 --profile hub2 down -v --remove-orphans >/dev/null 2>&1 || true
        rm -rf "$tmp"
    fi
    exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

log() {
    case "$*" in scenario*) SCENARIO="${*%%:*}" ;; esac
    printf '==> %s\n' "$*" >&2
}
fail() { printf 'e2e.sh: FAIL: %s\n' "$*" >&2; printf '%s' "$*" >"$tmp/failure"; exit 1; }
# A command that fails outside fail() (set -e) names itself and its line.
set -E
trap 'printf "command failed (status %s) at line %s: %s" "$?" "$LINENO" "$BASH_COMMAND" >"$tmp/failure"' ERR
declare -a FIGURES=()
figure() { FIGURES+=("$1: $2"); printf 'FIGURE  %s: %s\n' "$1" "$2"; }
now_ms() { date +%s%3N; }

# --- EdgeSync status helpers (the JSON of `edgesync test --json`) ---------
hub_status() { pn "$1" edgesync test --json; }
# "hub_version edge_version status lag snapshots_sent" of one edge as the hub sees it
edge_on_hub() { hub_status "$1" | jq -r --arg e "$2" '.[] | select(.edge == $e) | "\(.hub_version) \(.edge_version) \(.status) \(.lag) \(.snapshots_sent)"'; }
edge_version() { pn "$1" edgesync test --json | jq -r '.[0].edge_version'; }
snapshots_applied() { pn "$1" edgesync test --json | jq -r '.[0].snapshots_applied'; }
hub_version() { hub_status "$1" | jq -r '[.[].hub_version] | max // 0'; }

# True when every named edge reports edge_version == hub_version >= $min, in-sync, lag 0.
all_in_sync() {
    local hub=$1 min=$2; shift 2
    hub_status "$hub" | jq -e --argjson min "$min" --args '
        . as $all | $ARGS.positional | all(. as $e |
            ($all | map(select(.edge == $e)) | .[0]) as $s
            | $s != null and $s.status == "in-sync" and $s.lag == 0
              and $s.edge_version == $s.hub_version and $s.hub_version >= $min)' \
        "$@" >/dev/null
}

wait_until() {
    local what=$1 timeout=$2; shift 2
    local deadline=$((SECONDS + timeout))
    until "$@"; do
        [ $SECONDS -lt $deadline ] || fail "timed out after ${timeout}s waiting for: $what"
        sleep 0.05
    done
}

wait_healthy() {
    local c state deadline=$((SECONDS + 120))
    for c in "$@"; do
        until [ "$(docker inspect -f '{{.State.Health.Status}}' "$c" 2>/dev/null)" = healthy ]; do
            [ $SECONDS -lt $deadline ] || fail "$c not healthy after 120 s"
            sleep 0.2
        done
    done
}

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print int((a[NR/2]+a[NR/2+1])/2)}'; }

# ------------------------------------------------------------------ setup
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "building the images"
    image_id="$(IMAGE="$POSTERN_IMAGE" "$here/build-images.sh" | tail -1)"
    figure "image" "$POSTERN_IMAGE $image_id, $(docker image inspect -f '{{.Size}}' "$POSTERN_IMAGE" | awk '{printf "%.1f MB", $1/1e6}')"
    figure "etcd image" "$ETCD_IMAGE, $(docker image inspect -f '{{.Size}}' "$ETCD_IMAGE" | awk '{printf "%.1f MB", $1/1e6}')"
fi
log "removing what a previous run left"
compose --profile edge3 --profile hub2 down -v --remove-orphans >/dev/null 2>&1 || true

log "docker-compose up -d"
t0=$(now_ms)
compose up -d
wait_healthy "${ETCD_MEMBERS[@]}" adatum-hub adatum-edge1 adatum-edge2 northwind-hub northwind-edge
figure "compose up to three etcd members and five healthy nodes" "$(( $(now_ms) - t0 )) ms"

t0=$(now_ms)
"$here/bootstrap.sh"
figure "bootstrap (PKI, certificates, 3 subscriptions, seed settings)" "$(( $(now_ms) - t0 )) ms"

log "waiting for every edge to be in sync"
wait_until "adatum edges in sync" 60 all_in_sync adatum-hub 1 adatum-edge1 adatum-edge2
wait_until "northwind edge in sync" 60 all_in_sync northwind-hub 1 northwind-edge

# The bootstrap's settings arrived on the edges (replicas, read-only there).
for e in adatum-edge1 adatum-edge2 northwind-edge; do
    case "$e" in adatum-*) partner=northwindtraders.com ;; *) partner=adatum.com ;; esac
    pn "$e" transport-config get --json | jq -e --arg p "$partner" \
        '.tls_send_domain_secure_list == [$p] and .tls_receive_domain_secure_list == [$p]' >/dev/null \
        || fail "$e: domain secure lists did not replicate"
    pn "$e" send-connector get Internet --json | jq -e '.domain_secure_enabled == true and .protocol_logging_level == "verbose"' >/dev/null \
        || fail "$e: the Internet send connector did not replicate"
    [ "$(pn "$e" trusted-root list --json | jq length)" = 1 ] || fail "$e: partner root not replicated"
done
err="$(pn adatum-edge1 transport-config set --max-recipients 5 2>&1 >/dev/null || true)"
case "$err" in *"managed by EdgeSync"*) ;; *) fail "a replicated object was writable on an edge: $err" ;; esac
log "bootstrap replicated to all three edges; replicated objects are read-only on edges"

# ------------------------------------------- 1. propagation to both edges
scenario_propagation() {
    log "scenario 1: a config change on adatum-hub reaches both edges"
    local i v t_acked ack ms acked samples=() ack_samples=() exec_samples=()
    # What one `docker exec … postern` costs here: the floor under every
    # figure measured from this host.
    for i in $(seq 1 "$ROUNDS"); do
        t0=$(now_ms); pn adatum-hub node-info >/dev/null; exec_samples+=($(( $(now_ms) - t0 )))
    done
    for i in $(seq 1 "$ROUNDS"); do
        v=$(hub_version adatum-hub)
        t0=$(now_ms)
        pn adatum-hub transport-config set --max-recipients $((200 + i)) >/dev/null
        wait_until "round $i on both edges" 30 all_in_sync adatum-hub $((v + 1)) adatum-edge1 adatum-edge2
        ms=$(( $(now_ms) - t0 ))
        # The hub stamps each edge's last ack (last_success); containers
        # share this host's clock, so the later of the two acks minus the
        # moment the `set` command started is commit-to-both-acks plus one
        # docker exec start-up, without the polling.
        acked=$(hub_status adatum-hub | jq -r '[.[] | select(.edge == "adatum-edge1" or .edge == "adatum-edge2") | .last_success] | max')
        t_acked=$(date -d "$acked" +%s%3N)
        ack=$(( t_acked - t0 ))
        samples+=("$ms"); ack_samples+=("$ack")
        echo "    round $i: version $((v + 1)); both acks stamped ${ack} ms after the set command started; seen by polling after $ms ms"
    done
    for e in adatum-edge1 adatum-edge2; do
        [ "$(pn "$e" transport-config get --json | jq .max_recipients)" = $((200 + ROUNDS)) ] \
            || fail "$e does not hold the last change"
    done
    figure "docker exec postern node-info round trip (median of $ROUNDS)" \
        "$(printf '%s\n' "${exec_samples[@]}" | median) ms (samples: ${exec_samples[*]})"
    figure "1. transport-config set on adatum-hub to both edges' acks, by the hub's ack stamps (median of $ROUNDS)" \
        "$(printf '%s\n' "${ack_samples[@]}" | median) ms (samples: ${ack_samples[*]})"
    figure "1. same, seen by polling edgesync test from the host (median of $ROUNDS)" \
        "$(printf '%s\n' "${samples[@]}" | median) ms (samples: ${samples[*]})"
}

# ------------------------------------------------- 2. hub restart resumes
scenario_hub_restart() {
    log "scenario 2: adatum-hub restarted; edges resume without a full resync"
    local s1 s2 v ms
    s1=$(snapshots_applied adatum-edge1); s2=$(snapshots_applied adatum-edge2)
    v=$(hub_version adatum-hub)
    t0=$(now_ms)
    docker restart adatum-hub >/dev/null
    wait_healthy adatum-hub
    wait_until "edges resumed after the restart" 60 all_in_sync adatum-hub "$v" adatum-edge1 adatum-edge2
    ms=$(( $(now_ms) - t0 ))
    pn adatum-hub accepted-domain new contoso.com --type internal-relay >/dev/null
    wait_until "a change after the restart" 30 all_in_sync adatum-hub $((v + 1)) adatum-edge1 adatum-edge2
    hub_status adatum-hub | jq -e 'all(.[]; .snapshots_sent == 0)' >/dev/null \
        || fail "the restarted hub sent a snapshot: $(hub_status adatum-hub | jq -c '[.[] | {edge, snapshots_sent}]')"
    [ "$(snapshots_applied adatum-edge1)" = "$s1" ] && [ "$(snapshots_applied adatum-edge2)" = "$s2" ] \
        || fail "an edge applied a snapshot after the hub restart"
    echo "    snapshots_sent 0 on the hub; snapshots_applied unchanged on the edges ($s1, $s2)"
    figure "2. docker restart adatum-hub to both edges in sync again (no snapshot)" "$ms ms"
}

# --------------------------------------------- 3. a third edge subscribes
scenario_third_edge() {
    log "scenario 3: adatum-edge3 started and subscribed gets the configuration, while mail flows"
    local ms v
    # Mail keeps flowing adatum -> northwind during all of this (M3).
    stream_start edge3 adatum-hub kim@adatum.com david@northwindtraders.com
    compose --profile edge3 up -d adatum-edge3 2>&1 | sed 's/^/    /'
    wait_healthy adatum-edge3
    v=$(hub_version adatum-hub)
    t0=$(now_ms)
    "$here/bootstrap.sh" adatum-edge3
    wait_until "adatum-edge3 in sync" 60 all_in_sync adatum-hub "$v" adatum-edge1 adatum-edge2 adatum-edge3
    ms=$(( $(now_ms) - t0 ))
    pn adatum-edge3 transport-config get --json | jq -e '.tls_send_domain_secure_list == ["northwindtraders.com"] and .max_recipients > 200' >/dev/null \
        || fail "adatum-edge3: transport config not replicated"
    pn adatum-edge3 send-connector get Internet --json | jq -e '.domain_secure_enabled == true' >/dev/null \
        || fail "adatum-edge3: Internet connector not replicated"
    pn adatum-edge3 accepted-domain list --json | jq -e 'map(.name) | index("adatum.com") and index("contoso.com")' >/dev/null \
        || fail "adatum-edge3: accepted domains not replicated"
    [ "$(pn adatum-edge3 mailbox list --json | jq length)" = 1 ] || fail "adatum-edge3: mailbox list not replicated"
    [ "$(pn adatum-edge3 trusted-root list --json | jq length)" = 1 ] || fail "adatum-edge3: trusted root not replicated"
    pn adatum-edge3 send-connector list --json | jq -e 'map(.name) | any(startswith("EdgeSync - "))' >/dev/null \
        || fail "adatum-edge3: site connectors not replicated"
    [ "$(snapshots_applied adatum-edge3)" = 1 ] || fail "adatum-edge3 applied $(snapshots_applied adatum-edge3) snapshots, expected 1"
    echo "    adatum-edge3 holds version $(edge_version adatum-edge3): domain-secure lists, Internet connector, accepted domains, mailbox, partner root"
    figure "3. adatum-edge3 subscription (new + import) to in sync with the full config" "$ms ms"

    # M3: edge3 carries partner mail (the Partner connector lists it as a
    # source edge from the start); then the stream stops and every acked
    # message must be in david's Maildir.
    local carried acked refused d c deadline=$((SECONDS + 120))
    until carried=$(partner_sent adatum-edge3); [ "$carried" -ge 3 ]; do
        [ $SECONDS -lt $deadline ] || { stream_stop edge3; fail "adatum-edge3 carried $carried partner messages in 120 s"; }
        sleep 1
    done
    stream_stop edge3
    read -r acked refused <"$tmp/stream-edge3.result"
    [ "$refused" = 0 ] || fail "M3: $refused submissions refused during the edge3 subscription"
    t0=$(now_ms)
    wait_until "$acked streamed messages in david's Maildir" 300 at_least northwind-hub northwindtraders.com david "e2e-edge3-" "$acked"
    d=$(delivered northwind-hub northwindtraders.com david "e2e-edge3-")
    c=$(copies northwind-hub northwindtraders.com david "e2e-edge3-")
    [ "$d" = "$acked" ] || fail "M3: $acked acked, $d delivered"
    carried=$(partner_sent adatum-edge3)
    echo "    stream during the subscription: $acked acked, $d delivered ($((c - d)) duplicates), $carried via adatum-edge3"
    figure "M3. mail during the adatum-edge3 subscription: acked vs delivered (via edge3)" "$acked acked, $d delivered, $((c - d)) duplicates ($carried via adatum-edge3); last delivery $(( $(now_ms) - t0 )) ms after the stream stopped"
}

# ----------------------------------------- 4. an edge cut off and rejoined
# Two cuts: a short one (the hub's stream is still open when the edge comes
# back, TCP retransmission carries the deltas) and a long one (the hub
# declares the stream dead after its heartbeat/answer timeouts and
# redials with back-off until the edge is reachable again).
edge2_stream_dead() {
    case "$(edge_on_hub adatum-hub adatum-edge2 | awk '{print $3}')" in
        failed|connecting) return 0 ;;
        *) return 1 ;;
    esac
}
scenario_edge_cut_off() {
    local cut=$1 v s2 ev ms t_cut port
    log "scenario 4 ($cut cut): adatum-edge2 cut off from adatum-hub (docker network disconnect adatum-perimeter)"
    s2=$(snapshots_applied adatum-edge2)
    docker network disconnect adatum-perimeter adatum-edge2
    t_cut=$(now_ms)
    v=$(hub_version adatum-hub)
    case "$cut" in short) port=2601 ;; *) port=2602 ;; esac
    pn adatum-hub accepted-domain new "fabrikam-$cut.com" >/dev/null
    pn adatum-hub mailbox new "lee-$cut@adatum.com" >/dev/null
    pn adatum-hub send-connector set Internet --port "$port" >/dev/null
    wait_until "adatum-edge1 has the changes" 30 all_in_sync adatum-hub $((v + 3)) adatum-edge1 adatum-edge3
    ev=$(edge_version adatum-edge2)
    [ "$ev" -le "$v" ] || fail "adatum-edge2 got changes while cut off ($ev > $v)"
    echo "    while cut off: hub at $(hub_version adatum-hub), adatum-edge1/3 in sync, adatum-edge2 still at $ev;" \
        "the hub sees it as (hub_version edge_version status lag snapshots_sent): $(edge_on_hub adatum-hub adatum-edge2)"
    local n_mail=${DRAIN_MESSAGES:-10} i q
    if [ "$cut" = long ]; then
        # M5: the cut-off edge keeps taking mail from the internet. One
        # message first (its failed attempt puts the hop to the hubs into
        # back-off), then the rest, which wait in the queue behind it.
        from_internet adatum-edge2 kim@adatum.com "e2e-drain-$$-1" || fail "adatum-edge2 refused mail while cut off: $(tail -5 "$tmp/swaks.last")"
        sleep 2
        for i in $(seq 2 "$n_mail"); do
            from_internet adatum-edge2 kim@adatum.com "e2e-drain-$$-$i" || fail "adatum-edge2 refused mail while cut off: $(tail -5 "$tmp/swaks.last")"
        done
        q=$(queue_length adatum-edge2)
        [ "$q" -ge "$n_mail" ] || fail "adatum-edge2 queue holds $q while cut off, expected $n_mail"
        [ "$(delivered adatum-hub adatum.com kim "e2e-drain-$$-")" = 0 ] || fail "mail reached adatum-hub from a cut-off edge"
        echo "    while cut off: adatum-edge2 accepted $n_mail messages from the internet, its queue holds $q"
        wait_until "the hub to declare adatum-edge2's stream dead" 120 edge2_stream_dead
        figure "4b. adatum-edge2 cut off to the hub declaring its stream dead" "$(( $(now_ms) - t_cut )) ms"
        echo "    the hub now sees: $(edge_on_hub adatum-hub adatum-edge2)"
        sleep "${CUT_EXTRA_SECONDS:-5}"
    else
        sleep "${CUT_SECONDS:-5}"
    fi
    t0=$(now_ms)
    docker network connect --alias adatum-edge2 --alias edge2.adatum.com adatum-perimeter adatum-edge2
    wait_until "adatum-edge2 catches up after reconnection" 180 all_in_sync adatum-hub $((v + 3)) adatum-edge2
    ms=$(( $(now_ms) - t0 ))
    [ "$(pn adatum-edge2 send-connector get Internet --json | jq .port)" = "$port" ] || fail "adatum-edge2: missing the connector change"
    pn adatum-edge2 accepted-domain list --json | jq -e --arg d "fabrikam-$cut.com" 'map(.name) | index($d)' >/dev/null \
        || fail "adatum-edge2: missing the new accepted domain"
    [ "$(snapshots_applied adatum-edge2)" = "$s2" ] || fail "adatum-edge2 caught up by snapshot, not deltas"
    echo "    adatum-edge2 caught up by deltas (snapshots_applied still $s2)"
    if [ "$cut" = long ]; then
        wait_until "adatum-edge2's queue drains into kim's Maildir" 400 at_least adatum-hub adatum.com kim "e2e-drain-$$-" "$n_mail"
        local drained=$(( $(now_ms) - t0 ))
        echo "    after reconnection: all $n_mail messages in kim's Maildir"
        figure "M5. cut-off adatum-edge2: $n_mail messages taken from the internet while cut, network connect to all in kim's Maildir" "$drained ms"
    fi
    case "$cut" in
        short) figure "4a. short cut (${CUT_SECONDS:-5} s): reconnection to in sync with the 3 changes made meanwhile" "$ms ms" ;;
        long) figure "4b. long cut: reconnection to in sync with the 3 changes made meanwhile (includes the hub's redial back-off)" "$ms ms" ;;
    esac
}

# ------------------------------------------------------------ mail helpers
# The image has no shell and no SMTP client: swaks runs on this host and
# talks to the containers by their addresses on the Docker networks (the
# host has an address on every bridge, internal ones included; nothing is
# published). Delivered mail is read out of a hub's data dir with docker cp.
ip_on() { docker inspect -f "{{(index .NetworkSettings.Networks \"$2\").IPAddress}}" "$1"; }
hub_net() { case "$1" in adatum-*) echo adatum-internal ;; *) echo northwind-internal ;; esac; }

# submit HUB FROM TO SUBJECT: client submission on the hub's port 587; 0 when accepted (250).
submit() {
    swaks --server "$(ip_on "$1" "$(hub_net "$1")"):587" --from "$2" --to "$3" \
        --helo client.example --header "Subject: $4" --timeout 30 >"$tmp/swaks.last" 2>&1
}
# from_internet EDGE TO SUBJECT: a stranger's server (not on any domain-secure list) at EDGE:25.
from_internet() {
    swaks --server "$(ip_on "$1" internet):25" --from someone@fabrikam.com --to "$2" \
        --helo mx.fabrikam.com --header "Subject: $3" --timeout 30 >"$tmp/swaks.last" 2>&1
}
# maildir HUB DOMAIN USER: copies the mailbox's Maildir/new to $tmp/md/HUB-USER, prints the path.
maildir() {
    local d="$tmp/md/$1-$3"
    rm -rf "$d"; mkdir -p "$tmp/md"
    docker cp "$1:/data/mailboxes/$2/$3/Maildir/new" "$d" >/dev/null 2>&1 || mkdir -p "$d"
    echo "$d"
}
# delivered HUB DOMAIN USER PREFIX: distinct subjects starting with PREFIX in the mailbox.
delivered() {
    local d; d=$(maildir "$1" "$2" "$3")
    { grep -rh "^Subject: $4" "$d" || true; } | tr -d '\r' | sort -u | wc -l
}
# copies HUB DOMAIN USER PREFIX: files (copies) with such subjects.
copies() {
    local d; d=$(maildir "$1" "$2" "$3")
    { grep -rl "^Subject: $4" "$d" || true; } | wc -l
}
has_subject() { local d; d=$(maildir "$1" "$2" "$3"); grep -rq "^Subject: $4[[:space:]]*\$" "$d" 2>/dev/null; }
at_least() { [ "$(delivered "$1" "$2" "$3" "$4")" -ge "$5" ]; }
# counter NODE METRIC: the sum of a counter's values over its labels.
counter() { pn "$1" counters --json | jq --arg m "$2" '[.[] | select(.metric == $m) | .value] | add // 0'; }
# Messages an edge sent accepted (the domain-secured Sent counter stays 0
# for smart-host connectors, see M1).
partner_sent() { pn "$1" counters --json | jq '[.[] | select(.metric == "postern_messages_total" and (.labels | index("direction=send")) and (.labels | index("outcome=accepted"))) | .value] | add // 0'; }
# postern_queue_length is set when a message is received, not when one
# leaves: right after receptions it is the queue's length.
queue_length() { counter "$1" postern_queue_length; }

# A background stream: stream_start NAME HUB FROM TO [PAUSE]; stream_stop NAME prints "acked refused".
stream_start() {
    local name=$1 hub=$2 from=$3 to=$4 pause=${5:-0.2}
    : >"$tmp/stream-$name.acked"; : >"$tmp/stream-$name.refused"; rm -f "$tmp/stream-$name.stop"
    (
        i=0
        while [ ! -e "$tmp/stream-$name.stop" ]; do
            i=$((i + 1))
            if swaks --server "$(ip_on "$hub" "$(hub_net "$hub")"):587" --from "$from" --to "$to" \
                --helo client.example --header "Subject: e2e-$name-$i" --timeout 30 >/dev/null 2>&1; then
                echo "$i" >>"$tmp/stream-$name.acked"
            else
                echo "$i" >>"$tmp/stream-$name.refused"
            fi
            sleep "$pause"
        done
    ) &
    echo $! >"$tmp/stream-$name.pid"
}
stream_acked() { wc -l <"$tmp/stream-$1.acked"; }
# stream_stop NAME: stops it, waits for the message in flight; "acked refused" in $tmp/stream-NAME.result.
stream_stop() {
    touch "$tmp/stream-$1.stop"
    wait "$(cat "$tmp/stream-$1.pid")" 2>/dev/null || true
    # (Not in a subshell: wait needs the stream to be this shell's child.)
    echo "$(wc -l <"$tmp/stream-$1.acked") $(wc -l <"$tmp/stream-$1.refused")" >"$tmp/stream-$1.result"
}

# ------------------------------- M1. domain-secured mail, both ways, timed
# kim@adatum.com -> david@northwindtraders.com submitted at adatum-hub:
# adatum-hub -> an adatum edge (mutual TLS, direct trust) -> the Partner
# connector (smart host northwind-edge, domain-secured: PKI + client
# certificate naming adatum.com) -> northwind-hub -> Maildir. And back.
scenario_domain_secured_mail() {
    log "scenario M1: domain-secured mail adatum.com -> northwindtraders.com and back"
    local i subj ms f dir samples_an=() samples_na=()
    for i in $(seq 1 "${MAIL_ROUNDS:-3}"); do
        for dir in an na; do
            subj="e2e-ds-$dir-$i-$$"
            t0=$(now_ms)
            if [ "$dir" = an ]; then
                submit adatum-hub kim@adatum.com david@northwindtraders.com "$subj" || fail "submission at adatum-hub refused: $(tail -5 "$tmp/swaks.last")"
                wait_until "$subj in david's Maildir" 120 has_subject northwind-hub northwindtraders.com david "$subj"
                samples_an+=($(( $(now_ms) - t0 )))
            else
                submit northwind-hub david@northwindtraders.com kim@adatum.com "$subj" || fail "submission at northwind-hub refused: $(tail -5 "$tmp/swaks.last")"
                wait_until "$subj in kim's Maildir" 120 has_subject adatum-hub adatum.com kim "$subj"
                samples_na+=($(( $(now_ms) - t0 )))
            fi
        done
    done
    # The stamps of domain security on the delivered copies.
    for dir in an na; do
        if [ "$dir" = an ]; then f=$(grep -rl "^Subject: e2e-ds-an-1-$$[[:space:]]*\$" "$(maildir northwind-hub northwindtraders.com david)"); partner=adatum.com
        else f=$(grep -rl "^Subject: e2e-ds-na-1-$$[[:space:]]*\$" "$(maildir adatum-hub adatum.com kim)"); partner=northwindtraders.com; fi
        grep -q "^X-Postern-Organization-AuthAs: Partner" "$f" || fail "$dir: not stamped AuthAs Partner: $(cat "$f")"
        grep -q "^X-Postern-Organization-AuthDomain: $partner" "$f" || fail "$dir: not stamped AuthDomain $partner: $(cat "$f")"
        grep -q "with ESMTPS" "$f" || fail "$dir: no ESMTPS hop: $(cat "$f")"
    done
    local recv_n recv_a sent
    recv_n=$(counter northwind-edge postern_domain_secured_messages_received_total)
    recv_a=$(( $(counter adatum-edge1 postern_domain_secured_messages_received_total) + $(counter adatum-edge2 postern_domain_secured_messages_received_total) ))
    [ "$recv_n" -ge "${MAIL_ROUNDS:-3}" ] && [ "$recv_a" -ge "${MAIL_ROUNDS:-3}" ] \
        || fail "Domain-Secured Messages Received: northwind-edge $recv_n, adatum edges $recv_a"
    sent=$(( $(counter adatum-edge1 postern_domain_secured_messages_sent_total) + $(counter adatum-edge2 postern_domain_secured_messages_sent_total) ))
    [ "$sent" -ge "${MAIL_ROUNDS:-3}" ] || fail "Domain-Secured Messages Sent on the adatum edges: $sent"
    echo "    stamped X-Postern-Organization-AuthAs: Partner / AuthDomain both ways, ESMTPS; Domain-Secured Messages Received: northwind-edge $recv_n, adatum edges $recv_a; Sent by adatum edges $sent"
    figure "M1. adatum-hub submit -> david's Maildir at northwind-hub, domain-secured (median of ${MAIL_ROUNDS:-3})" \
        "$(printf '%s\n' "${samples_an[@]}" | median) ms (samples: ${samples_an[*]})"
    figure "M1. northwind-hub submit -> kim's Maildir at adatum-hub, domain-secured (median of ${MAIL_ROUNDS:-3})" \
        "$(printf '%s\n' "${samples_na[@]}" | median) ms (samples: ${samples_na[*]})"
}

# ------------------------------------- M4. an edge killed mid-stream
# N messages kim -> david submitted one after another at adatum-hub;
# adatum-edge1 gets `docker kill` halfway; after the stream it is started
# again. Every message the hub acknowledged (250) must reach david's
# Maildir (via a surviving edge, or from edge1's queue after its start).
scenario_edge_killed_mid_stream() {
    local n=${KILL_MESSAGES:-40} i acked=0 refused=0 t_kill ms d c q
    log "scenario M4: $n messages adatum -> northwind, adatum-edge1 killed after $((n / 2))"
    for i in $(seq 1 "$n"); do
        if submit adatum-hub kim@adatum.com david@northwindtraders.com "e2e-kill-$$-$i"; then
            acked=$((acked + 1))
        else
            refused=$((refused + 1))
        fi
        if [ "$i" = $((n / 2)) ]; then
            docker kill adatum-edge1 >/dev/null
            t_kill=$(now_ms)
            echo "    docker kill adatum-edge1 after message $i"
        fi
    done
    log "stream done ($acked acked, $refused refused); docker start adatum-edge1"
    docker start adatum-edge1 >/dev/null
    wait_healthy adatum-edge1
    echo "    adatum-edge1 back"
    wait_until "$acked acked messages in david's Maildir" 420 at_least northwind-hub northwindtraders.com david "e2e-kill-$$-" "$acked"
    ms=$(( $(now_ms) - t_kill ))
    d=$(delivered northwind-hub northwindtraders.com david "e2e-kill-$$-")
    c=$(copies northwind-hub northwindtraders.com david "e2e-kill-$$-")
    [ "$d" -ge "$acked" ] || fail "acked $acked, delivered $d"
    # edge1's counters start at 0 with the process: what it sent since its
    # start came out of the queue it had when it was killed.
    q=$(partner_sent adatum-edge1)
    echo "    acked $acked, refused $refused, delivered $d distinct ($c copies, $((c - d)) duplicates); $q sent by adatum-edge1 from its queue after its start"
    figure "M4. edge killed mid-stream of $n: acked vs delivered" "$acked acked, $d delivered, $((c - d)) duplicates, $refused refused at submission, $q drained from adatum-edge1's queue after docker start"
    figure "M4. docker kill adatum-edge1 to every acked message delivered" "$ms ms"
}
# ------------------------- C1. an edge's certificate replaced mid-stream
# The seed's order on a subscribed edge while mail flows through it:
# `cert new --generate-request` on adatum-edge1, the adatum CA signs,
# `cert import --enable-services smtp`. The edge offers the new certificate
# over EdgeSync, the hub confirms, the edge switches; no re-subscription, and
# every message the hub acknowledged reaches david's Maildir.
scenario_edge_certificate_replaced() {
    log "scenario C1: adatum-edge1's certificate replaced while mail flows"
    local dir="$PKI_DIR/adatum" created_before created_after new old acked refused d c result
    created_before=$(pn adatum-hub edge-subscription list --json | jq -r '.[] | select(.name == "adatum-edge1") | .created')
    old=$(pn adatum-hub edge-subscription list --json | jq -r '.[] | select(.name == "adatum-edge1") | .thumbprint')
    stream_start rot adatum-hub kim@adatum.com david@northwindtraders.com 0.2
    wait_until "the stream under way" 60 sh -c "[ \$(wc -l <'$tmp/stream-rot.acked') -ge 5 ]"
    pn adatum-edge1 cert new --generate-request --subject-name "O=Adatum/CN=edge1.adatum.com" \
        --domain-name edge1.adatum.com --domain-name mail.adatum.com --path /data/rotation.csr >/dev/null
    docker cp adatum-edge1:/data/rotation.csr "$tmp/rotation.csr"
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=DNS:edge1.adatum.com,DNS:mail.adatum.com" >"$tmp/rotation.ext"
    openssl x509 -req -in "$tmp/rotation.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
        -days 400 -sha256 -extfile "$tmp/rotation.ext" -out "$tmp/rotation.pem" 2>/dev/null
    new=$(docker exec -i adatum-edge1 /postern cert import --path /dev/stdin --enable-services smtp <"$tmp/rotation.pem")
    echo "    adatum-edge1: $old -> $new (imported and enabled while the stream runs)"
    wait_until "the hub to confirm adatum-edge1's new certificate" 60 sh -c \
        "docker exec adatum-edge1 /postern cert get --thumbprint $new --json | jq -e '.rotation == \"\"' >/dev/null"
    [ "$(pn adatum-hub edge-subscription list --json | jq -r '.[] | select(.name == "adatum-edge1") | .thumbprint')" = "$new" ] \
        || fail "the hub's subscription of adatum-edge1 does not name $new"
    sleep 3
    stream_stop rot
    read -r acked refused <"$tmp/stream-rot.result"
    wait_until "$acked acked messages in david's Maildir" 240 at_least northwind-hub northwindtraders.com david "e2e-rot-" "$acked"
    d=$(delivered northwind-hub northwindtraders.com david "e2e-rot-")
    c=$(copies northwind-hub northwindtraders.com david "e2e-rot-")
    [ "$d" -ge "$acked" ] || fail "C1: acked $acked, delivered $d"
    created_after=$(pn adatum-hub edge-subscription list --json | jq -r '.[] | select(.name == "adatum-edge1") | .created')
    [ "$created_after" = "$created_before" ] || fail "C1: adatum-edge1 was subscribed again ($created_before -> $created_after)"
    pn adatum-hub edgesync test --json | jq -e '.[] | select(.edge == "adatum-edge1") | .trust == "ok"' >/dev/null \
        || fail "C1: edgesync test reports a trust problem: $(pn adatum-hub edgesync test --json)"
    wait_until "adatum edges in sync after the rotation" 60 all_in_sync adatum-hub 1 adatum-edge1 adatum-edge2
    echo "    acked $acked, refused $refused, delivered $d distinct ($c copies); subscription unchanged (created $created_before)"
    figure "C1. edge certificate replaced mid-stream" "$acked acked, $d delivered, $((acked - d < 0 ? 0 : acked - d)) lost, $refused refused at submission, no re-subscription"
}

# ------------------------------------- several hubs on etcd (issue 15)
# adatum's hubs share the configuration on the etcd cluster; each edge is
# streamed to by the hub holding its EdgeSync lease, the other stands by.
ADATUM_HUBS=(adatum-hub)
ADATUM_EDGES=(adatum-edge1 adatum-edge2 adatum-edge3)
# org_status: each adatum edge once, as the hub streaming to it reports it
# (a hub standing by says "standby"; the holder's entry wins).
org_status() {
    local h
    for h in "${ADATUM_HUBS[@]}"; do hub_status "$h"; done \
        | jq -s 'add | group_by(.edge) | map((map(select(.status != "standby")) + .)[0])'
}
# org_in_sync MIN EDGE…: like all_in_sync, over the hubs up.
org_in_sync() {
    local min=$1; shift
    org_status | jq -e --argjson min "$min" --args '
        . as $all | $ARGS.positional | all(. as $e |
            ($all | map(select(.edge == $e)) | .[0]) as $s
            | $s != null and $s.status == "in-sync" and $s.lag == 0
              and $s.edge_version == $s.hub_version and $s.hub_version >= $min)' \
        "$@" >/dev/null
}
# "edge holder revision" per edge, sorted: who streams to which edge.
lease_table() { org_status | jq -r '.[] | "\(.edge) \(.lease_holder) \(.lease_revision)"' | sort; }
# hub_holds HUB EDGE…: HUB streams to every EDGE in sync under its own lease.
hub_holds() {
    local hub=$1; shift
    hub_status "$hub" | jq -e --arg h "$hub" --args '. as $all | $ARGS.positional | all(. as $e |
        ($all | map(select(.edge == $e)) | .[0]) as $s
        | $s != null and $s.status == "in-sync" and $s.lease_holder == $h and $s.lease_revision > 0)' "$@" >/dev/null
}
# delivered_adatum USER PREFIX: distinct subjects in USER's Maildirs on both adatum hubs.
delivered_adatum() {
    local h d
    for h in adatum-hub adatum-hub2; do
        d=$(maildir "$h" adatum.com "$1")
        grep -rh "^Subject: $2" "$d" 2>/dev/null || true
    done | tr -d '\r' | sort -u | wc -l
}

adatum_at_least() { [ "$(delivered_adatum "$1" "$2")" -ge "$3" ]; }

scenario_second_hub_joins() {
    log "scenario H0: adatum-hub2 joins adatum's configuration on etcd"
    local v1 v2 ms
    t0=$(now_ms)
    compose --profile hub2 up -d adatum-hub2 2>&1 | sed 's/^/    /'
    wait_healthy adatum-hub2
    "$here/bootstrap.sh" adatum-hub2
    ADATUM_HUBS=(adatum-hub adatum-hub2)
    # adatum-hub holds every edge; adatum-hub2 stands by for each of them.
    wait_until "adatum-hub2 standing by for the three edges" 60 sh -c \
        "docker exec adatum-hub2 /postern edgesync test --json | jq -e 'length == 3 and all(.[]; .status == \"standby\" and .lease_holder == \"adatum-hub\")' >/dev/null"
    ms=$(( $(now_ms) - t0 ))
    wait_until "both hubs on one version" 30 sh -c \
        "[ \"\$(docker exec adatum-hub /postern edgesync test --json | jq '[.[].hub_version] | max')\" = \"\$(docker exec adatum-hub2 /postern edgesync test --json | jq '[.[].hub_version] | max')\" ]"
    v1=$(hub_version adatum-hub); v2=$(hub_version adatum-hub2)
    pn adatum-hub2 accepted-domain list --json | jq -e 'map(.name) | index("adatum.com") and index("contoso.com")' >/dev/null \
        || fail "adatum-hub2 does not read the organisation's accepted domains"
    [ "$(pn adatum-hub2 edge-subscription list --json | jq length)" = 3 ] || fail "adatum-hub2 does not see the three subscriptions"
    echo "    both hubs at version $v1/$v2; leases (edge holder token): $(lease_table | tr '\n' ';')"
    figure "H0. docker-compose up adatum-hub2 to standing by for all three edges, same version as adatum-hub" "$ms ms"
}

scenario_change_on_hub2() {
    log "scenario H1: a change made on adatum-hub2 reaches every adatum edge"
    local i v ms acked t_acked ack samples=() ack_samples=() e stores
    for i in $(seq 1 "${HUB2_ROUNDS:-3}"); do
        v=$(hub_version adatum-hub2)
        t0=$(now_ms)
        pn adatum-hub2 transport-config set --max-recipients $((300 + i)) >/dev/null
        wait_until "round $i on every edge" 30 org_in_sync $((v + 1)) "${ADATUM_EDGES[@]}"
        ms=$(( $(now_ms) - t0 ))
        acked=$(org_status | jq -r '[.[].last_success] | max')
        t_acked=$(date -d "$acked" +%s%3N)
        ack=$(( t_acked - t0 ))
        samples+=("$ms"); ack_samples+=("$ack")
        echo "    round $i: written on adatum-hub2, streamed by adatum-hub; all three acks ${ack} ms after the set started; seen by polling after $ms ms"
    done
    for e in "${ADATUM_EDGES[@]}"; do
        [ "$(pn "$e" transport-config get --json | jq .max_recipients)" = $((300 + ${HUB2_ROUNDS:-3})) ] \
            || fail "$e does not hold adatum-hub2's last change"
    done
    [ "$(hub_version adatum-hub)" = "$(hub_version adatum-hub2)" ] || fail "the hubs report different versions"
    stores=$(for e in "${ADATUM_EDGES[@]}"; do pn "$e" edgesync test --json | jq -r '.[0].store_id'; done | sort -u | wc -l)
    [ "$stores" = 1 ] || fail "the adatum edges hold $stores different store ids"
    figure "H1. transport-config set on adatum-hub2 to all three edges' acks (median of ${HUB2_ROUNDS:-3})" \
        "$(printf '%s\n' "${ack_samples[@]}" | median) ms (samples: ${ack_samples[*]})"
    figure "H1. same, seen by polling both hubs from the host (median of ${HUB2_ROUNDS:-3})" \
        "$(printf '%s\n' "${samples[@]}" | median) ms (samples: ${samples[*]})"
}

# A mailbox homed on adatum-hub2 (issue 16): mail for it reaches that hub's
# Maildir, whichever hub the edges hand it to, and never adatum-hub's.
scenario_mailbox_home_on_hub2() {
    log "scenario H4: lee@adatum.com homed on adatum-hub2"
    local v i n=3 ms on_hub1
    v=$(hub_version adatum-hub)
    pn adatum-hub mailbox new lee@adatum.com --hub adatum-hub2 >/dev/null || fail "mailbox new --hub adatum-hub2 refused"
    pn adatum-hub2 mailbox get lee@adatum.com | grep -q adatum-hub2 \
        || fail "adatum-hub2 does not show lee's home: $(pn adatum-hub2 mailbox get lee@adatum.com)"
    wait_until "lee's mailbox on every edge" 30 org_in_sync $((v + 1)) "${ADATUM_EDGES[@]}"
    t0=$(now_ms)
    for i in $(seq 1 $n); do
        submit northwind-hub david@northwindtraders.com lee@adatum.com "e2e-home-$$-$i" \
            || fail "submission at northwind-hub refused: $(tail -5 "$tmp/swaks.last")"
    done
    wait_until "$n messages in lee's Maildir on adatum-hub2" 120 at_least adatum-hub2 adatum.com lee "e2e-home-$$-" "$n"
    ms=$(( $(now_ms) - t0 ))
    on_hub1=$(delivered adatum-hub adatum.com lee "e2e-home-$$-")
    [ "$on_hub1" = 0 ] || fail "H4: $on_hub1 of lee's messages were delivered on adatum-hub, not lee's home"
    [ "$(copies adatum-hub2 adatum.com lee "e2e-home-$$-")" = "$n" ] || fail "H4: duplicates in lee's Maildir"
    figure "H4. northwind -> lee@adatum.com (homed on adatum-hub2), $n messages, submit to all in adatum-hub2's Maildir" "$ms ms; 0 on adatum-hub, 0 duplicates"
}

# The hub that will survive H3 (not holding adatum-edge1) carries a mail
# stream through H2 and H3.
SURVIVOR=""
scenario_etcd_member_killed() {
    local before after leader v ms
    SURVIVOR=$(org_status | jq -r '.[] | select(.edge == "adatum-edge1") | .lease_holder')
    case "$SURVIVOR" in adatum-hub) SURVIVOR=adatum-hub2 ;; adatum-hub2) SURVIVOR=adatum-hub ;; *) fail "no hub holds adatum-edge1: $(lease_table)" ;; esac
    stream_start hubs "$SURVIVOR" kim@adatum.com david@northwindtraders.com 0.2
    # The Raft leader: the harder member to lose.
    leader=$(docker exec adatum-etcd1 /usr/bin/etcdctl --endpoints=http://adatum-etcd1:2379,http://adatum-etcd2:2379,http://adatum-etcd3:2379 \
        endpoint status -w json | jq -r '.[] | select(.Status.leader == .Status.header.member_id) | .Endpoint' | sed 's#http://##; s#:2379##')
    [ -n "$leader" ] || fail "no etcd leader found"
    log "scenario H2: $leader (the etcd leader) killed; nothing changes"
    before=$(lease_table)
    docker kill "$leader" >/dev/null
    v=$(hub_version adatum-hub)
    t0=$(now_ms)
    pn adatum-hub2 accepted-domain new etcd-member-down.example >/dev/null || fail "a write failed with one etcd member down"
    wait_until "the change with $leader down on every edge" 60 org_in_sync $((v + 1)) "${ADATUM_EDGES[@]}"
    ms=$(( $(now_ms) - t0 ))
    sleep 6   # longer than the EdgeSync lease TTL (5 s): a lease that lapsed would show
    after=$(lease_table)
    [ "$after" = "$before" ] || fail "the leases moved with one etcd member down: before [$before] after [$after]"
    org_status | jq -e 'all(.[]; .status == "in-sync")' >/dev/null || fail "an edge is out of sync with one etcd member down: $(org_status | jq -c 'map({edge, status})')"
    [ "$(stream_acked hubs)" -gt 0 ] && [ ! -s "$tmp/stream-hubs.refused" ] || fail "mail submission at $SURVIVOR failed with one etcd member down"
    echo "    leases unchanged (edge holder token): $(tr '\n' ';' <<<"$after"); $(stream_acked hubs) messages acked at $SURVIVOR so far"
    figure "H2. one etcd member ($leader, the leader) killed: write on adatum-hub2 to every edge's ack" "$ms ms; no lease moved, no edge out of sync"
    docker start "$leader" >/dev/null
    wait_healthy "$leader"
}

scenario_lease_holder_killed() {
    local holder=adatum-hub rev t_kill held_ms sync_ms v ms acked refused d c e tok lost n_in=3 i din
    [ "$SURVIVOR" = adatum-hub ] && holder=adatum-hub2
    rev=$(org_status | jq -r '.[] | select(.edge == "adatum-edge1") | .lease_revision')
    log "scenario H3: docker kill $holder (holding adatum-edge1, token $rev); $SURVIVOR takes over"
    docker kill "$holder" >/dev/null
    t_kill=$(now_ms)
    ADATUM_HUBS=("$SURVIVOR")
    wait_until "$SURVIVOR holds adatum-edge1" 60 sh -c \
        "docker exec $SURVIVOR /postern edgesync test --json | jq -e --argjson r $rev '.[] | select(.edge == \"adatum-edge1\") | .lease_holder == \"$SURVIVOR\" and .lease_revision > \$r' >/dev/null"
    held_ms=$(( $(now_ms) - t_kill ))
    wait_until "$SURVIVOR streams to every edge in sync" 90 hub_holds "$SURVIVOR" "${ADATUM_EDGES[@]}"
    sync_ms=$(( $(now_ms) - t_kill ))
    for e in "${ADATUM_EDGES[@]}"; do
        tok=$(hub_status "$SURVIVOR" | jq -r --arg e "$e" '.[] | select(.edge == $e) | .lease_revision')
        [ "$(pn "$e" edgesync test --json | jq '.[0].lease_revision')" = "$tok" ] \
            || fail "$e holds fencing token $(pn "$e" edgesync test --json | jq '.[0].lease_revision'), $SURVIVOR streams under $tok"
    done
    echo "    leases now (edge holder token): $(lease_table | tr '\n' ';')"
    v=$(hub_version "$SURVIVOR")
    t0=$(now_ms)
    pn "$SURVIVOR" transport-config set --max-recipients 400 >/dev/null
    wait_until "a change after the take-over on every edge" 30 org_in_sync $((v + 1)) "${ADATUM_EDGES[@]}"
    ms=$(( $(now_ms) - t0 ))
    # Mail from northwind to the mailbox homed on the hub that is left (kim
    # on adatum-hub, lee on adatum-hub2, H4): the adatum edges must hand it
    # to that hub. (Mail for the killed hub's mailboxes waits in a queue
    # until it returns, issue 16; tests/tests/mailbox_homes.rs.)
    local home_user=kim
    [ "$SURVIVOR" = adatum-hub2 ] && home_user=lee
    for i in $(seq 1 $n_in); do
        submit northwind-hub david@northwindtraders.com "$home_user@adatum.com" "e2e-hubs-in-$$-$i" \
            || fail "submission at northwind-hub refused: $(tail -5 "$tmp/swaks.last")"
    done
    local deadline=$((SECONDS + 30)) before_kill
    before_kill=$(stream_acked hubs)
    until [ "$(stream_acked hubs)" -ge $((before_kill + 5)) ]; do
        [ $SECONDS -lt $deadline ] || break
        sleep 1
    done
    stream_stop hubs
    read -r acked refused <"$tmp/stream-hubs.result"
    [ "$refused" = 0 ] || fail "H3: $refused submissions refused at $SURVIVOR"
    wait_until "$acked streamed messages in david's Maildir" 300 at_least northwind-hub northwindtraders.com david "e2e-hubs-" "$acked"
    d=$(delivered northwind-hub northwindtraders.com david "e2e-hubs-")
    c=$(copies northwind-hub northwindtraders.com david "e2e-hubs-")
    lost=$(( acked > d ? acked - d : 0 ))
    [ "$lost" = 0 ] || fail "H3: $acked acked, $d delivered"
    wait_until "$n_in messages from northwind in $home_user's Maildir" 180 adatum_at_least "$home_user" "e2e-hubs-in-$$-" "$n_in"
    din=$(delivered_adatum "$home_user" "e2e-hubs-in-$$-")
    echo "    mail submitted at $SURVIVOR across H2 and H3: $acked acked, $d delivered, $((c - d)) duplicates, $lost lost; northwind -> $home_user after the kill: $din of $n_in delivered"
    figure "H3. docker kill $holder to $SURVIVOR holding adatum-edge1's lease (TTL 5 s)" "$held_ms ms"
    figure "H3. docker kill $holder to $SURVIVOR streaming to all three edges in sync" "$sync_ms ms"
    figure "H3. change on $SURVIVOR after the take-over to every edge's ack (by polling)" "$ms ms"
    figure "H3. mail submitted at $SURVIVOR across an etcd member kill and the hub kill" "$acked acked, $d delivered, $((c - d)) duplicates, $lost lost, $refused refused; northwind -> $home_user (homed on $SURVIVOR) after the kill: $din of $n_in delivered"
}

scenario_propagation
scenario_domain_secured_mail
scenario_edge_certificate_replaced
scenario_hub_restart
scenario_third_edge
scenario_edge_cut_off short
scenario_edge_cut_off long
scenario_edge_killed_mid_stream
scenario_second_hub_joins
scenario_change_on_hub2
scenario_mailbox_home_on_hub2
scenario_etcd_member_killed
scenario_lease_holder_killed

printf '\n== figures (%s) ==\n' "$(date -u +%Y-%m-%dT%H:%MZ)"
printf '  %s\n' "${FIGURES[@]}"
echo "e2e.sh: PASSED in $SECONDS s"
