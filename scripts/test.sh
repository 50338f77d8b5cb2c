#!/usr/bin/env bash
# Postern's test command: installs the real peers the tests talk to
# (openssl, swaks with its TLS modules, Postfix and its smtp-sink, dnsmasq,
# etcd, Dovecot's LMTP server, Chromium and curl for the console) and the
# build's protoc
# when they are missing, then runs every test of the workspace. Usage: scripts/test.sh [extra nextest/cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v swaks >/dev/null 2>&1 || need+=(swaks)
# swaks --tls needs these (only recommended by the swaks package).
perl -MNet::SSLeay -MIO::Socket::SSL -e1 >/dev/null 2>&1 || need+=(libnet-ssleay-perl libio-socket-ssl-perl)
command -v dnsmasq >/dev/null 2>&1 || need+=(dnsmasq-base)
[ -x /usr/sbin/smtp-sink ] && [ -x /usr/sbin/postfix ] || need+=(postfix)
# DKIM/ARC signing and verifying peers (issue 18): dkimpy with dnspython
# and authres (for arcsign), and OpenDKIM's tools.
/usr/bin/python3 -c 'import dkim, dns.resolver, authres' >/dev/null 2>&1 || need+=(python3-dkim python3-dnspython python3-authres)
command -v opendkim-testmsg >/dev/null 2>&1 || need+=(opendkim-tools)
# DANE tests: Knot DNS serves a zone signed with BIND's dnssec-signzone.
[ -x /usr/sbin/knotd ] && command -v kdig >/dev/null 2>&1 || need+=(knot knot-dnsutils)
command -v dnssec-signzone >/dev/null 2>&1 || need+=(bind9-utils)
# LMTP delivery to a mailbox server (issue 16): Dovecot's master and lmtp.
[ -x /usr/sbin/dovecot ] && [ -x /usr/lib/dovecot/lmtp ] || need+=(dovecot-core dovecot-lmtpd)
# etcd-client's build script runs protoc with the well-known types.
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/descriptor.proto ] || need+=(libprotobuf-dev)
# Several hubs: a real etcd cluster (etcd) and etcdctl.
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
# The console tests drive a headless browser and make their POSTs with curl.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v curl >/dev/null 2>&1 || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
    echo "scripts/test.sh: installing ${need[*]} from Debian's packages" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    # Postfix is a test peer here, never the machine's MTA.
    echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Incremental compilation state is several GB that a one-off run never reuses;
# CI machines have run out of disk with it.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# Long tests are #[ignore]d for a plain `cargo nextest run`; run them too.
status=0
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast "$@" || status=$?
    cargo nextest run -p postern-tests --test exactly_once --run-ignored ignored-only --no-fail-fast "$@" || status=$?
else
    cargo test --workspace --no-fail-fast "$@" || status=$?
    cargo test -p postern-tests --test exactly_once --no-fail-fast "$@" -- --ignored || status=$?
fi
exit $status
