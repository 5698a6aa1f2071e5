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
use_services
go test -count="$count" -v -timeout 30m \
  -run '^(TestPostgresFaults|TestPoolExhaustionSparesCachedHits|TestRedisFaultsCostNothing|TestListenerComesBackAndPurges|TestListenerNoticesASilentConnection)$' \
  ./integration/ | grep -E '^(--- |=== RUN|ok|FAIL|PASS)|faults_test\.go'
