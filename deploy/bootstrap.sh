#!/usr/bin/env bash
# Bootstraps the two organisations of deploy/docker-compose.yml once their
# nodes are up: test PKI, node certificates, edge subscriptions and the
# seed's domain-security settings. Idempotent: run it again and it skips
# what is done.
#
#   deploy/bootstrap.sh                 # both organisations
#   deploy/bootstrap.sh adatum-edge3    # subscribe one more adatum edge
#   deploy/bootstrap.sh adatum-hub2     # a second adatum hub (etcd): its
#                                       # certificate and client connector
#
# The image has no shell, so everything is driven from this host: openssl
# makes the certificates, `docker exec -i … /postern … --path /dev/stdin`
# feeds files to the CLI inside a container (no key file is left in a
# container), and `docker cp` carries a subscription file from an edge's
# data dir to the host.
#
# PKI model: each organisation has its own test root CA (deploy/pki/<org>/,
# made once, kept between runs, never committed) that issues its nodes'
# SMTP certificates; each hub trusts the partner organisation's root with
# `trusted-root add`, and EdgeSync replicates it to that hub's edges.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
export PKI_DIR="${PKI_DIR:-$here/pki}"
WORK="${WORK:-$(mktemp -d)}"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bootstrap.sh: %s\n' "$*" >&2; exit 1; }

# postern in a container: `pn CONTAINER ARGS…`; `pn_in` also passes stdin.
pn() { local c=$1; shift; docker exec "$c" /postern "$@"; }
pn_in() { local c=$1; shift; docker exec -i "$c" /postern "$@"; }

# `has TEXT CMD…`: CMD succeeds and its output holds TEXT. (Not `CMD | grep
# -q`: under pipefail an early grep exit can fail the pipeline.)
has() {
    local text=$1 out; shift
    out="$("$@")" || die "$*: failed"
    [[ "$out" == *"$text"* ]]
}

# Runs a `new` verb and treats "already exists" as done.
pn_new() {
    local c=$1; shift
    local err
    if ! err="$(pn "$c" "$@" 2>&1 >/dev/null)"; then
        case "$err" in
            *"already exists"*) ;;
            *) die "$c: postern $*: $err" ;;
        esac
    fi
}

org_domain() { case "$1" in adatum) echo adatum.com ;; northwind) echo northwindtraders.com ;; esac; }
org_title() { case "$1" in adatum) echo "A. Datum Corporation" ;; northwind) echo "Northwind Traders" ;; esac; }
partner_of() { case "$1" in adatum) echo northwind ;; northwind) echo adatum ;; esac; }
org_of() { echo "${1%%-*}"; }
# FQDN of a node, from the compose file's naming: adatum-edge1 -> edge1.adatum.com
fqdn_of() { echo "${1#*-}.$(org_domain "$(org_of "$1")")"; }
hub_of() { echo "$(org_of "$1")-hub"; }

wait_healthy() {
    local c deadline=$((SECONDS + ${HEALTH_TIMEOUT:-120})) state
    for c in "$@"; do
        while :; do
            state="$(docker inspect -f '{{.State.Health.Status}}' "$c" 2>/dev/null || echo missing)"
            [ "$state" = healthy ] && break
            [ $SECONDS -lt $deadline ] || die "$c is not healthy ($state) after ${HEALTH_TIMEOUT:-120} s"
            sleep 0.5
        done
    done
}

