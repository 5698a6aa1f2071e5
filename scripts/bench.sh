#!/usr/bin/env bash
# The benchmark suite, side by side in one run on one machine: every variant
# below is loaded in turn, once per round (each round starting one variant
# further on, so that drift in the machine's load favours none), all behind
# the same upstream, and each reported by the median of its rounds.
#
#   plain         Caddy reverse_proxy
#   static        the same, with the six X-Auth-* identity headers set by
#                 request_header: the floor (identity injected, no check)
#   ba_memory     better_auth, every key in the in-process cache
#   ba_shared     better_auth whose in-process entries expire at once
#                 (cache ttl 1ns), so that each request reads Redis, filled
#                 by another gateway beforehand
#   ba_miss       better_auth, cache off: one database lookup per request
#   forward_auth  Caddy forward_auth to a Node endpoint calling real
#                 Better-Auth verifyApiKey (integration/seed/verify-server.mjs)
#   ext_authz     cmd/betterauth-extauthz's gRPC Check, loaded with ghz
#   flood         better_auth, every request a new unknown key
#
# Requests rotate over BENCH_KEYS_N (default 2048) API keys created with
# Better-Auth. wrk (or ghz) gives requests per second, p50 and p99; /proc
# gives each process's CPU time, divided by the requests served. With two
# or more CPUs, the gateways (and Node, and the ext_authz server) are
# pinned to CPU 0, the load tools and the upstream to the others. Also
# measured: the heap per cached identity (the better_auth gateway's heap
# after GC, before and after caching half the keys), and a CPU profile of
# the better_auth handler's own time. Installs what it needs (as root, via
# apt, npm and the Go module proxy) and stops everything it started.
#
#   scripts/bench.sh [rounds] [seconds-per-run] [connections]   # default 5 5 32
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5} secs=${2:-5} conns=${3:-32}
nkeys=${BENCH_KEYS_N:-2048}
ghz_version=v0.120.0
. scripts/services.sh
pids=()
stop_all() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  cleanup_services
}
trap stop_all EXIT
trap 'exit 130' INT TERM
ensure_packages
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
dir=$PWD/.tmp/bench
mkdir -p "$dir/bin"
ghz=$dir/bin/ghz
# Outside this module: ghz's dependencies stay out of go.mod.
[ -x "$ghz" ] || (cd "$(mktemp -d)" && GOFLAGS=-mod=mod GOBIN="$dir/bin" go install "github.com/bojand/ghz/cmd/ghz@$ghz_version")
go build -o "$dir/caddy" ./cmd/caddy
go build -o "$dir/extauthz" ./cmd/betterauth-extauthz
# The gateway registers no gRPC reflection: ghz reads the service from this.
go run ./internal/cmd/protoset >"$dir/authz.protoset"
start_postgres
start_redis
(cd integration/seed && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
export BETTER_AUTH_SECRET=bench-secret-0123456789abcdefghijklmnopqrstuvwxyz
export DATABASE_URL=$TEST_DATABASE_URL # REDIS_URL would turn on seed.mjs's secondary storage
(cd integration/seed && node seed.mjs setup >/dev/null && node verify-server.mjs keys "$nkeys" >"$dir/keys")
head -n $((nkeys / 2)) "$dir/keys" >"$dir/keys.a"
tail -n +$((nkeys / 2 + 1)) "$dir/keys" >"$dir/keys.b"
python3 - "$dir/keys" >"$dir/checks.json" <<'EOF'
import json, sys
keys = open(sys.argv[1]).read().split()
# A CheckRequest as Envoy builds it; ghz sends these in turn.
print(json.dumps([{"attributes": {"request": {"http": {"method": "GET", "path": "/", "host": "api.example.com",
    "headers": {":authority": "api.example.com", ":method": "GET", ":path": "/", "x-api-key": k, "user-agent": "bench"}}}}}
    for k in keys]))
EOF
cat >"$dir/keys.lua" <<'EOF'
-- Each request carries the next key of the file $BENCH_KEYS, in turn.
local keys = {}
for line in io.lines(os.getenv("BENCH_KEYS")) do keys[#keys + 1] = line end
local i = 0
function request()
  i = i + 1
  return wrk.format(nil, nil, { ["X-Api-Key"] = keys[i % #keys + 1] })
end
EOF
cat >"$dir/flood.lua" <<'EOF'
-- Each request carries a key never seen before, as a scanner sends them.
math.randomseed(os.time())
local run = os.time() .. "x" .. math.random(1, 1e9)
local i = 0
function request()
  i = i + 1
  return wrk.format(nil, nil, { ["X-Api-Key"] = "ba_flood" .. run .. "x" .. i })
end
EOF

pin_gw=() pin_load=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  pin_gw=(taskset -c 0) pin_load=(taskset -c "1-$(($(nproc) - 1))")
fi
declare -A port admin
for n in upstream plain static ba_memory ba_shared ba_miss forward_auth flood writer node ext_authz; do
  port[$n]=$(free_port)
done
for n in ba_memory ba_shared ba_miss flood ext_authz; do admin[$n]=$(free_port); done
caddyfile() { # name body...: a Caddyfile serving one site on the name's port
  local name=$1 adm=off
  shift
  [ -n "${admin[$name]:-}" ] && adm=127.0.0.1:${admin[$name]}
  printf '{\n\tadmin %s\n\tauto_https off\n\tpersist_config off\n\tdefault_bind 127.0.0.1\n\tlog default {\n\t\tlevel WARN\n\t}\n}\nhttp://127.0.0.1:%s {\n%s\n}\n' \
    "$adm" "${port[$name]}" "$*" >"$dir/$name.caddyfile"
}
proxy="	reverse_proxy 127.0.0.1:${port[upstream]}"
ba() { # cache and redis lines of a better_auth block
  printf '\tbetter_auth {\n\t\tdatabase {env.DATABASE_URL}\n\t\tsecret {env.BETTER_AUTH_SECRET}\n%s\n\t}\n%s' "$1" "$proxy"
}
caddyfile upstream '	respond "ok"'
caddyfile plain "$proxy"
# The values better_auth sets for these keys, of the same lengths.
caddyfile static "	request_header X-Auth-User-Id 0123456789abcdefghijklmnopqrstuv
	request_header X-Auth-User-Email bench@example.com
	request_header X-Auth-User-Name Bench
	request_header X-Auth-User-Role user
	request_header X-Auth-Method api_key
	request_header X-Auth-Key-Id 0123456789abcdefghijklmnopqrstuv
	request_header -X-Api-Key
$proxy"
long='		cache {
			ttl 1h
			jitter off
		}'
caddyfile ba_memory "$(ba "$long")"
caddyfile flood "$(ba "$long")"
caddyfile writer "$(ba "$long
		redis {env.TEST_REDIS_URL}")"
caddyfile ba_shared "$(ba '		cache {
			ttl 1ns
			jitter off
		}
		redis {env.TEST_REDIS_URL}')"
caddyfile ba_miss "$(ba '		cache {
			ttl off
		}')"
caddyfile forward_auth "	forward_auth 127.0.0.1:${port[node]} {
		uri /verify
		copy_headers X-Auth-User-Id X-Auth-Key-Id X-Auth-Method
	}
$proxy"

declare -A pid
start() { # name command...: starts it in the background, records its pid
  local name=$1
  shift
  "$@" >"$dir/$name.log" 2>&1 &
  pids+=($!) pid[$name]=$!
}
start upstream "${pin_load[@]}" "$dir/caddy" run --config "$dir/upstream.caddyfile" --adapter caddyfile
for n in plain static ba_memory ba_shared ba_miss forward_auth flood; do
  start "$n" "${pin_gw[@]}" "$dir/caddy" run --config "$dir/$n.caddyfile" --adapter caddyfile
done
start node "${pin_gw[@]}" node integration/seed/verify-server.mjs serve "${port[node]}"
start ext_authz "${pin_gw[@]}" "$dir/extauthz" -grpc "127.0.0.1:${port[ext_authz]}" -http "" -cache-ttl 1h -metrics "127.0.0.1:${admin[ext_authz]}"
for n in "${!port[@]}"; do
  [ "$n" = writer ] && continue
  for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/${port[$n]}") 2>/dev/null && break; sleep 0.1; done
  (exec 3<>"/dev/tcp/127.0.0.1/${port[$n]}") 2>/dev/null || { echo "$n did not start:"; cat "$dir/$n.log"; exit 1; }
done
shared_started=$(date +%s%N) # ba_shared is listening: its shared tier is set up
key=$(head -1 "$dir/keys")
for n in plain static ba_memory ba_shared ba_miss forward_auth; do
  curl -fsS -o /dev/null -H "X-Api-Key: $key" "http://127.0.0.1:${port[$n]}/" || { echo "$n: check failed"; exit 1; }
done
code=$(curl -sS -o /dev/null -w '%{http_code}' -H "X-Api-Key: ba_nope" "http://127.0.0.1:${port[ba_memory]}/")
[ "$code" = 401 ] || { echo "ba_memory let an unknown key through ($code)"; exit 1; }

wrk_keys() { # port keys-file seconds
  BENCH_KEYS=$2 "${pin_load[@]}" wrk -t1 -c"$conns" -d"$3s" --latency -s "$dir/keys.lua" "http://127.0.0.1:$1/"
}
goroutines() { curl -fsS "http://127.0.0.1:$1/debug/pprof/goroutine?debug=1" | awk 'NR == 1 {print $NF}'; }
heap() { # admin port: the heap in use after two collections (the second empties sync.Pool's victim cache)
  # First, the load's connections close: until their goroutines end, their
  # buffers are live. Their count stops falling when they have.
  local a b
  a=$(goroutines "$1")
  for _ in $(seq 50); do
    sleep 0.2
    b=$(goroutines "$1")
    [ "$b" -ge "$a" ] && break
    a=$b
  done
  curl -fsS -o /dev/null "http://127.0.0.1:$1/debug/pprof/heap?gc=1"
  curl -fsS "http://127.0.0.1:$1/debug/pprof/heap?debug=1&gc=1" | awk '/^# HeapAlloc = / {print $4}'
}
# Heap per cached identity: caching the first half of the keys grows the
# pools and buffers too; the second half adds only entries.
wrk_keys "${port[ba_memory]}" "$dir/keys.a" 2 >/dev/null
h1=$(heap "${admin[ba_memory]}")
wrk_keys "${port[ba_memory]}" "$dir/keys.b" 2 >/dev/null
h2=$(heap "${admin[ba_memory]}")
# The writer fills Redis for ba_shared, whose gateway reads no entry
# written before its start plus cache.ClockSkew (1 s).
wait_ns=$((shared_started + 1500000000 - $(date +%s%N)))
[ "$wait_ns" -gt 0 ] && sleep "$(awk -v n="$wait_ns" 'BEGIN {printf "%.3f", n / 1e9}')"
start writer "${pin_load[@]}" "$dir/caddy" run --config "$dir/writer.caddyfile" --adapter caddyfile
for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/${port[writer]}") 2>/dev/null && break; sleep 0.1; done
wrk_keys "${port[writer]}" "$dir/keys" 2 >/dev/null
for n in ba_shared ba_miss forward_auth static plain; do wrk_keys "${port[$n]}" "$dir/keys" 1 >/dev/null; done
"${pin_load[@]}" "$ghz" --insecure --protoset "$dir/authz.protoset" --call envoy.service.auth.v3.Authorization.Check \
  -D "$dir/checks.json" -c "$conns" -z 1s "127.0.0.1:${port[ext_authz]}" >/dev/null

tck=$(getconf CLK_TCK)
ticks() { # pids...: their CPU time (user + system), in clock ticks
  local t=0 p v
  for p in "$@"; do
    v=$(awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$p/stat" 2>/dev/null) || v=0
    t=$((t + v))
  done
  echo "$t"
}
store_ticks() { # PostgreSQL and Redis: the postmaster with its backends, live or ended, and redis-server
  local pm t
  pm=$(head -1 "$PGDATA_DIR/postmaster.pid")
  # A backend that ends is reaped by the postmaster, and its time moves to
  # the postmaster's children's time (cutime, cstime).
  t=$(awk '{sub(/.*\) /, ""); print $12 + $13 + $14 + $15}' "/proc/$pm/stat")
  echo $((t + $(ticks $(ps -o pid= --ppid "$pm") "$(redis-cli -p "$REDIS_PORT" info server | awk -F: '/^process_id/ {print $2 + 0}')")))
}
us() { awk -v a="$1" -v b="$2" -v t="$tck" -v n="$3" 'BEGIN {if (n > 0) printf "%.1f", (b - a) / t * 1e6 / n; else print "nan"}'; }
to_us() { awk '{v = $1 + 0; if ($1 ~ /us$/) print v; else if ($1 ~ /ms$/) print v * 1000; else if ($1 ~ /s$/) print v * 1e6; else print v}'; }
results=$dir/results.tsv
rm -rf "$dir/out" && mkdir -p "$dir/out" # each run's wrk or ghz output
printf 'round\tvariant\trps\tp50_us\tp99_us\tgw_us\tpeer_us\tup_us\tstore_us\tbad\n' >"$results"
run() { # round variant
  local r=$1 v=$2 gw peer=() out reqs rps p50 p99 bad
  gw=${pid[$v]}
  [ "$v" = forward_auth ] && peer=("${pid[node]}")
  local g0 n0 u0 s0 g1 n1 u1 s1
  g0=$(ticks "$gw") n0=$(ticks "${peer[@]}") u0=$(ticks "${pid[upstream]}") s0=$(store_ticks)
  case $v in
  ext_authz)
    out=$("${pin_load[@]}" "$ghz" --insecure --protoset "$dir/authz.protoset" --call envoy.service.auth.v3.Authorization.Check \
      -D "$dir/checks.json" -c "$conns" -z "${secs}s" --format json "127.0.0.1:${port[ext_authz]}")
    ;;
  flood)
    out=$("${pin_load[@]}" wrk -t1 -c"$conns" -d"${secs}s" --latency -s "$dir/flood.lua" "http://127.0.0.1:${port[flood]}/") ;;
  *) out=$(wrk_keys "${port[$v]}" "$dir/keys" "$secs") ;;
  esac
  g1=$(ticks "$gw") n1=$(ticks "${peer[@]}") u1=$(ticks "${pid[upstream]}") s1=$(store_ticks)
  echo "$out" >"$dir/out/$r-$v"
  if [ "$v" = ext_authz ]; then
    read -r reqs rps p50 p99 bad < <(echo "$out" | python3 -c 'import json, sys
r = json.load(sys.stdin)
lat = {int(d["percentage"]): d["latency"] / 1e3 for d in r["latencyDistribution"]}
# The calls in flight when ghz stops at its deadline end Canceled, or
# Unavailable on the connection it closes: not answers.
cut = sum(n for e, n in (r.get("errorDistribution") or {}).items() if "Canceled" in e or "use of closed network connection" in e)
wrong = sum(n for c, n in r["statusCodeDistribution"].items() if c != "OK") - cut
print(r["count"] - cut, r["rps"], lat[50], lat[99], wrong)')
  else
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1 == "50%" {print $2}' | to_us)
    p99=$(echo "$out" | awk '$1 == "99%" {print $2}' | to_us)
    local refused sockerr
    refused=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
    sockerr=$(echo "$out" | awk '/Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10}')
    bad=$((${refused:-0} + ${sockerr:-0}))
    # In the flood, every answer must be a refusal.
    [ "$v" = flood ] && bad=$((reqs - ${refused:-0} + ${sockerr:-0}))
  fi
  local line
  line=$(printf '%s\t%s\t%.0f\t%.0f\t%.0f\t%s\t%s\t%s\t%s\t%s' "$r" "$v" "$rps" "$p50" "$p99" "$(us "$g0" "$g1" "$reqs")" \
    "$( ((${#peer[@]})) && us "$n0" "$n1" "$reqs" || echo -)" "$(us "$u0" "$u1" "$reqs")" "$(us "$s0" "$s1" "$reqs")" "$bad")
  echo "$line" >>"$results"
  echo "$line"
}

