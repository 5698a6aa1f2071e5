#!/usr/bin/env bash
# usage: scripts/soak.sh [DURATION]   (default 60s; at least 30s)
#
# Soak test (integration/soak_test.go, TestSoak): two Caddy gateways sharing
# one Redis, a private PostgreSQL seeded by real Better-Auth, fixed-rate mixed
# traffic (SOAK_RATE requests per second, default 200) for DURATION, while
# Better-Auth revokes keys, sessions and users, others expire, and PostgreSQL
# restarts in the middle (down SOAK_PG_DOWN, default 2s). It fails on any
# wrong decision or leaked goroutine, and prints latency percentiles and the
# gateways' memory and goroutines over time (SOAK_REPORT=<file> keeps a copy).
#
# It reuses the services and the Caddy binary that scripts/test.sh exports
# (TEST_REDIS_URL, PG_BIN, CADDY_BIN); otherwise it starts its own.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-60s}
# shellcheck source=scripts/services.sh
. scripts/services.sh
use_services
# go test's own deadline: the run, plus ten minutes for seeding and the end.
secs=$(python3 -c 'import re,sys
u={"h":3600,"m":60,"s":1,"ms":.001}
m=re.findall(r"([0-9.]+)(ms|h|m|s)",sys.argv[1])
print(int(sum(float(n)*u[x] for n,x in m)))' "$duration")
export SOAK_DURATION=$duration
go test -count=1 -v -run '^TestSoak$' -timeout "$((secs + 600))s" ./integration/
