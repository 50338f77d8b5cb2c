#!/usr/bin/env bash
# The Postfix side of the bench: two Postfix instances on loopback, chained.
#
#   client --STARTTLS + client cert--> A (127.0.0.1:PORT_A, queues durably)
#          --mutual TLS, verified--> B (127.0.0.1:PORT_B) --virtual(8)--> Maildir
#
# Both instances run from their own config_directory/queue_directory/
# data_directory under one temp dir; nothing in /etc/postfix is changed.
# Durability is Postfix's default (cleanup and virtual fsync); only ports,
# names, TLS and routing are configured. A test CA and certificates are made
# with openssl each start.
#
# Usage (as root):
#   bench/postfix-chain.sh start   # prints KEY=VALUE lines on stdout:
#                                  # PORT_A MAILDIR CA CLIENT_CERT CLIENT_KEY TLS_NAME
#                                  # (and DIR PORT_B FROM TO for convenience)
#   bench/postfix-chain.sh stop    # stops both instances, removes the temp dir
#   bench/postfix-chain.sh smoke   # start, send one message with swaks, check the Maildir, stop
#
# Environment: PORT_A / PORT_B (default: free ports from 25250 up),
#   POSTFIX_CHAIN_STATE (default /tmp/postern-bench-postfix-chain.state),
#   POSTFIX_TLS_REUSE=yes to set smtp_tls_connection_reuse on A (not a
#   Postfix default, so off unless asked).
set -euo pipefail

STATE=${POSTFIX_CHAIN_STATE:-/tmp/postern-bench-postfix-chain.state}
SINK_USER=nobody

log() { echo "postfix-chain: $*" >&2; }
die() { log "$*"; exit 1; }

need_root() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (postfix start/stop, apt-get)"
}

ensure_postfix() {
    if [ ! -x /usr/sbin/postfix ]; then
        log "installing Debian's postfix"
        echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq postfix >/dev/null
    fi
    # The package may have started the default instance; we want only ours.
    if postfix status >/dev/null 2>&1; then
        log "stopping the default Postfix instance"
        postfix stop >/dev/null 2>&1 || true
    fi
    command -v openssl >/dev/null || die "openssl missing"
}

