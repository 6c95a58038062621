#!/usr/bin/env bash
# Builds the Debian package (target/debian/dynwall_<version>-1_<arch>.deb) from the shared static
# release build (build-release.sh) and checks its contents: the binary, the three units, the
# conffile, the man page and the completions must be there, with the right modes; the control
# file must have a one-line synopsis and a maintainer with an address; the maintainer scripts
# must enable the daemon without starting it, leave the timer disabled, and clean /etc/dynwall
# and the state on purge. Exits non-zero on any miss.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

if ! cargo deb --version >/dev/null 2>&1; then
    echo "== installing cargo-deb (once)"
    cargo install cargo-deb --locked
fi

echo "== release build, man page and completions (shared with the .rpm and the image)"
bash packaging/build-release.sh >/dev/null

echo "== package"
rm -rf target/debian
# --target: the assets' target/release/ paths become target/x86_64-unknown-linux-gnu/release/.
cargo deb --locked --no-build --target x86_64-unknown-linux-gnu --output target/debian/
debs=(target/debian/dynwall_*.deb)
[ "${#debs[@]}" -eq 1 ] && [ -f "${debs[0]}" ] || { echo "expected one .deb, found: ${debs[*]}" >&2; exit 1; }
deb="${debs[0]}"
echo "$deb: $(stat -c %s "$deb") bytes"

echo "== contents"
contents="$(dpkg-deb -c "$deb")"
echo "$contents"
dpkg-deb -I "$deb"

failures=0
fail() {
    echo "CHECK FAILED: $*" >&2
    failures=$((failures + 1))
}
# has MODE PATH: the archive holds PATH (relative to /) with exactly MODE, owned by root.
has() {
    grep -qE "^$1 (root/root|0/0) +[0-9]+ [0-9-]+ [0-9:]+ \./$2\$" <<<"$contents" || fail "$2 with mode $1"
}
has '-rwxr-xr-x' 'usr/bin/dynwall'
# World-readable: the service's DynamicUser must read it; it holds no secrets.
has '-rw-r--r--' 'etc/dynwall/dynwall\.toml'
for unit in dynwall.service dynwall-once.service dynwall-once.timer; do
    has '-rw-r--r--' "usr/lib/systemd/system/${unit//./\\.}"
    cmp -s <(dpkg-deb --fsys-tarfile "$deb" | tar -xO "./usr/lib/systemd/system/$unit") "systemd/$unit" \
        || fail "$unit differs from systemd/$unit"
done
has '-rw-r--r--' 'usr/share/man/man1/dynwall\.1\.gz'
has '-rw-r--r--' 'usr/share/bash-completion/completions/dynwall'
has '-rw-r--r--' 'usr/share/zsh/vendor-completions/_dynwall'
has '-rw-r--r--' 'usr/share/fish/vendor_completions\.d/dynwall\.fish'
has '-rw-r--r--' 'usr/share/doc/dynwall/README\.md'
has '-rw-r--r--' 'usr/share/doc/dynwall/copyright'

conffiles="$(dpkg-deb -I "$deb" conffiles 2>/dev/null || true)"
grep -qx '/etc/dynwall/dynwall.toml' <<<"$conffiles" || fail "/etc/dynwall/dynwall.toml is a conffile (conffiles: $conffiles)"

control="$(dpkg-deb -f "$deb")"
for field in 'Package: dynwall' 'Section: net' 'Priority: optional' 'Architecture: amd64'; do
    grep -qx "$field" <<<"$control" || fail "control field '$field'"
done
grep -qE '^Maintainer: [^<]+ <[^@ ]+@[^> ]+>$' <<<"$control" || fail "a maintainer with an address"
# The synopsis: one line, at most 80 characters, no final period (Debian policy 3.4.1).
# cargo-deb wraps the package description at 79 characters: longer, and its end would become the
# first line of the extended description.
synopsis="$(dpkg-deb -f "$deb" Description | sed -n 1p)"
want="$(sed -n 's/^description = "\(.*\)"$/\1/p' Cargo.toml | sed -n 1p)"
[ "$synopsis" = "$want" ] && [ "${#synopsis}" -le 79 ] && [ "${synopsis%.}" = "$synopsis" ] \
    || fail "one-line synopsis '$want' of at most 79 characters without a period (got '$synopsis')"
[ "$(dpkg-deb -f "$deb" Description | sed -n '2p' | cut -c1)" = " " ] || fail "an extended description"
# The binary is static: it needs no library, so nothing is derived for Depends.
grep -q '^Depends: .*libc' <<<"$control" && fail "a static binary must not depend on libc"
readelf -lW "${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release/dynwall" | grep INTERP >/dev/null \
    && fail "the packaged binary is static"

postinst="$(dpkg-deb -I "$deb" postinst)"
sh -n <(printf '%s\n' "$postinst") || fail "postinst is valid sh"
# dynwall.service: enabled on first install (the "was-enabled defaults to true" snippet).
grep -q '^[[:space:]]*deb-systemd-helper enable dynwall.service' <<<"$postinst" || fail "postinst enables dynwall.service"
grep -q 'deb-systemd-helper debian-installed dynwall.service' <<<"$postinst" && fail "dynwall.service must use the enable snippet"
# dynwall-once.timer: enabled only if the admin had enabled it before (the "dont-enable" snippet).
[ "$(grep -c 'deb-systemd-helper debian-installed dynwall-once.timer' <<<"$postinst")" -eq 1 ] \
    || fail "dynwall-once.timer must use the dont-enable snippet, once"
grep -qE 'deb-systemd-invoke (start|restart) ' <<<"$postinst" && fail "postinst must not start units on install"
grep -q '#DEBHELPER#' <<<"$postinst" && fail "postinst still has the #DEBHELPER# marker"
[ "$(grep -c 'Automatically added by cargo-deb' <<<"$postinst")" -eq 4 ] || fail "postinst holds each snippet once"
for script in prerm postrm; do
    dpkg-deb -I "$deb" "$script" >/dev/null 2>&1 || fail "$script present"
done
postrm="$(dpkg-deb -I "$deb" postrm)"
sh -n <(printf '%s\n' "$postrm") || fail "postrm is valid sh"
grep -q '#DEBHELPER#' <<<"$postrm" && fail "postrm still has the #DEBHELPER# marker"
for line in 'rm -f /etc/dynwall/indigo_api_key /etc/dynwall/indigo_api_secret' \
    'rmdir --ignore-fail-on-non-empty /etc/dynwall' 'rm -rf /var/lib/private/dynwall' \
    'deb-systemd-helper purge'; do
    grep -qF "$line" <<<"$postrm" || fail "postrm on purge: $line"
done

# The packaged binary runs, and the packaged man page is the roff page.
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
dpkg-deb -x "$deb" "$root"
"$root/usr/bin/dynwall" --version | grep '^dynwall ' >/dev/null || fail "packaged binary runs"
# `dynwall man|completions|demo` run the companion from /usr/libexec/dynwall/.
[ -x "$root/usr/libexec/dynwall/dynwall-extra" ] || fail "the companion is in /usr/libexec/dynwall"
"$root/usr/bin/dynwall" completions bash | grep -q '_dynwall()' || fail "dynwall finds its packaged companion"
zcat "$root/usr/share/man/man1/dynwall.1.gz" | sed -n 1,3p | grep '^\.TH dynwall 1' >/dev/null || fail "man page is roff"

if [ "$failures" -ne 0 ]; then
    echo "$deb: $failures check(s) failed" >&2
    exit 1
fi
echo "$deb: all package checks passed"
