#!/usr/bin/env bash
# Runs every native Go fuzz target (func FuzzXxx in a *_test.go file) for
# FUZZTIME each (default 10s), one target at a time: go test runs a single
# -fuzz target per package per invocation. New failing inputs are written to
# the package's testdata/fuzz/FuzzXxx/, where `go test` replays them from
# then on; the corpus each target builds up stays in Go's cache
# ($(go env GOCACHE)/fuzz), so a later run goes on from it.
#
#   scripts/fuzz.sh                          every target, 10s each
#   FUZZTIME=10m scripts/fuzz.sh             every target, ten minutes each
#   FUZZTIME=1h scripts/fuzz.sh ./mcp/       the targets of one package
#   FUZZTIME=1h scripts/fuzz.sh ./mcp/ FuzzParse
#
# FUZZ_GUIDED=0 runs the targets without coverage guidance, from the plain
# test binary (go test -c): go test -fuzz compiles every dependency anew
# with coverage instrumentation (Caddy's included, minutes on a fresh
# machine), which a short smoke run in CI cannot afford. Mutations are
# then blind, from the seed corpus: fuzz for real with guidance.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
fuzztime=${FUZZTIME:-10s}
guided=${FUZZ_GUIDED:-1}
only_pkg=${1:-}
only_target=${2:-}
# A new input worth keeping is minimised first, by default for up to a
# minute; with slow targets (signatures) that is most of a short run.
minimize=${FUZZMINIMIZETIME:-2s}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log=$work/log
status=0
while IFS=: read -r file line; do
  pkg=./$(dirname "$file")/
  target=${line#func }
  target=${target%%(*}
  [ -z "$only_pkg" ] || [ "$pkg" = "$only_pkg" ] || continue
  [ -z "$only_target" ] || [ "$target" = "$only_target" ] || continue
  printf -- '-- %s %s (%s)\n' "$pkg" "$target" "$fuzztime"
  if [ "$guided" = 0 ]; then
    bin=$work/$(dirname "$file" | tr / _).test
    [ -x "$bin" ] || go test -c -o "$bin" "$pkg"
    cache=$(go env GOCACHE)/fuzz/$(go list "$pkg")
    run() { (cd "$root/$pkg" && "$bin" -test.run '^$' -test.fuzz "^${target}\$" -test.fuzztime "$fuzztime" \
      -test.fuzzminimizetime "$minimize" -test.fuzzcachedir "$cache"); }
  else
    run() { go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime "$minimize" "$pkg"; }
  fi
  if ! run >"$log" 2>&1; then
    cat "$log"
    status=1
  else
    tail -n 1 "$log"
  fi
done < <(grep -r -o -E --include='*_test.go' --exclude-dir=node_modules --exclude-dir=.git \
  '^func Fuzz[A-Za-z0-9_]+\(f \*testing\.F\)' . | sed 's|^\./||' | sort)
exit $status
