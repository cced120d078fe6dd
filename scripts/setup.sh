#!/usr/bin/env bash
# Installs what dockplug's tests need on a fresh Debian machine, as root.
# Idempotent: a second run installs nothing.
set -euo pipefail
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"

need=()
command -v dockerd >/dev/null || need+=(docker.io)
[ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx sh && ldd /bin/busybox 2>&1 | grep -q 'not a dynamic' || need+=(busybox-static)
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