# ---------------------------------------------------------------- PKI
make_ca() {
    local org=$1 dir="$PKI_DIR/$1"
    [ -s "$dir/ca.pem" ] && return 0
    log "test root CA for $(org_domain "$org")"
    mkdir -p "$dir"
    chmod 0700 "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 \
        -keyout "$dir/ca.key" -out "$dir/ca.pem" \
        -subj "/O=$(org_title "$org")/CN=$(org_title "$org") Test Root CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

make_node_cert() {
    local node=$1 org dir fqdn domain
    org="$(org_of "$node")"; dir="$PKI_DIR/$org"; fqdn="$(fqdn_of "$node")"; domain="$(org_domain "$org")"
    [ -s "$dir/$node.bundle.pem" ] && return 0
    log "certificate for $node ($fqdn)"
    openssl req -new -newkey rsa:2048 -nodes -keyout "$dir/$node.key" -out "$dir/$node.csr" \
        -subj "/O=$(org_title "$org")/CN=$fqdn" 2>/dev/null
    printf '%s\n' \
        "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth,clientAuth" \
        "subjectAltName=DNS:$fqdn,DNS:mail.$domain,DNS:$domain" >"$dir/$node.ext"
    openssl x509 -req -in "$dir/$node.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
        -CAcreateserial -days 825 -sha256 -extfile "$dir/$node.ext" -out "$dir/$node.pem" 2>/dev/null
    # Leaf, issuer, key: what `cert import` takes as one PEM file.
    cat "$dir/$node.pem" "$dir/ca.pem" "$dir/$node.key" >"$dir/$node.bundle.pem"
    chmod 0600 "$dir/$node.key" "$dir/$node.bundle.pem"
}

thumbprint() { openssl x509 -in "$1" -noout -fingerprint -sha1 | sed 's/.*=//; s/://g'; }

# Import-ExchangeCertificate … | Enable-ExchangeCertificate -Services SMTP
import_cert() {
    local node=$1 org tp
    org="$(org_of "$node")"
    tp="$(thumbprint "$PKI_DIR/$org/$node.pem")"
    if has "\"$tp\"" pn "$node" cert list --json; then
        return 0
    fi
    log "$node: cert import $tp --enable-services smtp"
    pn_in "$node" cert import --path /dev/stdin --enable-services smtp \
        --friendly-name "Internet certificate for $(fqdn_of "$node")" \
        <"$PKI_DIR/$org/$node.bundle.pem" >/dev/null
}

# ------------------------------------------------------- subscriptions
subscribe() {
    local edge=$1 hub
    hub="$(hub_of "$edge")"
    if has "\"name\": \"$edge\"" pn "$hub" edge-subscription list --json; then
        return 0
    fi
    log "$edge: edge-subscription new; $hub: edge-subscription import"
    pn "$edge" edge-subscription new --file /data/edge.sub \
        --edgesync-endpoint "$edge:50636" --smtp-endpoint "$edge:25" 2>/dev/null
    docker cp "$edge:/data/edge.sub" "$WORK/$edge.sub"
    pn_in "$hub" edge-subscription import --file /dev/stdin <"$WORK/$edge.sub" >/dev/null
}

# ----------------------------------------------- the seed's settings
configure_hub() {
    local org=$1 hub="$1-hub" domain partner pdomain
    domain="$(org_domain "$org")"; partner="$(partner_of "$org")"; pdomain="$(org_domain "$partner")"
    log "$hub: domain security with $pdomain, accepted domain $domain, mailbox, Internet connector"
    # Set-TransportConfig -TLSSendDomainSecureList / -TLSReceiveDomainSecureList
    pn "$hub" transport-config set \
        --tls-send-domain-secure-list "$pdomain" --tls-receive-domain-secure-list "$pdomain" >/dev/null
    pn_new "$hub" accepted-domain new "$domain"
    case "$org" in
        adatum) pn_new "$hub" mailbox new "kim@$domain" ;;
        northwind) pn_new "$hub" mailbox new "david@$domain" ;;
    esac
    if ! has "\"$(thumbprint "$PKI_DIR/$partner/ca.pem")\"" pn "$hub" trusted-root list --json; then
        pn_in "$hub" trusted-root add --path /dev/stdin <"$PKI_DIR/$partner/ca.pem" >/dev/null
    fi
    pn_new "$hub" send-connector new Internet --address-spaces '*;100' --dns-routing-enabled
    pn "$hub" send-connector set Internet --domain-secure-enabled --protocol-logging-level verbose >/dev/null
    # Mail flow: client submission on the hub (for hosts on the Docker
    # networks and loopback), and a domain-secured connector to the
    # partner's edges by container name on the internet network (smart
    # hosts, not MX: no DNS container). Its source edges are node names;
    # adatum-edge3 is listed before it exists so that it can carry partner
    # mail the moment it is subscribed.
    pn_new "$hub" receive-connector new "Client $hub" --bindings 0.0.0.0:587 --permission-groups clients \
        --remote-ip-ranges 172.16.0.0/12,10.0.0.0/8,127.0.0.0/8,192.168.0.0/16
    pn_new "$hub" send-connector new Partner --address-spaces "$pdomain;10" \
        --smart-hosts "$(org_edges "$partner" | sed 's/\([^,]*\)/\1:25/g')" \
        --tls-domain "$pdomain" --source-edges "$(org_edges "$org" all)"
    pn "$hub" send-connector set Partner --domain-secure-enabled --protocol-logging-level verbose >/dev/null
}

# A further hub of an organisation (adatum-hub2): the organisation's
# settings are shared on etcd already; what is per node is its client
# submission connector.
configure_extra_hub() {
    local hub=$1
    log "$hub: client submission connector (the organisation's settings come from etcd)"
    pn_new "$hub" receive-connector new "Client $hub" --bindings 0.0.0.0:587 --permission-groups clients \
        --remote-ip-ranges 172.16.0.0/12,10.0.0.0/8,127.0.0.0/8,192.168.0.0/16
}

# The edges of an organisation, comma-separated (with "all": adatum-edge3 too).
org_edges() {
    case "$1" in
        adatum) if [ "${2:-}" = all ]; then echo adatum-edge1,adatum-edge2,adatum-edge3; else echo adatum-edge1,adatum-edge2; fi ;;
        northwind) echo northwind-edge ;;
    esac
}

# Set-ReceiveConnector -DomainSecureEnabled -AuthMechanism TLS -ProtocolLoggingLevel Verbose
# on an edge's default receive connector (per node, not replicated).
configure_edge() {
    local edge=$1
    pn "$edge" receive-connector set "Default internal receive connector $edge" \
        --domain-secure-enabled --auth-mechanism tls --protocol-logging-level verbose >/dev/null
}

main() {
    command -v openssl >/dev/null || die "openssl is needed on this host"
    local nodes=("$@")
    if [ ${#nodes[@]} -eq 0 ]; then
        nodes=(adatum-hub adatum-edge1 adatum-edge2 northwind-hub northwind-edge)
    fi
    wait_healthy "${nodes[@]}"
    local n org
    for org in adatum northwind; do make_ca "$org"; done
    for n in "${nodes[@]}"; do
        org="$(org_of "$n")"
        wait_healthy "$(hub_of "$n")"
        make_node_cert "$n"
        import_cert "$n"
    done
    for n in "${nodes[@]}"; do
        case "$n" in *-hub | *-hub[0-9]*) ;; *) subscribe "$n"; configure_edge "$n" ;; esac
    done
    for n in "${nodes[@]}"; do
        case "$n" in
            *-hub) configure_hub "$(org_of "$n")" ;;
            *-hub[0-9]*) configure_extra_hub "$n" ;;
        esac
    done
    log "bootstrap done: ${nodes[*]}"
}

main "$@"
