#!/usr/bin/env bash
# Builds the RPM (target/generate-rpm/dynwall-<version>-1.x86_64.rpm) from the shared static
# release build (build-release.sh) with cargo-generate-rpm, and checks it with rpm(8) like
# build-deb.sh checks the .deb: header, files with modes, the config file, the scriptlets.
# Exits non-zero on any miss.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

if ! cargo generate-rpm --version >/dev/null 2>&1; then
    echo "== installing cargo-generate-rpm (once)"
    cargo install cargo-generate-rpm --locked
fi
command -v rpm >/dev/null || { echo "rpm is not installed (apt-get install rpm)" >&2; exit 1; }

echo "== release build, man page and completions (shared with the .deb and the image)"
bash packaging/build-release.sh >/dev/null

echo "== package"
out=target/generate-rpm
rm -rf "$out"
mkdir -p "$out"
# --target: the assets' target/release/ paths become target/x86_64-unknown-linux-gnu/release/.
cargo generate-rpm --target x86_64-unknown-linux-gnu --output "$out/"
rpms=("$out"/dynwall-*.rpm)
[ "${#rpms[@]}" -eq 1 ] && [ -f "${rpms[0]}" ] || { echo "expected one .rpm, found: ${rpms[*]}" >&2; exit 1; }
pkg="${rpms[0]}"
echo "$pkg: $(stat -c %s "$pkg") bytes"

echo "== header, files, scripts"
info="$(rpm -qip "$pkg" 2>/dev/null)"
echo "$info"
files="$(rpm -qlvp "$pkg" 2>/dev/null)"
echo "$files"
scripts="$(rpm -qp --scripts "$pkg" 2>/dev/null)"
echo "$scripts"

failures=0
fail() {
    echo "CHECK FAILED: $*" >&2
    failures=$((failures + 1))
}
for field in 'Name        : dynwall' 'Architecture: x86_64' 'License     : MIT OR Apache-2.0'; do
    grep -qF "$field" <<<"$info" || fail "header '$field'"
done
summary="$(rpm -qp --queryformat '%{SUMMARY}' "$pkg" 2>/dev/null)"
want="$(sed -n 's/^description = "\(.*\)"$/\1/p' Cargo.toml | sed -n 1p)"
[ "$summary" = "$want" ] || fail "summary '$want' (got '$summary')"
# has MODE PATH: the package holds PATH with exactly MODE, owned by root.
has() {
    grep -qE "^$1 +[0-9]+ +root +root +[0-9]+ .* $2\$" <<<"$files" || fail "$2 with mode $1"
}
has '-rwxr-xr-x' '/usr/bin/dynwall'
has '-rwxr-xr-x' '/usr/libexec/dynwall/dynwall-extra'
has '-rw-r--r--' '/etc/dynwall/dynwall\.toml'
for unit in dynwall.service dynwall-once.service dynwall-once.timer; do
    has '-rw-r--r--' "/usr/lib/systemd/system/${unit//./\\.}"
done
has '-rw-r--r--' '/usr/share/man/man1/dynwall\.1\.gz'
has '-rw-r--r--' '/usr/share/bash-completion/completions/dynwall'
has '-rw-r--r--' '/usr/share/zsh/site-functions/_dynwall'
has '-rw-r--r--' '/usr/share/fish/vendor_completions\.d/dynwall\.fish'
has '-rw-r--r--' '/usr/share/doc/dynwall/README\.md'
# The config survives upgrades and removal of edited copies (%config(noreplace)).
[ "$(rpm -qcp "$pkg" 2>/dev/null)" = "/etc/dynwall/dynwall.toml" ] || fail "dynwall.toml is the only config file"
[ "$(rpm -qp --queryformat '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$pkg" 2>/dev/null | grep ' /etc/dynwall/dynwall.toml$')" = "cn /etc/dynwall/dynwall.toml" ] \
    || fail "dynwall.toml is %config(noreplace)"
# Static: no library is required (only what rpm itself adds).
rpm -qpR "$pkg" 2>/dev/null | grep '^lib' >/dev/null && fail "a static binary requires no library"
# Scriptlets: preset on first install, disable on erase, try-restart on upgrade; all valid sh.
grep -q 'systemctl --no-reload preset dynwall.service' <<<"$scripts" || fail "postinstall presets the units"
grep -q 'systemctl --no-reload disable --now dynwall.service' <<<"$scripts" || fail "preuninstall disables on erase"
grep -q 'systemctl try-restart dynwall.service' <<<"$scripts" || fail "postuninstall restarts on upgrade"
for phase in POSTIN PREUN POSTUN; do
    body="$(rpm -qp --queryformat "%{$phase}" "$pkg" 2>/dev/null)"
    [ -n "$body" ] && [ "$body" != "(none)" ] || fail "$phase scriptlet present"
    sh -n <(printf '%s\n' "$body") || fail "$phase scriptlet is valid sh"
done
# The units in the package are the repository's.
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
rpm2archive - <"$pkg" | tar -xzf - -C "$root" || fail "unpack the rpm"
for unit in dynwall.service dynwall-once.service dynwall-once.timer; do
    cmp -s "$root/usr/lib/systemd/system/$unit" "systemd/$unit" || fail "$unit differs from systemd/$unit"
done
"$root/usr/bin/dynwall" --version | grep '^dynwall ' >/dev/null || fail "packaged binary runs"

if [ "$failures" -ne 0 ]; then
    echo "$pkg: $failures check(s) failed" >&2
    exit 1
fi
echo "$pkg: all package checks passed"
