#!/usr/bin/env bash
# Builds the static `postern` binary and the image postern:latest (FROM
# scratch), and the etcd image postern-etcd:latest (FROM scratch: Debian's
# etcd and the libraries it links). Idempotent: cargo and docker reuse
# what has not changed. Prints the postern image id on the last line of
# standard output.
#
#   deploy/build-images.sh            # postern:latest, postern-etcd:latest
#   IMAGE=postern:dev ETCD_IMAGE=postern-etcd:dev deploy/build-images.sh
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
image="${IMAGE:-postern:latest}"
etcd_image="${ETCD_IMAGE:-postern-etcd:latest}"
triple=x86_64-unknown-linux-gnu
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"

if ! docker info >/dev/null 2>&1; then
    echo "build-images.sh: no Docker engine answers (docker info failed)" >&2
    exit 2
fi

# etcd-client's build script compiles etcd's protos with protoc and the
# well-known types (Debian: protobuf-compiler, libprotobuf-dev).
if ! command -v protoc >/dev/null || [ ! -f /usr/include/google/protobuf/descriptor.proto ]; then
    echo "build-images.sh: needs protoc and its well-known types: apt-get install protobuf-compiler libprotobuf-dev" >&2
    exit 2
fi

# The libraries of etcd and etcdctl, one absolute path a line.
etcd_libs() {
    ldd /usr/bin/etcd /usr/bin/etcdctl | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// && $2 != "=>" && $1 !~ /:$/ {print $1}' | sort -u
}

# The etcd image: Debian's binaries (etcd-server, etcd-client) and every
# library `ldd` lists for them, at the paths they name.
build_etcd_image() {
    local ctx lib bin
    for bin in /usr/bin/etcd /usr/bin/etcdctl; do
        if [ ! -x "$bin" ]; then
            echo "build-images.sh: $bin is missing: apt-get install etcd-server etcd-client" >&2
            exit 2
        fi
    done
    ctx="$(mktemp -d)"
    mkdir -p "$ctx/rootfs/usr/bin" "$ctx/rootfs/tmp" "$ctx/rootfs/var/lib/etcd"
    chmod 1777 "$ctx/rootfs/tmp"
    chmod 0700 "$ctx/rootfs/var/lib/etcd"
    cp /usr/bin/etcd /usr/bin/etcdctl "$ctx/rootfs/usr/bin/"
    # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (…)" and
    # "/lib64/ld-linux-x86-64.so.2 (…)": the absolute path of each.
    for lib in $(etcd_libs); do
        mkdir -p "$ctx/rootfs$(dirname "$lib")"
        cp -L "$lib" "$ctx/rootfs$lib"
    done
    tar -cf "$ctx/rootfs.tar" --numeric-owner --mtime=@0 --sort=name --owner=0 --group=0 -C "$ctx/rootfs" .
    cp "$here/etcd/Dockerfile" "$ctx/Dockerfile"
    echo "==> docker build -t $etcd_image (etcd, etcdctl, $(etcd_libs | tr '\n' ' '))" >&2
    DOCKER_BUILDKIT=0 docker build -q -t "$etcd_image" "$ctx" >/dev/null
    rm -rf "$ctx"
}
build_etcd_image

# Static glibc binary (DEPENDENCIES.md, "Static binary for FROM scratch").
# --target is named explicitly so that build scripts are not built static.
echo "==> cargo build --release --target $triple -p postern-cli (static)" >&2
(
    cd "$root"
    RUSTFLAGS='-C target-feature=+crt-static --cfg getrandom_backend="linux_getrandom"' \
        cargo build --release --target "$triple" -p postern-cli
)
bin="$CARGO_TARGET_DIR/$triple/release/postern"
if ldd "$bin" 2>&1 | grep -q '=>'; then
    echo "build-images.sh: $bin is dynamically linked; it cannot run FROM scratch" >&2
    exit 1
fi

# A small build context: the Dockerfile, the binary and a rootfs tarball,
# never target/ wholesale.
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp "$here/Dockerfile" "$ctx/Dockerfile"
cp "$bin" "$ctx/postern"
# Debug symbols are of no use in the image (18 MB -> about half).
if command -v strip >/dev/null; then strip "$ctx/postern"; fi
mkdir -p "$ctx/rootfs/tmp" "$ctx/rootfs/data" "$ctx/rootfs/etc"
chmod 1777 "$ctx/rootfs/tmp"
chmod 0700 "$ctx/rootfs/data"
printf 'root:x:0:0:root:/:/sbin/nologin\npostern:x:10001:10001:postern:/data:/sbin/nologin\n' >"$ctx/rootfs/etc/passwd"
printf 'root:x:0:\npostern:x:10001:\n' >"$ctx/rootfs/etc/group"
# The system's trust roots at the path rustls-native-certs reads: the DNS
# resolver (hickory, with the DNSSEC and DNS-over-TLS features DKIM, DANE and
# MTA-STS bring in) refuses to build without any, and MTA-STS policies are
# fetched over HTTPS. The host's bundle (Debian's ca-certificates).
roots=/etc/ssl/certs/ca-certificates.crt
if [ ! -s "$roots" ]; then
    echo "build-images.sh: $roots is missing; install ca-certificates" >&2
    exit 1
fi
mkdir -p "$ctx/rootfs/etc/ssl/certs"
cp "$roots" "$ctx/rootfs/etc/ssl/certs/ca-certificates.crt"
chmod 0644 "$ctx/rootfs/etc/ssl/certs/ca-certificates.crt"
# Fixed times and numeric owners keep the tarball byte-identical from run
# to run, so docker's layer cache holds.
tarflags=(--numeric-owner --mtime=@0 --sort=name -C "$ctx/rootfs")
tar -cf "$ctx/rootfs.tar" "${tarflags[@]}" --owner=0 --group=0 etc tmp
tar -rf "$ctx/rootfs.tar" "${tarflags[@]}" --owner=10001 --group=10001 data
touch -d @0 "$ctx/postern" "$ctx/rootfs.tar"

echo "==> docker build -t $image" >&2
# The classic builder: this engine has no buildx/BuildKit client here.
DOCKER_BUILDKIT=0 docker build -q -t "$image" "$ctx" >/dev/null
docker image inspect --format '{{.Id}}' "$image"
