#!/usr/bin/env bash
# Runs the gateway locally with nothing set up beforehand: a throwaway
# PostgreSQL, real Better-Auth (the pinned packages) to create its schema, a
# user, a session and an API key, and Caddy built from cmd/caddy with
# better_auth in front of a small upstream that echoes the identity it
# receives. Prints the key and the commands to try; Ctrl-C stops everything.
#
#   scripts/demo.sh [port]     (default 8080)
set -euo pipefail
cd "$(dirname "$0")/.."
port=${1:-8080}
. scripts/services.sh
trap cleanup_services EXIT
ensure_packages
start_postgres
(cd integration/seed && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
secret=$(head -c 32 /dev/urandom | base64 | tr -d '/+=')
fixture=$(cd integration/seed && DATABASE_URL=$TEST_DATABASE_URL BETTER_AUTH_SECRET=$secret node seed.mjs setup)
field() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2]))" "$fixture" "$1"; }
key=$(field 'd["keys"]["valid"]["key"]')
session=$(field 'd["users"]["alice"]["signed"]')
mkdir -p .tmp
go build -o .tmp/caddy ./cmd/caddy
upstream=$(free_port)
cat > .tmp/demo.Caddyfile <<EOF2
{
	admin off
	auto_https off
	persist_config off
}
http://127.0.0.1:$port {
	better_auth {
		database {env.DATABASE_URL}
		secret {env.BETTER_AUTH_SECRET}
	}
	reverse_proxy 127.0.0.1:$upstream
}
# Stands in for an MCP server: shows what the gateway passed on.
http://127.0.0.1:$upstream {
	respond <<TEXT
		user:    {header.X-Auth-User-Id} ({header.X-Auth-User-Email}, {header.X-Auth-User-Name})
		method:  {header.X-Auth-Method} key={header.X-Auth-Key-Id} session={header.X-Auth-Session-Id}
		api key forwarded: "{header.X-Api-Key}"

		TEXT
}
EOF2
cat <<MSG

caddy-betterauth demo on http://127.0.0.1:$port (Better-Auth data in a throwaway PostgreSQL)

  API key:        $key
  session token:  $session

  curl -H 'x-api-key: $key' http://127.0.0.1:$port/
  curl -H 'Authorization: Bearer $session' http://127.0.0.1:$port/
  curl -i http://127.0.0.1:$port/                         # 401 MISSING_CREDENTIAL
  curl -i -H 'x-api-key: ba_wrong' http://127.0.0.1:$port/  # 401 INVALID_API_KEY

Ctrl-C stops the gateway and the database.
MSG
DATABASE_URL=$TEST_DATABASE_URL BETTER_AUTH_SECRET=$secret .tmp/caddy run --config .tmp/demo.Caddyfile --adapter caddyfile
