#!/usr/bin/env bash
# EdgeSync lease take-over after kill -9 of the hub holding an edge, with
# processes: a three-member etcd on loopback (Debian's etcd), two hubs with
# --store etcd and one edge. Each round kills the holder with SIGKILL,
# measures until the other hub reports itself the edge's lease holder and
# in sync (polling `postern edgesync test` every 100 ms), then starts the
# killed hub again (it stands by). Prints one line per round and a summary.
#
#   bench/etcd-takeover.sh [ROUNDS]        (default 5)
#   POSTERN=target/release/postern bench/etcd-takeover.sh
set -euo pipefail
rounds="${1:-5}"
root="$(cd "$(dirname "$0")/.." && pwd)"
postern="${POSTERN:-$root/target/debug/postern}"
[ -x "$postern" ] || { echo "build postern first (cargo build -p postern-cli)" >&2; exit 2; }
work="$(mktemp -d)"
pids=()
cleanup() {
    exec 2>/dev/null
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { date +%s%3N; }

# etcd: three members.
declare -a client peer
for n in 1 2 3; do client[$n]=$(port); peer[$n]=$(port); done
initial="e1=http://127.0.0.1:${peer[1]},e2=http://127.0.0.1:${peer[2]},e3=http://127.0.0.1:${peer[3]}"
for n in 1 2 3; do
    etcd --name "e$n" --data-dir "$work/e$n" \
        --listen-client-urls "http://127.0.0.1:${client[$n]}" --advertise-client-urls "http://127.0.0.1:${client[$n]}" \
        --listen-peer-urls "http://127.0.0.1:${peer[$n]}" --initial-advertise-peer-urls "http://127.0.0.1:${peer[$n]}" \
        --initial-cluster "$initial" --initial-cluster-state new \
        --heartbeat-interval 50 --election-timeout 500 >"$work/e$n.log" 2>&1 &
    pids+=($!)
done
endpoints="http://127.0.0.1:${client[1]},http://127.0.0.1:${client[2]},http://127.0.0.1:${client[3]}"
until etcdctl --endpoints "$endpoints" put /bench/health ok >/dev/null 2>&1; do sleep 0.2; done

declare -A hubpid
start_hub() {
    local n=$1
    "$postern" hub run --data-dir "$work/hub$n" --fqdn "hub$n.adatum.com" --smtp-bind "127.0.0.1:$(port)" \
        --store etcd --etcd-endpoints "$endpoints" >>"$work/hub$n.log" 2>&1 &
    hubpid[$n]=$!
    pids+=($!)
    until "$postern" --node "$work/hub$n" node-info >/dev/null 2>&1; do sleep 0.1; done
}
start_hub 1
start_hub 2
"$postern" edge run --data-dir "$work/edge1" --fqdn edge1.adatum.com --smtp-bind "127.0.0.1:$(port)" \
    --edgesync-bind "127.0.0.1:$(port)" >"$work/edge1.log" 2>&1 &
pids+=($!)
until "$postern" --node "$work/edge1" node-info >/dev/null 2>&1; do sleep 0.1; done
"$postern" --node "$work/hub1" accepted-domain new adatum.com >/dev/null
"$postern" --node "$work/edge1" edge-subscription new --file "$work/edge1.sub" >/dev/null
"$postern" --node "$work/hub1" edge-subscription import --file "$work/edge1.sub" >/dev/null

field() { "$postern" --node "$work/hub$1" edgesync test --json | jq -r --arg f "$2" '.[] | select(.edge == "edge1") | .[$f]'; }
holds() { [ "$(field "$1" lease_holder)" = "hub$1" ] && [ "$(field "$1" status)" = "in-sync" ]; }

until holds 1 || holds 2; do sleep 0.1; done
times=()
for r in $(seq 1 "$rounds"); do
    if holds 1; then dead=1; alive=2; else dead=2; alive=1; fi
    t0=$(now_ms)
    kill -9 "${hubpid[$dead]}"
    until holds "$alive"; do sleep 0.1; done
    ms=$(( $(now_ms) - t0 ))
    times+=("$ms")
    echo "round $r: hub$dead killed, hub$alive holds edge1 and is in sync after ${ms} ms"
    start_hub "$dead"
    sleep 1
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
median=$(echo "$sorted" | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)}')
echo "take-over after kill -9: rounds=$rounds median=${median} ms min=$(echo "$sorted" | head -1) ms max=$(echo "$sorted" | tail -1) ms (lease TTL 5 s, retry 0.5 s)"
