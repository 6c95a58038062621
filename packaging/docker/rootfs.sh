#!/usr/bin/env bash
# rootfs.sh BINARY OUT.tar: the whole file system of the dynwall image as one tar, which the
# Dockerfile ADDs to an empty image (both of its build paths use this script):
#
#   /usr/local/bin/dynwall   the static binary (root, 0755); CA roots are compiled into it
#   /etc/passwd, /etc/group  root and the runtime user dynwall, uid/gid 65532, no shell
#   /var/lib/dynwall         the state directory, owned by 65532, mode 0700: a named volume
#                            mounted there is created with this owner and mode
#
# Owners and modes are set in the archive, so no shell is needed in the image. Reproducible:
# fixed times, sorted names.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 BINARY OUT.tar" >&2; exit 2; }
bin="$1"
out="$2"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
install -d -m 0755 "$stage/etc" "$stage/usr/local/bin" "$stage/var/lib"
install -d -m 0700 "$stage/var/lib/dynwall"
install -m 0755 "$bin" "$stage/usr/local/bin/dynwall"
cat >"$stage/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
dynwall:x:65532:65532:dynwall:/var/lib/dynwall:/sbin/nologin
PASSWD
cat >"$stage/etc/group" <<'GROUP'
root:x:0:
dynwall:x:65532:
GROUP
chmod 0644 "$stage/etc/passwd" "$stage/etc/group"

common=(--sort=name --mtime=@0 --numeric-owner --format=gnu -C "$stage")
tar "${common[@]}" --owner=0 --group=0 -cf "$out" --no-recursion \
    etc etc/passwd etc/group usr usr/local usr/local/bin usr/local/bin/dynwall var var/lib
tar "${common[@]}" --owner=65532 --group=65532 -rf "$out" --no-recursion var/lib/dynwall
