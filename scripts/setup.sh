#!/usr/bin/env bash
# Installs what dockplug's tests need on a fresh Debian machine, as root.
# Idempotent: a second run installs nothing.
set -euo pipefail
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"

need=()
command -v dockerd >/dev/null || need+=(docker.io)
# Test images are built from a static busybox; ldd succeeds only on a dynamic one.
if [ ! -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then need+=(busybox-static); fi
command -v ip >/dev/null || need+=(iproute2)
command -v mount >/dev/null || need+=(mount)
if [ ${#need[@]} -gt 0 ]; then
	echo "setup: installing ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! command -v staticcheck >/dev/null; then
	echo "setup: installing staticcheck"
	(cd / && GOFLAGS= go install honnef.co/go/tools/cmd/staticcheck@v0.8.2)
fi

# The second judge: Engine 29 in a private prefix (built once, ~10 minutes).
bash "$(dirname "$0")/engine29.sh"
