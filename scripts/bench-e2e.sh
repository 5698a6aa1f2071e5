#!/usr/bin/env bash
# Measures what better_auth adds to Caddy on a cached API key: two Caddy
# processes built from cmd/caddy, one with a plain reverse_proxy and one with
# better_auth in front of the same reverse_proxy, both to one upstream, loaded
# in alternation with wrk. Reports requests per second and the gateway
# process's CPU time per request. With two or more CPUs the gateways are
# pinned to CPU 0 and wrk and the upstream to the others, so that the
# gateway is the bottleneck and the runs compare like with like.
#
#   scripts/bench-e2e.sh [rounds] [seconds-per-run] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5} secs=${2:-5} conns=${3:-32}
. scripts/services.sh
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; cleanup_services' EXIT
ensure_packages
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
start_postgres
(cd integration/seed && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
mkdir -p .tmp/bench
go build -o .tmp/caddy ./cmd/caddy
secret=bench-secret-0123456789abcdefghijklmnopqrstuvwxyz
key=$(cd integration/seed && DATABASE_URL=$TEST_DATABASE_URL BETTER_AUTH_SECRET=$secret node seed.mjs setup |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["keys"]["valid"]["key"])')

up=$(free_port) plain=$(free_port) auth=$(free_port) admin=$(free_port)
common='admin off
	auto_https off
	persist_config off
	default_bind 127.0.0.1
	log default {
		level ERROR
	}'
cat > .tmp/bench/upstream <<EOF2
{
	$common
}
http://127.0.0.1:$up {
	respond "ok"
}
EOF2
cat > .tmp/bench/plain <<EOF2
{
	$common
}
http://127.0.0.1:$plain {
	reverse_proxy 127.0.0.1:$up
}
EOF2
cat > .tmp/bench/auth <<EOF2
{
	${common/admin off/admin 127.0.0.1:$admin}
}
http://127.0.0.1:$auth {
	better_auth {
		database $TEST_DATABASE_URL
		secret $secret
	}
	reverse_proxy 127.0.0.1:$up
}
EOF2
pin_gw=() pin_load=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  pin_gw=(taskset -c 0) pin_load=(taskset -c "1-$(($(nproc) - 1))")
fi
start() { local pin=("${pin_gw[@]}"); [ "$1" = upstream ] && pin=("${pin_load[@]}")
  "${pin[@]}" .tmp/caddy run --config ".tmp/bench/$1" --adapter caddyfile >".tmp/bench/$1.log" 2>&1 & pids+=($!); echo $!; }
up_pid=$(start upstream); plain_pid=$(start plain); auth_pid=$(start auth)
for p in $up $plain $auth; do
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.1; done
done
curl -fsS -H "X-Api-Key: $key" "http://127.0.0.1:$auth/" >/dev/null || { echo "gateway check failed"; exit 1; }

cpu() { awk '{print $14+$15}' "/proc/$1/stat"; } # clock ticks
tck=$(getconf CLK_TCK)
run() { # name port pid -> "rps cpu_us_per_request"
  local before after out reqs rps
  before=$(cpu "$3")
  out=$("${pin_load[@]}" wrk -t1 -c"$conns" -d"${secs}s" -H "X-Api-Key: $key" "http://127.0.0.1:$2/")
  after=$(cpu "$3")
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  echo "$rps $(awk -v a="$after" -v b="$before" -v t="$tck" -v n="$reqs" 'BEGIN {printf "%.1f", (a-b)/t*1e6/n}')"
}
echo "wrk: ${rounds} rounds of ${secs}s per gateway, ${conns} connections, gateways pinned: ${pin_gw[*]:-no}"
printf 'round  plain_rps  auth_rps  ratio   plain_cpu_us  auth_cpu_us  added_us\n'
ratios=() addeds=()
for i in $(seq "$rounds"); do
  # Alternate which gateway goes first, so drift in the machine's load
  # does not favour one of them.
  if [ $((i % 2)) = 1 ]; then
    read -r prps pcpu <<<"$(run plain "$plain" "$plain_pid")"
    read -r arps acpu <<<"$(run auth "$auth" "$auth_pid")"
  else
    read -r arps acpu <<<"$(run auth "$auth" "$auth_pid")"
    read -r prps pcpu <<<"$(run plain "$plain" "$plain_pid")"
  fi
  ratio=$(awk -v a="$arps" -v p="$prps" 'BEGIN {printf "%.3f", a/p}')
  added=$(awk -v a="$acpu" -v p="$pcpu" 'BEGIN {printf "%.1f", a-p}')
  printf '%5d  %9.0f  %8.0f  %5s  %12s  %11s  %8s\n' "$i" "$prps" "$arps" "$ratio" "$pcpu" "$acpu" "$added"
  ratios+=("$ratio") addeds+=("$added")
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
echo "median: better_auth keeps $(awk -v r="$(median "${ratios[@]}")" 'BEGIN {printf "%.1f", 100*r}')% of plain rps" \
  "and adds $(median "${addeds[@]}") us of Caddy CPU per request"

# Wall-clock figures on a shared 2-core machine swing by tens of percent from
# run to run. The CPU profile of the better_auth gateway under load is
# steadier: the handler's own time is its cumulative time minus the
# reverse_proxy it calls.
prof_secs=$((secs > 5 ? secs : 5))
"${pin_load[@]}" wrk -t1 -c"$conns" -d"$((prof_secs + 2))s" -H "X-Api-Key: $key" "http://127.0.0.1:$auth/" >.tmp/bench/prof.wrk &
wrk_pid=$!
sleep 1
curl -fsS -o .tmp/bench/cpu.prof "http://127.0.0.1:$admin/debug/pprof/profile?seconds=$prof_secs"
wait "$wrk_pid"
rps=$(awk '/Requests\/sec/ {print $2}' .tmp/bench/prof.wrk)
go tool pprof -top -cum -unit=ms .tmp/caddy .tmp/bench/cpu.prof 2>/dev/null >.tmp/bench/prof.txt
cum() { awk -v f="$1" '$0 ~ f {gsub("ms","",$4); print $4; exit}' .tmp/bench/prof.txt; }
handler=$(cum 'caddyauth.\(\*Handler\).ServeHTTP$')
proxy=$(cum 'reverseproxy.\(\*Handler\).ServeHTTP$')
total=$(awk '/Total samples/ {for (i=1;i<=NF;i++) if ($i=="=") {v=$(i+1); gsub("ms","",v); print v}}' .tmp/bench/prof.txt)
awk -v h="$handler" -v p="$proxy" -v t="$total" -v r="$rps" -v s="$prof_secs" 'BEGIN {
  printf "profile: %.0f rps; better_auth handler itself: %.0f ms of %.0f ms CPU (%.1f%%), %.2f us per request\n",
    r, h - p, t, 100 * (h - p) / t, (h - p) * 1000 / (r * s) }'
