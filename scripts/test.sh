#!/usr/bin/env bash
# The whole test suite: set-up, formatting, vet, staticcheck, unit and
# end-to-end tests (real dockerd) with -race, and the bench module's build.
# Run as root from the repository root: bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"

bash scripts/setup.sh

echo "== gofmt"
bad=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$bad" ]; then echo "not gofmt'd:"; echo "$bad"; exit 1; fi

echo "== go vet"
go vet ./...
echo "== staticcheck"
staticcheck ./...

echo "== go test -race (end-to-end tests on dockerd 20.10)"
go test -race -count=1 -timeout 40m "$@" ./...

# Every end-to-end test runs again on the second engine.
echo "== go test -race, end-to-end tests on Engine 29"
DOCKPLUG_E2E_ENGINE=29 go test -race -count=1 -timeout 40m "$@" ./e2e/ ./internal/dockertest/

if [ -f bench/go.mod ]; then
	echo "== bench module: vet, compile and its fairness tests"
	(cd bench && go vet ./... && go test -count=1 ./...)
fi
echo "== all tests passed"
