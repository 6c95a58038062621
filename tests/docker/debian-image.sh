#!/usr/bin/env bash
# debian-image.sh: a Debian 12 root file system with systemd, made here (debootstrap from
# Debian's mirror, then `docker import`), for the tests that boot systemd in a container.
# Prints the image's tag on stdout. The image is the cache: its tag is a hash of this file, and
# when it exists this does nothing, so only the first run (or a changed recipe) pays the ~2-3
# minutes. .ci/run removes these images first, so CI always builds from nothing.
set -euo pipefail
tag="dynwall-test-debian:$(sha256sum "$0" | cut -c1-16)"

# One build at a time on this machine (two test processes, or CI's early start of it).
exec 9>/var/tmp/dynwall-test-debian.lock
flock 9
if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "$tag: cached" >&2
    echo "$tag"
    exit 0
fi
if ! command -v debootstrap >/dev/null 2>&1; then
    echo "debootstrap is not installed (apt-get install debootstrap)" >&2
    exit 1
fi

root="$(mktemp -d /var/tmp/dynwall-test-rootfs.XXXXXX)"
trap 'rm -rf "$root"' EXIT
start=$SECONDS
# systemd as PID 1; iproute2 to give the container an interface with a public address.
debootstrap --variant=minbase --include=systemd,systemd-sysv,iproute2 \
    bookworm "$root" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$root.log" 2>&1 \
    || { tail -n 30 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
# No getty on a console that is not there.
ln -sf /dev/null "$root/etc/systemd/system/getty.target"
tar -C "$root" -c --numeric-owner . \
    | docker import --change 'ENV container=docker' --change 'CMD ["/sbin/init"]' - "$tag" >/dev/null
echo "$tag: built in $((SECONDS - start)) s" >&2
echo "$tag"
