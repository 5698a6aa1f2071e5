#!/usr/bin/env bash
# Runs every test on a fresh machine: installs what is missing (PostgreSQL
# server binaries, Redis, MariaDB, Node), starts a throwaway PostgreSQL,
# Redis and MariaDB on loopback, installs
# the pinned Better-Auth packages, builds cmd/caddy, then runs gofmt, go vet,
# staticcheck, the race-enabled unit tests and the integration tests against
# the real services, a 60-second soak (scripts/soak.sh), then each fuzz target
# briefly. Everything it starts is
# stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=scripts/services.sh
. scripts/services.sh
trap cleanup_services EXIT

step() { printf '\n== %s (%ss)\n' "$1" "$SECONDS"; }

step "services"
ensure_packages
start_postgres
start_redis
start_mariadb
echo "PostgreSQL on port $PG_PORT, Redis on port $REDIS_PORT, MariaDB on port $MYSQL_PORT"

step "npm ci (pinned Better-Auth)"
(cd integration/seed && npm ci --no-audit --no-fund --loglevel=error)

step "build cmd/caddy"
mkdir -p .tmp
go build -o .tmp/caddy ./cmd/caddy
export CADDY_BIN=$root/.tmp/caddy BETTERAUTH_INTEGRATION=1

step "gofmt, go vet, staticcheck"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './integration/seed/*'))
if [ -n "$unformatted" ]; then echo "gofmt would change: $unformatted"; exit 1; fi
go vet ./...
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

step "an xcaddy build of the module does not link the MCP SDK"
# Only cmd/caddy imports the demo, whose MCP server needs the SDK.
deps=$(go list -deps .)
if grep '^github.com/modelcontextprotocol/' <<<"$deps"; then
  echo "the module's root package depends on the packages above (go list -deps .)"; exit 1
fi

step "Caddyfile.example adapts and validates with the database down"
DATABASE_URL="postgres://nobody@127.0.0.1:1/none" BETTER_AUTH_SECRET="$(head -c 24 /dev/urandom | base64)" \
  "$CADDY_BIN" adapt --config Caddyfile.example --validate >/dev/null 2>.tmp/adapt.log \
  || { cat .tmp/adapt.log; exit 1; }

step "go test -race"
go test -race -count=1 ./...

step "soak, 60 s (scripts/soak.sh; longer: scripts/soak.sh 10m)"
# Two gateways, revocations, expiries and a PostgreSQL restart under fixed-rate
# traffic: no wrong decision, no leaked goroutine. It reuses the services and
# the Caddy binary above.
scripts/soak.sh 60s

step "fuzz targets, 2000 inputs each (scripts/fuzz.sh; longer, with coverage guidance: FUZZTIME=10m scripts/fuzz.sh)"
# Unguided: an instrumented build of Caddy's tree would cost minutes here.
# A count, not a duration: a duration ends with a deadline, which a slow
# input (an ES512 signature) can outlast, and Go reports that as a failure.
FUZZ_GUIDED=0 FUZZTIME=2000x scripts/fuzz.sh

step "done"
