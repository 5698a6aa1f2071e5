#!/usr/bin/env bash
# usage: scripts/faults.sh [COUNT]   (default 1: each fault test once)
#
# The fault-injection tests (integration/faults_test.go) on their own:
# PostgreSQL and Redis behind an in-process TCP proxy (internal/faultproxy)
# that adds latency, blackholes, resets, drops connections mid-reply or
# forgets them silently, with the real Caddy in front. They assert that no
# request is allowed that should not be, that misses fail closed with 503
# within lookup_timeout, that cached hits survive pool exhaustion, that the
# same process recovers once the network heals and that the revocation
# listener comes back and purges; this prints how long recovery took.
# scripts/test.sh runs them with the other integration tests.
#
# It reuses the services and the Caddy binary that scripts/test.sh exports
# (TEST_DATABASE_URL, TEST_REDIS_URL, PG_BIN, CADDY_BIN); otherwise it
# starts its own.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-1}
# shellcheck source=scripts/services.sh
. scripts/services.sh
if [ -z "${TEST_REDIS_URL:-}" ] || [ -z "${PG_BIN:-}" ] || [ -z "${TEST_DATABASE_URL:-}" ]; then
  trap cleanup_services EXIT
  ensure_packages
  start_postgres
  start_redis
fi
if [ ! -d integration/seed/node_modules ]; then
  (cd integration/seed && npm ci --no-audit --no-fund --loglevel=error)
fi
if [ -z "${CADDY_BIN:-}" ]; then
  mkdir -p .tmp
  go build -o .tmp/caddy ./cmd/caddy
  export CADDY_BIN=$PWD/.tmp/caddy
fi
export BETTERAUTH_INTEGRATION=1
go test -count="$count" -v -timeout 30m \
  -run '^(TestPostgresFaults|TestPoolExhaustionSparesCachedHits|TestRedisFaultsCostNothing|TestListenerComesBackAndPurges|TestListenerNoticesASilentConnection)$' \
  ./integration/ | grep -E '^(--- |=== RUN|ok|FAIL|PASS)|faults_test\.go'
