# shellcheck shell=bash
# Helpers to install and start the services the tests need, on loopback, in
# throwaway folders. Source this file; every function cleans up on exit.

pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

ensure_packages() {
  local missing=()
  pg_bin >/dev/null || missing+=(postgresql)
  command -v node >/dev/null || missing+=(nodejs npm)
  command -v redis-server >/dev/null || missing+=(redis-server)
  mariadb_bin >/dev/null || missing+=(mariadb-server)
  # nginx, for the test of examples/nginx.conf; it needs the auth_request
  # module (Debian's nginx has it built in).
  nginx_bin >/dev/null || missing+=(nginx)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  local nginx
  nginx=$(nginx_bin) || { echo "nginx is not installed" >&2; return 1; }
  "$nginx" -V 2>&1 | grep -q http_auth_request_module \
    || { echo "$nginx has no auth_request module" >&2; return 1; }
}

# nginx_bin prints the nginx binary's path.
nginx_bin() {
  command -v nginx 2>/dev/null && return 0
  [ -x /usr/sbin/nginx ] && { echo /usr/sbin/nginx; return 0; }
  return 1
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# start_postgres exports TEST_DATABASE_URL for a new cluster, plus PGDATA_DIR
# and PG_BIN so tests can stop and restart it.
start_postgres() {
  local bin dir port
  bin=$(pg_bin)
  dir=$(mktemp -d /tmp/caddy-betterauth-pg.XXXXXX)
  chown postgres "$dir" 2>/dev/null || true
  port=$(free_port)
  local as=()
  [ "$(id -u)" = 0 ] && as=(runuser -u postgres --)
  "${as[@]}" "$bin/initdb" -D "$dir/data" -U postgres -A trust --no-sync >/dev/null
  "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -o \
    "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" start >/dev/null
  PG_CLEANUP+=("${as[*]} $bin/pg_ctl -D $dir/data -m immediate stop >/dev/null 2>&1; rm -rf $dir")
  export TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
  export PGDATA_DIR="$dir/data" PG_BIN="$bin" PG_PORT="$port" PG_SOCKET_DIR="$dir"
  export PG_CTL_AS="${as[*]}"
}

# start_redis exports TEST_REDIS_URL for a new, unpersisted Redis, and
# REDIS_PORT.
start_redis() {
  local dir port
  dir=$(mktemp -d /tmp/caddy-betterauth-redis.XXXXXX)
  port=$(free_port)
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
  local i
  for i in $(seq 50); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  PG_CLEANUP+=("redis-cli -p $port shutdown nosave >/dev/null 2>&1; rm -rf $dir")
  export TEST_REDIS_URL="redis://127.0.0.1:$port/0" REDIS_PORT="$port"
}

# mariadb_bin prints the MariaDB server's path (Debian 12: 10.11).
mariadb_bin() {
  local b
  for b in /usr/sbin/mariadbd /usr/sbin/mysqld; do
    [ -x "$b" ] && { echo "$b"; return 0; }
  done
  return 1
}

# start_mariadb exports TEST_MYSQL_URL, mysql://caddy:caddy@127.0.0.1:PORT/
# (no database: tests create their own), for a new MariaDB server in a
# throwaway folder: a user caddy@127.0.0.1 with every privilege, root only
# (no password) on the socket, MYSQL_SOCKET for the mariadb client. Tuned for tests
# (nothing is flushed at commit, no doublewrite, no binary log) and pinned
# to UTC (--default-time-zone) and utf8mb4 (--no-defaults leaves latin1).
start_mariadb() {
  local bin dir port
  bin=$(mariadb_bin)
  dir=$(mktemp -d /tmp/caddy-betterauth-mariadb.XXXXXX)
  port=$(free_port)
  # mariadbd refuses to run as root; as root, run it as mysql.
  local user=()
  if [ "$(id -u)" = 0 ]; then
    chown mysql "$dir"
    user=(--user=mysql)
  fi
  local opts=(--no-defaults --datadir="$dir/data" "${user[@]}"
    --innodb-buffer-pool-size=32M --innodb-log-file-size=16M)
  mariadb-install-db "${opts[@]}" --auth-root-authentication-method=normal \
    --skip-test-db >"$dir/install.log" 2>&1 \
    || { cat "$dir/install.log" >&2; return 1; }
  "$bin" "${opts[@]}" --socket="$dir/mysqld.sock" --pid-file="$dir/mysqld.pid" \
    --port="$port" --bind-address=127.0.0.1 --skip-name-resolve \
    --log-error="$dir/error.log" --skip-log-bin \
    --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 \
    --default-time-zone=+00:00 --character-set-server=utf8mb4 \
    --collation-server=utf8mb4_general_ci --max-connections=300 \
    </dev/null >/dev/null 2>&1 &
  local pid=$! i
  PG_CLEANUP+=("kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf $dir")
  for i in $(seq 100); do
    mariadb-admin --no-defaults --socket="$dir/mysqld.sock" -uroot ping >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  mariadb --no-defaults --socket="$dir/mysqld.sock" -uroot -e \
    "CREATE USER 'caddy'@'127.0.0.1' IDENTIFIED BY 'caddy'; GRANT ALL ON *.* TO 'caddy'@'127.0.0.1' WITH GRANT OPTION" \
    || { echo "MariaDB did not start:" >&2; cat "$dir/error.log" >&2; return 1; }
  export TEST_MYSQL_URL="mysql://caddy:caddy@127.0.0.1:$port/" MYSQL_PORT="$port" MYSQL_SOCKET="$dir/mysqld.sock"
}

PG_CLEANUP=()
cleanup_services() {
  local c
  for c in "${PG_CLEANUP[@]}"; do eval "$c"; done
}

# use_services prepares what an integration run needs when a script runs on
# its own: PostgreSQL and Redis (stopped on exit) unless scripts/test.sh
# already exported them, the pinned npm packages if missing, and Caddy
# built from cmd/caddy unless CADDY_BIN names one. Call it from the
# repository's root.
use_services() {
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
}