port_free() {
    # Nothing listening on 127.0.0.1:$1?
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pick_port() {
    local p=$1 avoid=${2:-}
    while ! port_free "$p" || [ "$p" = "$avoid" ]; do p=$((p + 1)); done
    echo "$p"
}

make_certs() {
    local d=$1
    mkdir -p "$d"
    (
        cd "$d"
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=Postern bench test CA" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -keyout ca.key -out ca.pem 2>/dev/null
        # name  SAN               EKU
        for spec in "node-a a.bench.test serverAuth,clientAuth" \
                    "node-b b.bench.test serverAuth,clientAuth" \
                    "client client.bench.test clientAuth"; do
            set -- $spec
            openssl req -newkey rsa:2048 -nodes -subj "/CN=$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
            printf 'subjectAltName=DNS:%s\nextendedKeyUsage=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n' \
                "$2" "$3" > "$1.ext"
            openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
                -extfile "$1.ext" -out "$1.pem" 2>/dev/null
            rm -f "$1.csr" "$1.ext"
        done
        chmod 644 ./*.pem
        chmod 600 ./*.key
    )
}

# write_instance NAME DIR PORT  -- main.cf/master.cf common to A and B.
write_instance() {
    local name=$1 dir=$2 port=$3
    mkdir -p "$dir/etc" "$dir/queue" "$dir/data"
    chown postfix "$dir/data"
    cp /etc/postfix/master.cf "$dir/etc/master.cf"
    cp /etc/postfix/dynamicmaps.cf "$dir/etc/dynamicmaps.cf" 2>/dev/null || true
    [ -d /etc/postfix/dynamicmaps.cf.d ] && cp -r /etc/postfix/dynamicmaps.cf.d "$dir/etc/"
    cat > "$dir/etc/main.cf" <<EOF
# Postfix instance $name of the Postern bench chain (generated).
compatibility_level = 3.6
config_directory = $dir/etc
queue_directory = $dir/queue
data_directory = $dir/data
myhostname = $name.bench.test
mydomain = bench.test
myorigin = \$myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
syslog_name = postfix-$name
maillog_file_prefixes = $dir
maillog_file = $dir/maillog
alias_maps =
alias_database =
local_recipient_maps =
biff = no
smtpd_banner = \$myhostname ESMTP
EOF
    # No chroot (the temp dir has no /etc, /lib copies) and smtpd on our port.
    postconf -c "$dir/etc" -F '*/*/chroot = n'
    postconf -c "$dir/etc" -MX smtp/inet
    postconf -c "$dir/etc" -M "127.0.0.1:$port/inet = 127.0.0.1:$port inet n - n - - smtpd"
}

start() {
    need_root
    ensure_postfix
    if [ -f "$STATE" ]; then
        log "a chain is already recorded in $STATE; stopping it first"
        stop
    fi
    local port_a port_b dir certs
    port_a=${PORT_A:-$(pick_port 25250)}
    port_b=${PORT_B:-$(pick_port $((port_a + 1)) "$port_a")}
    port_free "$port_a" || die "port $port_a is taken"
    port_free "$port_b" || die "port $port_b is taken"

    dir=$(mktemp -d /tmp/postern-bench-postfix.XXXXXX)
    chmod 755 "$dir"
    echo "$dir" > "$STATE"
    certs=$dir/certs
    make_certs "$certs"

    # --- B: the sink. TLS with required client certificate, delivers to Maildir.
    write_instance b "$dir/b" "$port_b"
    mkdir -p "$dir/mail"
    chown "$SINK_USER:" "$dir/mail"
    printf 'b@sink.test sink.test/b/\n' > "$dir/b/etc/vmailbox"
    cat >> "$dir/b/etc/main.cf" <<EOF
smtpd_tls_security_level = encrypt
smtpd_tls_cert_file = $certs/node-b.pem
smtpd_tls_key_file = $certs/node-b.key
smtpd_tls_CAfile = $certs/ca.pem
smtpd_tls_ask_ccert = yes
smtpd_tls_req_ccert = yes
smtpd_tls_loglevel = 1
virtual_mailbox_domains = sink.test
virtual_mailbox_base = $dir/mail
virtual_mailbox_maps = texthash:$dir/b/etc/vmailbox
virtual_uid_maps = static:$(id -u "$SINK_USER")
virtual_gid_maps = static:$(id -g "$SINK_USER")
virtual_minimum_uid = 1
EOF

    # --- A: the front. TLS with required client certificate, relays everything
    # to B over mutual TLS, verifying B's certificate against the test CA.
    write_instance a "$dir/a" "$port_a"
    printf '[127.0.0.1]:%s verify match=b.bench.test\n' "$port_b" > "$dir/a/etc/tls_policy"
    cat >> "$dir/a/etc/main.cf" <<EOF
smtpd_tls_security_level = encrypt
smtpd_tls_cert_file = $certs/node-a.pem
smtpd_tls_key_file = $certs/node-a.key
smtpd_tls_CAfile = $certs/ca.pem
smtpd_tls_ask_ccert = yes
smtpd_tls_req_ccert = yes
smtpd_tls_loglevel = 1
relayhost = [127.0.0.1]:$port_b
smtp_tls_security_level = verify
smtp_tls_policy_maps = texthash:$dir/a/etc/tls_policy
smtp_tls_CAfile = $certs/ca.pem
smtp_tls_cert_file = $certs/node-a.pem
smtp_tls_key_file = $certs/node-a.key
smtp_tls_loglevel = 1
EOF
    if [ "${POSTFIX_TLS_REUSE:-no}" = yes ]; then
        echo "smtp_tls_connection_reuse = yes" >> "$dir/a/etc/main.cf"
        postconf -c "$dir/a/etc" -M "tlsproxy/unix = tlsproxy unix - - n - 0 tlsproxy"
    fi

    local inst
    for inst in b a; do
        postfix -c "$dir/$inst/etc" check >&2 || die "postfix check failed for $inst"
        postfix -c "$dir/$inst/etc" start >&2 || die "postfix start failed for $inst (see $dir/$inst/maillog)"
    done
    local i
    for i in $(seq 1 100); do
        if ! port_free "$port_a" && ! port_free "$port_b"; then break; fi
        sleep 0.1
    done
    port_free "$port_a" && die "instance A not listening on $port_a (see $dir/a/maillog)"

    cat <<EOF
PORT_A=$port_a
PORT_B=$port_b
MAILDIR=$dir/mail/sink.test/b
CA=$certs/ca.pem
CLIENT_CERT=$certs/client.pem
CLIENT_KEY=$certs/client.key
TLS_NAME=a.bench.test
FROM=a@bench.test
TO=b@sink.test
DIR=$dir
EOF
}

stop() {
    need_root
    [ -f "$STATE" ] || { log "no chain recorded in $STATE"; return 0; }
    local dir
    dir=$(cat "$STATE")
    case $dir in /tmp/postern-bench-postfix.*) ;; *) die "refusing to remove '$dir'";; esac
    local inst
    for inst in a b; do
        if [ -f "$dir/$inst/etc/main.cf" ]; then
            postfix -c "$dir/$inst/etc" stop >/dev/null 2>&1 || true
        fi
    done
    # master exits asynchronously; wait for its pid files to go.
    local i
    for i in $(seq 1 50); do
        if ! postfix -c "$dir/a/etc" status >/dev/null 2>&1 && ! postfix -c "$dir/b/etc" status >/dev/null 2>&1; then
            break
        fi
        sleep 0.1
    done
    rm -rf "$dir"
    rm -f "$STATE"
    log "stopped and removed $dir"
}

smoke() {
    need_root
    # swaks needs these Perl modules for --tls.
    if ! perl -MIO::Socket::SSL -MNet::SSLeay -e1 2>/dev/null || ! command -v swaks >/dev/null; then
        log "installing swaks and its TLS modules"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq swaks libnet-ssleay-perl libio-socket-ssl-perl >/dev/null
    fi
    local env
    env=$(start)
    eval "$env"
    log "sending one message to 127.0.0.1:$PORT_A with swaks"
    swaks --server "127.0.0.1:$PORT_A" --from "$FROM" --to "$TO" --ehlo smoke.bench.test \
        --tls --tls-cert "$CLIENT_CERT" --tls-key "$CLIENT_KEY" \
        --tls-verify --tls-ca-path "$CA" --tls-sni "$TLS_NAME" \
        --header "Subject: postfix-chain smoke" >&2 || { stop; die "swaks failed"; }
    local i n=0
    for i in $(seq 1 100); do
        n=$( (find "$MAILDIR/new" "$MAILDIR/cur" -type f 2>/dev/null || true) | wc -l)
        [ "$n" -ge 1 ] && break
        sleep 0.1
    done
    if [ "$n" -ge 1 ]; then
        log "delivered $n message(s) into $MAILDIR"
        stop
        echo "smoke: ok"
    else
        log "nothing in $MAILDIR after 10 s; logs:"
        tail -20 "$DIR/a/maillog" "$DIR/b/maillog" >&2 || true
        stop
        die "smoke: FAILED"
    fi
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    smoke) smoke ;;
    certs) make_certs "${2:?usage: $0 certs DIR}" ;;
    *) echo "usage: $0 start|stop|smoke|certs DIR" >&2; exit 2 ;;
esac
