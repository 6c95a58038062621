#!/usr/bin/env bash
# Builds the container image offline from the shared release build (packaging/build-release.sh):
# no base image, no registry, any Docker builder. Usage: build-image.sh [TAG...]
# (default: dynwall:<version> and dynwall:latest). Prints the image size; fails when the image
# is larger than 12 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."

bin="$(bash packaging/build-release.sh | tail -n 1)"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | sed -n 1p)"
tags=("$@")
[ "${#tags[@]}" -gt 0 ] || tags=("dynwall:$version" "dynwall:latest")

# The build context holds one file: the image's whole file system as a tar (rootfs.sh).
ctx="${CARGO_TARGET_DIR:-target}/docker"
rm -rf "$ctx"
mkdir -p "$ctx"
bash packaging/docker/rootfs.sh "$bin" "$ctx/rootfs.tar"

args=()
for t in "${tags[@]}"; do args+=(-t "$t"); done
# The classic builder warns that it is deprecated; the build itself is what counts here.
DOCKER_BUILDKIT=0 docker build --quiet --target prebuilt -f packaging/docker/Dockerfile \
    --label "org.opencontainers.image.version=$version" "${args[@]}" "$ctx" >/dev/null

size="$(docker image inspect --format '{{.Size}}' "${tags[0]}")"
echo "image ${tags[*]}: $size bytes ($(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1048576 }') MiB)"
if [ "$size" -gt $((12 * 1024 * 1024)) ]; then
    echo "the image is larger than 12 MiB" >&2
    exit 1
fi
