#!/usr/bin/env bash
# The one release build that the .deb, the .rpm and the container image share: a static binary
# (glibc, +crt-static) for x86_64-unknown-linux-gnu, and its companion dynwall-extra (demo, man
# page, completions), then the man page and the shell completions
# generated from it. Prints the binary's path on its last line. A second run is a no-op for cargo.
#
# Why static glibc: no musl target can be installed here, and one binary must run in a
# `FROM scratch` image as well as on any Debian or RPM system. Name resolution never reaches
# glibc's NSS (which a static binary cannot load safely): reqwest resolves with hickory-dns, the
# STUN source with hickory-resolver, both from /etc/hosts and /etc/resolv.conf.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
triple=x86_64-unknown-linux-gnu
# Only for the target: with an explicit --target, build scripts and proc macros stay dynamic.
# pack-relative-relocs: the position-independent executable's relative relocations as DT_RELR
# (3 KiB instead of a 244 KiB table that start-up reads page by page and that then stays
# resident); glibc's static start-up applies them (glibc >= 2.36), the linker is rust-lld.
# symbol-ordering-file: the functions the daemon runs laid out first, together, so that the
# rest of the code is never mapped (packaging/profile-layout.sh tells why and regenerates it);
# a name it lists that no longer exists is skipped without a warning.
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static -C link-arg=-Wl,-z,pack-relative-relocs -C link-arg=-Wl,--symbol-ordering-file=packaging/link-order.txt -C link-arg=-Wl,--no-warn-symbol-ordering"

out="${CARGO_TARGET_DIR:-target}/$triple/release"
# cargo does not track a file that only a link argument names: when the function order changed
# since the last build, the linked programs are removed so that cargo links them again.
if ! cmp -s packaging/link-order.txt "$out/link-order.txt"; then
    find "$out/deps" -maxdepth 1 -type f \( -name 'dynwall-*' -o -name 'dynwall_extra-*' \) \
        ! -name '*.d' -delete 2>/dev/null || true
fi
cargo build --release --locked --target "$triple" >&2
cp packaging/link-order.txt "$out/link-order.txt"
bin="$out/dynwall"
# A dynamically linked executable names its loader in a PT_INTERP header; a static one has none.
for b in "$bin" "$bin-extra"; do
    if readelf -lW "$b" | grep INTERP >/dev/null; then
        echo "$b is not statically linked: $(readelf -lW "$b" | grep -A1 INTERP)" >&2
        exit 1
    fi
    # Packed relocations: the table of relative relocations is DT_RELR, not RELA.
    if ! readelf -SW "$b" | grep -q '\.relr\.dyn'; then
        echo "$b has no packed relative relocations (.relr.dyn)" >&2
        exit 1
    fi
    echo "release binary: $b, $(stat -c %s "$b") bytes, static" >&2
done

assets="${CARGO_TARGET_DIR:-target}/assets"
rm -rf "$assets"
mkdir -p "$assets/completions"
"$bin" man | gzip -9n >"$assets/dynwall.1.gz"
"$bin" completions bash >"$assets/completions/dynwall.bash"
"$bin" completions zsh >"$assets/completions/_dynwall"
"$bin" completions fish >"$assets/completions/dynwall.fish"
echo "$bin"
