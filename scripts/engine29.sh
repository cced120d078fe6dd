#!/usr/bin/env bash
# Builds Docker Engine 29 (dockerd, docker-proxy), containerd and runc from
# the Go module proxy into a private prefix, so Debian's dockerd 20.10 stays
# the system default. Idempotent: skips the build when the stamp matches.
# Usage: bash scripts/engine29.sh [PREFIX]   (default /opt/dockplug/engine29)
set -euo pipefail
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"

prefix=${1:-${DOCKPLUG_ENGINE29_PREFIX:-/opt/dockplug/engine29}}
moby=v2.0.0-beta.24
containerd=v2.3.5
runc=v1.4.4
want="moby=$moby containerd=$containerd runc=$runc"
stamp="$prefix/VERSIONS"

bins=(dockerd docker-proxy containerd containerd-shim-runc-v2 runc)
ok=1
for b in "${bins[@]}"; do [ -x "$prefix/bin/$b" ] || ok=0; done
if [ "$ok" = 1 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
	exit 0
fi

need=()
dpkg -s libseccomp-dev >/dev/null 2>&1 || need+=(libseccomp-dev)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v gcc >/dev/null || need+=(gcc)
if [ ${#need[@]} -gt 0 ]; then
	echo "engine29: installing ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

echo "engine29: building $want into $prefix (about 10 minutes, once)"
mkdir -p "$prefix/bin"
tmp=$(mktemp -d "$prefix/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# Each install runs outside any module so GOFLAGS=-mod=mod resolves the
# tool's own go.mod; GOBIN is the staging dir, moved in only when all built.
(
	cd /
	export GOBIN="$tmp" GOFLAGS=-mod=mod CGO_ENABLED=1
	go install "github.com/moby/moby/v2/cmd/dockerd@$moby"
	go install "github.com/moby/moby/v2/cmd/docker-proxy@$moby"
	go install "github.com/containerd/containerd/v2/cmd/containerd@$containerd"
	go install "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$containerd"
	go install -tags seccomp "github.com/opencontainers/runc@$runc"
)
for b in "${bins[@]}"; do mv -f "$tmp/$b" "$prefix/bin/$b"; done
echo "$want" >"$stamp"
echo "engine29: installed in $prefix/bin"