describe() {
  echo "machine: $(nproc) CPUs ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo), kernel $(uname -r)"
  echo "software: $(go version | awk '{print $3}'), node $(node --version), PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}'), Redis $(redis-server --version | awk '{print $3}' | cut -d= -f2), $(wrk --version 2>&1 | head -1 | awk '{print $1, $2}'), ghz $ghz_version"
}
variants=(plain static ba_memory ba_shared ba_miss forward_auth ext_authz flood)
describe
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "${rounds} rounds of ${secs}s per variant, ${conns} connections, ${nkeys} keys; gateways pinned: ${pin_gw[*]:-no}"
printf 'round\tvariant\trps\tp50_us\tp99_us\tgw_us\tpeer_us\tup_us\tstore_us\tbad\n'
for i in $(seq "$rounds"); do
  for j in $(seq 0 $((${#variants[@]} - 1))); do
    run "$i" "${variants[$(((i - 1 + j) % ${#variants[@]}))]}"
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

echo
echo "medians over ${rounds} rounds (CPU: µs per request, by process; store: PostgreSQL and Redis)"
python3 - "$results" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
order = ["plain", "static", "ba_memory", "ba_shared", "ba_miss", "forward_auth", "ext_authz", "flood"]
m = {}
def med(v, f):
    xs = [float(r[f]) for r in rows if r["variant"] == v and r[f] not in ("-", "nan")]
    return statistics.median(xs) if xs else None
for v in order:
    m[v] = {f: med(v, f) for f in ("rps", "p50_us", "p99_us", "gw_us", "peer_us", "up_us", "store_us")}
    m[v]["bad"] = sum(int(r["bad"]) for r in rows if r["variant"] == v)
fmt = lambda x, p=1: "-" if x is None else f"{x:.{p}f}"
print(f"| variant | rps | p50 ms | p99 ms | gateway µs/req | Node µs/req | upstream µs/req | store µs/req | rps vs plain | rps vs static | gateway µs vs plain | gateway µs vs static |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
p, s = m["plain"], m["static"]
for v in order:
    x = m[v]
    print(f"| {v} | {x['rps']:.0f} | {x['p50_us']/1e3:.2f} | {x['p99_us']/1e3:.2f} | {fmt(x['gw_us'])} | {fmt(x['peer_us'])} "
          f"| {fmt(x['up_us'])} | {fmt(x['store_us'])} | {x['rps']/p['rps']:.3f} | {x['rps']/s['rps']:.3f} "
          f"| {x['gw_us']-p['gw_us']:+.1f} | {x['gw_us']-s['gw_us']:+.1f} |")
bad = {v: m[v]["bad"] for v in order if m[v]["bad"]}
if bad:
    print("WRONG ANSWERS (non-2xx, socket errors or failed checks; for flood: answers that were not refusals):", bad)
mem, fa = m["ba_memory"], m["forward_auth"]
def paired(a, b, f, op):
    # The median over rounds of one variant against another in the same round.
    by = {(r["round"], r["variant"]): float(r[f]) for r in rows}
    return statistics.median(op(by[k, a], by[k, b]) for k in {r["round"] for r in rows})
d = mem["gw_us"] - s["gw_us"]
dp = paired("ba_memory", "static", "gw_us", lambda x, y: x - y)
print(f"target 1: better_auth memory hit within 5 µs of the static-headers floor, by gateway CPU per request: "
      f"{d:+.1f} µs (round by round: {dp:+.1f} µs): {'met' if max(d, dp) <= 5 else 'NOT met' if min(d, dp) > 5 else 'at the edge'}")
r = mem["rps"] / fa["rps"]
rp = paired("ba_memory", "forward_auth", "rps", lambda x, y: x / y)
cpu = (fa["gw_us"] + fa["peer_us"]) / mem["gw_us"]
cpu_all = (fa["gw_us"] + fa["peer_us"] + fa["store_us"]) / (mem["gw_us"] + mem["store_us"])
print(f"target 2: ≥ 20× the Node peer's throughput: {r:.1f}× (round by round: {rp:.1f}×): "
      f"{'met' if min(r, rp) >= 20 else 'NOT met' if max(r, rp) < 20 else 'at the edge'} "
      f"(CPU per request, Caddy + Node against better_auth's Caddy: {cpu:.1f}×; with the store's: {cpu_all:.1f}×)")
EOF
per=$(awk -v a="$h1" -v b="$h2" -v n="$(wc -l <"$dir/keys.b")" 'BEGIN {printf "%.0f", (b - a) / n}')
echo "heap per cached identity: ${per} B (ba_memory's heap after GC: $h1 B with $(wc -l <"$dir/keys.a") keys cached, $h2 B with all $nkeys)"
# What each gateway's metrics say it did, to check that each variant
# measured what it is named after.
for n in ba_memory ba_shared ba_miss flood ext_authz; do
  curl -fsS "http://127.0.0.1:${admin[$n]}/metrics" | python3 -c 'import re, sys
sums = {}
for line in sys.stdin:
    m = re.match(r"\w+?_(decisions|cache_answers)_total\{(.*)\} (\S+)", line)
    if m:
        labels = dict(re.findall(r"(\w+)=\"([^\"]*)\"", m.group(2)))
        k = (m.group(1), labels.get("code") if "front_end" in labels else labels.get("tier"))
        if k[1]:
            sums[k] = sums.get(k, 0) + float(m.group(3))
print(sys.argv[1] + ":", "decisions", {c: int(v) for (f, c), v in sums.items() if f == "decisions"},
      "answered by", {c: int(v) for (f, c), v in sums.items() if f == "cache_answers" and v})' "$n"
done

# The better_auth handler's own CPU, from a profile under load: its
# cumulative time minus the reverse_proxy it calls.
prof_secs=$((secs > 5 ? secs : 5))
wrk_keys "${port[ba_memory]}" "$dir/keys" "$((prof_secs + 2))" >"$dir/prof.wrk" &
wrk_pid=$! pids+=($!)
sleep 1
curl -fsS -o "$dir/cpu.prof" "http://127.0.0.1:${admin[ba_memory]}/debug/pprof/profile?seconds=$prof_secs"
wait "$wrk_pid"
rps=$(awk '/Requests\/sec/ {print $2}' "$dir/prof.wrk")
go tool pprof -top -cum -unit=ms "$dir/caddy" "$dir/cpu.prof" 2>/dev/null >"$dir/prof.txt"
cum() { awk -v f="$1" '$0 ~ f {gsub("ms","",$4); print $4; exit}' "$dir/prof.txt"; }
handler=$(cum 'caddyauth.\(\*Handler\).ServeHTTP$')
proxy=$(cum 'reverseproxy.\(\*Handler\).ServeHTTP$')
total=$(awk '/Total samples/ {for (i=1;i<=NF;i++) if ($i=="=") {v=$(i+1); gsub("ms","",v); print v}}' "$dir/prof.txt")
awk -v h="$handler" -v p="$proxy" -v t="$total" -v r="$rps" -v s="$prof_secs" 'BEGIN {
  printf "profile: %.0f rps; better_auth handler itself: %.0f ms of %.0f ms CPU (%.1f%%), %.2f us per request\n",
    r, h - p, t, 100 * (h - p) / t, (h - p) * 1000 / (r * s) }'
