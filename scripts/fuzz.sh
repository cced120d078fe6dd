#!/usr/bin/env bash
# Fuzz campaign: runs every fuzz target of the module in turn, one at a
# time, for DURATION each (go test's -fuzztime: 60s, 5m, or 100000x).
# Not part of CI, which replays the checked-in corpora (testdata/fuzz)
# through plain go test.
#
#   bash scripts/fuzz.sh [DURATION] [REGEXP]
#
# REGEXP (default: every target) keeps the targets whose "package.Target"
# matches it, e.g. 'alloc' or 'volume\.FuzzMount'. FUZZ_PARALLEL sets the
# fuzzing workers per target (go test -parallel; default: GOMAXPROCS).
#
# A failing input is written by go test to the package's
# testdata/fuzz/TARGET/ (check it in with the fix). New interesting inputs
# stay in go's cache; with FUZZ_SAVE=N, up to N of those this run found
# per target (the largest of at most 1 KiB) are also copied into
# testdata/fuzz/TARGET/, to check in. At the end it prints one line per
# target: executions, new interesting inputs, result.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"

duration=${1:-60s}
filter=${2:-.}
parallel=()
if [ -n "${FUZZ_PARALLEL:-}" ]; then parallel=(-parallel "$FUZZ_PARALLEL"); fi

cache="$(go env GOCACHE)/fuzz"
log=$(mktemp -d /tmp/dockplug-fuzz.XXXXXX)
summary="$log/summary"
failed=0
: >"$summary"

for pkg in $(go list ./...); do
	targets=$(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true)
	for t in $targets; do
		short="${pkg#github.com/dockplug/dockplug/}.$t"
		if ! grep -Eq -- "$filter" <<<"$short"; then continue; fi
		out="$log/${short//\//_}.log"
		echo "== $short ($duration)"
		dir="$cache/$pkg/$t"
		before=$(ls "$dir" 2>/dev/null || true)
		go test -run '^$' -fuzz "^${t}\$" -fuzztime "$duration" "${parallel[@]}" "$pkg" >"$out" 2>&1
		rc=$?
		# go prints "fuzz: elapsed: 20s, execs: 123456 (6172/sec), new interesting: 3 (total: 12)".
		last=$(grep -E '^fuzz: elapsed: .*execs: ' "$out" | tail -1)
		execs=$(sed -nE 's/.*execs: ([0-9]+).*/\1/p' <<<"$last")
		newi=$(sed -nE 's/.*new interesting: ([0-9]+).*/\1/p' <<<"$last")
		result=ok
		if [ $rc -ne 0 ]; then
			result="FAIL (log: $out)"
			failed=1
			tail -30 "$out"
		fi
		if [ "${FUZZ_SAVE:-0}" -gt 0 ] && [ -d "$dir" ]; then
			src="$(go list -f '{{.Dir}}' "$pkg")/testdata/fuzz/$t"
			saved=0
			# Largest first, at most 1 KiB, only what this run added.
			for f in $(cd "$dir" && find . -maxdepth 1 -type f -size -1025c -printf '%s %f\n' | sort -rn | cut -d' ' -f2); do
				if grep -qxF "$f" <<<"$before"; then continue; fi
				mkdir -p "$src" && cp "$dir/$f" "$src/$f"
				saved=$((saved + 1))
				if [ $saved -ge "$FUZZ_SAVE" ]; then break; fi
			done
			echo "saved $saved new inputs into $src"
		fi
		printf '%-52s execs %10s  new interesting %4s  %s\n' "$short" "${execs:-?}" "${newi:-?}" "$result" | tee -a "$summary"
	done
done

echo
echo "== summary ($duration per target; logs in $log)"
cat "$summary"
echo "new interesting inputs are kept in $cache/<import path>/<target>/"
exit $failed
