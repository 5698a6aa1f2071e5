package integration

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// usageShell is real Better-Auth, kept running (seed.mjs usage-shell):
// it creates keys, verifies them, moves their clocks back and reads
// their rows.
type usageShell struct {
	mu  sync.Mutex
	in  io.WriteCloser
	out *bufio.Scanner
}

func startUsageShell(t testing.TB, db string) *usageShell {
	t.Helper()
	cmd := exec.Command("node", "seed.mjs", "usage-shell")
	cmd.Dir = filepath.Join(testenv.RepoRoot(), "integration", "seed")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+db, "BETTER_AUTH_SECRET="+testenv.Secret)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); cmd.Wait() })
	s := &usageShell{in: in, out: bufio.NewScanner(out)}
	s.out.Buffer(make([]byte, 1<<20), 1<<20)
	return s
}

func (s *usageShell) do(t testing.TB, cmd map[string]any, out any) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	b, _ := json.Marshal(cmd)
	if _, err := s.in.Write(append(b, '\n')); err != nil {
		t.Fatal(err)
	}
	if !s.out.Scan() {
		t.Fatalf("usage-shell %s: no answer (%v)", b, s.out.Err())
	}
	if err := json.Unmarshal(s.out.Bytes(), out); err != nil {
		t.Fatalf("usage-shell %s: %v: %s", b, err, s.out.Bytes())
	}
}

func (s *usageShell) create(t testing.TB, userID string, body map[string]any) testenv.Key {
	t.Helper()
	var k testenv.Key
	s.do(t, map[string]any{"op": "create", "userId": userID, "body": body}, &k)
	return k
}

type usageRow struct {
	Remaining, RequestCount                                *int64
	CreatedAt, LastRefillAt, LastRequest, UpdatedAt        *int64
	LastRefillAtStored, LastRequestStored, UpdatedAtStored any
}

func (s *usageShell) row(t *testing.T, id string) *usageRow {
	t.Helper()
	var r *usageRow
	s.do(t, map[string]any{"op": "row", "id": id}, &r)
	return r
}

// code is a gateway answer as Better-Auth names it.
func code(r result) string {
	if r.status == http.StatusOK {
		return "OK"
	}
	return r.body.Code
}

// Differential: the same sequences of verifies, with time moved by
// rewriting the rows' dates, through real Better-Auth's verifyApiKey on one
// key and through the gateway on a twin created alike: the same decisions,
// and the same counters on the rows.
//
// With usage redis, the uses are counted in Redis and the rows compared
// once written back; time is moved on the rows once they are, and the
// triggers make the gateways read them again.
func TestUsageMatchesBetterAuth(t *testing.T) {
	t.Parallel()
	for _, mode := range []struct {
		name                 string
		sqlite, mysql, redis bool
	}{{"postgres", false, false, false}, {"sqlite", true, false, false}, {"mysql", false, true, false}, {"redis", false, false, true}} {
		sqlite := mode.sqlite
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			var f *testenv.Fixture
			var gw *testenv.Caddy
			var counted *usageRedis
			if mode.redis {
				f = seedWithTriggers(t, testenv.SeedOptions{})
				counted = newUsageRedis(t)
				gw = startGateway(t, f.DatabaseURL, newUpstream(t), counted.config()+"\n\t\tcache {\n\t\t\tttl 1h\n\t\t}")
				settle(t, gw, true)
			} else {
				f = testenv.Seed(t, testenv.SeedOptions{SQLite: sqlite, MySQL: mode.mysql})
				gw = startGateway(t, f.DatabaseURL, newUpstream(t), "usage database\n\t\tcache {\n\t\t\tttl 1h\n\t\t}")
			}
			ba := startUsageShell(t, f.DatabaseURL)
			type step struct {
				op   string // "v": verify both; "age": move time back ms
				ms   int64
				want string // the code both must give
			}
			v := func(want string) step { return step{op: "v", want: want} }
			age := func(ms int64) step { return step{op: "age", ms: ms} }
			for _, sc := range []struct {
				name  string
				body  map[string]any
				steps []step
				last  bool // the last step exhausts a key without refill, which Better-Auth then deletes
			}{
				{"quota", map[string]any{"remaining": 3, "rateLimitEnabled": false},
					[]step{v("OK"), v("OK"), v("OK"), v("USAGE_EXCEEDED")}, true},
				{"refill", map[string]any{"remaining": 2, "refillAmount": 3, "refillInterval": 60000, "rateLimitEnabled": false},
					[]step{v("OK"), v("OK"), v("USAGE_EXCEEDED"), age(30000), v("USAGE_EXCEEDED"), age(31000),
						v("OK"), v("OK"), v("OK"), v("USAGE_EXCEEDED")}, false},
				{"rate limit", map[string]any{"rateLimitTimeWindow": 60000, "rateLimitMax": 3},
					[]step{v("OK"), v("OK"), v("OK"), v("RATE_LIMITED"), age(30000), v("RATE_LIMITED"), age(31000),
						v("OK"), v("OK"), age(59000), v("OK"), v("RATE_LIMITED")}, false},
				{"default key: 10 per day", map[string]any{},
					[]step{v("OK"), v("OK"), v("OK"), v("OK"), v("OK"), v("OK"), v("OK"), v("OK"), v("OK"), v("OK"),
						v("RATE_LIMITED")}, false},
				{"a rate-limited call spends remaining", map[string]any{"remaining": 4, "rateLimitTimeWindow": 60000, "rateLimitMax": 2},
					[]step{v("OK"), v("OK"), v("RATE_LIMITED"), age(61000), v("OK")}, false},
				{"refill and rate limit", map[string]any{"remaining": 1, "refillAmount": 2, "refillInterval": 1000,
					"rateLimitTimeWindow": 60000, "rateLimitMax": 2},
					[]step{v("OK"), v("USAGE_EXCEEDED"), age(1500), v("OK"), v("RATE_LIMITED"), age(61000), v("OK"),
						v("OK"), v("USAGE_EXCEEDED")}, false},
			} {
				t.Run(sc.name, func(t *testing.T) {
					theirs := ba.create(t, f.Users.Alice.ID, sc.body)
					ours := ba.create(t, f.Users.Alice.ID, sc.body)
					for i, s := range sc.steps {
						if s.op == "age" {
							if counted != nil {
								counted.flushed(t)
							}
							ba.do(t, map[string]any{"op": "age", "ids": []string{theirs.ID, ours.ID}, "ms": s.ms}, &struct{}{})
							if counted != nil {
								counted.reseeded(t, ours.ID)
							}
							continue
						}
						var got struct {
							Code       string
							TryAgainIn *int64
						}
						ba.do(t, map[string]any{"op": "verify", "key": theirs.Key}, &got)
						r := send(t, gw, "/", h("X-Api-Key", ours.Key))
						if got.Code != s.want || code(r) != s.want {
							t.Fatalf("step %d: Better-Auth %s, gateway %d %s; want %s", i, got.Code, r.status, code(r), s.want)
						}
						if got.TryAgainIn != nil {
							want := (*got.TryAgainIn + 999) / 1000
							if ra, _ := strconv.ParseInt(r.header.Get("Retry-After"), 10, 64); ra < want-1 || ra > want+1 {
								t.Errorf("step %d: Retry-After %q, Better-Auth's tryAgainIn %d ms", i, r.header.Get("Retry-After"), *got.TryAgainIn)
							}
						}
					}
					if sc.last {
						// Better-Auth deleted its key at the last step; the gateway
						// leaves rows to the app.
						if ba.row(t, theirs.ID) != nil {
							t.Errorf("Better-Auth kept its exhausted key")
						}
						return
					}
					if counted != nil {
						counted.flushed(t)
					}
					a, b := ba.row(t, theirs.ID), ba.row(t, ours.ID)
					if a == nil || b == nil {
						t.Fatalf("rows: %+v %+v", a, b)
					}
					same := func(what string, x, y *int64) {
						if (x == nil) != (y == nil) || x != nil && *x != *y {
							t.Errorf("%s: Better-Auth's %v, the gateway's %v", what, deref(x), deref(y))
						}
					}
					same("remaining", a.Remaining, b.Remaining)
					same("requestCount", a.RequestCount, b.RequestCount)
					if (a.LastRefillAt == nil) != (b.LastRefillAt == nil) || (a.LastRequest == nil) != (b.LastRequest == nil) {
						t.Errorf("dates set: Better-Auth's %+v, the gateway's %+v", a, b)
					}
					if *b.UpdatedAt <= *b.CreatedAt {
						t.Errorf("the gateway did not write updatedAt: %+v", b)
					}
					switch {
					case mode.mysql:
						// datetime(3) holds milliseconds; the dates are UTC wall
						// time, as mysql2 with timezone "Z" writes and reads them:
						// both rows were last written moments ago.
						if d := *a.UpdatedAt - *b.UpdatedAt; d < -60000 || d > 60000 {
							t.Errorf("updatedAt: Better-Auth's %d, the gateway's %d: %d ms apart", *a.UpdatedAt, *b.UpdatedAt, d)
						}
					case sqlite:
						iso := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)
						for _, v := range []any{b.LastRefillAtStored, b.LastRequestStored, b.UpdatedAtStored} {
							if s, ok := v.(string); v != nil && (!ok || !iso.MatchString(s)) {
								t.Errorf("the gateway stored a date as %#v, not as Better-Auth's ISO text", v)
							}
						}
					default:
						assertMillis(t, f.DatabaseURL, ours.ID)
					}
				})
			}
		})
	}
}

func deref(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

// assertMillis checks that the gateway wrote PostgreSQL dates at the
// millisecond, as JavaScript reads and compares them.
func assertMillis(t *testing.T, db, id string) {
	t.Helper()
	c, err := pgx.Connect(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var bad int
	err = c.QueryRow(context.Background(), `SELECT
		COALESCE((extract(microseconds FROM "lastRefillAt")::bigint % 1000 <> 0)::int, 0) +
		COALESCE((extract(microseconds FROM "lastRequest")::bigint % 1000 <> 0)::int, 0) +
		COALESCE((extract(microseconds FROM "updatedAt")::bigint % 1000 <> 0)::int, 0)
		FROM apikey WHERE id = $1`, id).Scan(&bad)
	if err != nil || bad != 0 {
		t.Errorf("dates below the millisecond on the gateway's row (%d), err %v", bad, err)
	}
}

// Three gateways and 200 concurrent requests: exactly the quota passes, and
// never more than the rate limit; the headers tell what is left.
func TestUsageAcrossGateways(t *testing.T) {
	t.Parallel()
	t.Run("database", func(t *testing.T) { t.Parallel(); acrossGateways(t, testenv.SeedOptions{}, nil) })
	t.Run("mysql", func(t *testing.T) { t.Parallel(); acrossGateways(t, testenv.SeedOptions{MySQL: true}, nil) })
	t.Run("redis", func(t *testing.T) { t.Parallel(); acrossGateways(t, testenv.SeedOptions{}, newUsageRedis(t)) })
}

func acrossGateways(t *testing.T, seed testenv.SeedOptions, counted *usageRedis) {
	f := testenv.Seed(t, seed)
	ba := startUsageShell(t, f.DatabaseURL)
	up := newUpstream(t)
	config := "usage database"
	if counted != nil {
		config = counted.config()
	}
	var gws []*testenv.Caddy
	for range 3 {
		gws = append(gws, startGateway(t, f.DatabaseURL, up, config))
	}
	burst := func(key string, n int) map[string]int {
		var mu sync.Mutex
		codes := map[string]int{}
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				r := send(t, gws[i%len(gws)], "/", h("X-Api-Key", key))
				mu.Lock()
				codes[code(r)]++
				mu.Unlock()
			})
		}
		wg.Wait()
		return codes
	}
	quota := ba.create(t, f.Users.Alice.ID, map[string]any{"remaining": 50, "rateLimitEnabled": false})
	if got := burst(quota.Key, 200); got["OK"] != 50 || got["USAGE_EXCEEDED"] != 150 {
		t.Errorf("remaining 50: %v", got)
	}
	if counted != nil {
		counted.flushed(t)
	}
	if r := ba.row(t, quota.ID); r == nil || *r.Remaining != 0 {
		t.Errorf("row after: %+v", r)
	}
	limited := ba.create(t, f.Users.Alice.ID, map[string]any{"rateLimitTimeWindow": 3_600_000, "rateLimitMax": 20})
	if got := burst(limited.Key, 200); got["OK"] != 20 || got["RATE_LIMITED"] != 180 {
		t.Errorf("20 per hour: %v", got)
	}

	// What is left, upstream and to the client; a client's own claim is
	// not passed on.
	k := ba.create(t, f.Users.Alice.ID, map[string]any{"remaining": 5, "rateLimitTimeWindow": 60000, "rateLimitMax": 3})
	r := send(t, gws[0], "/", h("X-Api-Key", k.Key, "X-Auth-Key-Remaining", "1000000"))
	if r.status != 200 || up.headers(r.id).Get("X-Auth-Key-Remaining") != "4" {
		t.Fatalf("upstream saw remaining %q (status %d)", up.headers(r.id).Values("X-Auth-Key-Remaining"), r.status)
	}
	if p, s := r.header.Get("RateLimit-Policy"), r.header.Get("RateLimit"); p != `"api-key-rate-limit";q=3;w=60` || s != `"api-key-rate-limit";r=2;t=60` {
		t.Errorf("RateLimit-Policy %q, RateLimit %q", p, s)
	}
	send(t, gws[1], "/", h("X-Api-Key", k.Key))
	send(t, gws[2], "/", h("X-Api-Key", k.Key))
	r = send(t, gws[0], "/", h("X-Api-Key", k.Key))
	if r.status != 429 || r.body.Code != "RATE_LIMITED" || r.header.Get("Retry-After") == "" || r.header.Get("RateLimit") == "" {
		t.Errorf("limited: %d %s, Retry-After %q, RateLimit %q", r.status, r.body.Code, r.header.Get("Retry-After"), r.header.Get("RateLimit"))
	}
}

// The app's own verifyApiKey and the gateway on one key at once: together
// they let exactly the quota through. (The key refills, hours from now, so
// that Better-Auth does not delete it when it runs out: its verifies that
// spent a use and then found the row deleted by another answer
// INVALID_API_KEY, and would blur the count.)
func TestUsageBesideTheApp(t *testing.T) {
	t.Parallel()
	t.Run("postgres", func(t *testing.T) { t.Parallel(); besideTheApp(t, testenv.SeedOptions{}) })
	// On MySQL, Better-Auth's incrementOne and the gateway's claim are
	// both transactions that lock the row with SELECT ... FOR UPDATE.
	t.Run("mysql", func(t *testing.T) { t.Parallel(); besideTheApp(t, testenv.SeedOptions{MySQL: true}) })
}

func besideTheApp(t *testing.T, seed testenv.SeedOptions) {
	f := testenv.Seed(t, seed)
	ba := startUsageShell(t, f.DatabaseURL)
	gw := startGateway(t, f.DatabaseURL, newUpstream(t), "usage database")
	k := ba.create(t, f.Users.Alice.ID, map[string]any{"remaining": 60, "refillAmount": 60, "refillInterval": 3_600_000,
		"rateLimitEnabled": false})
	var theirs struct{ Codes map[string]int }
	ours := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	wg.Go(func() { ba.do(t, map[string]any{"op": "verify-many", "key": k.Key, "n": 40}, &theirs) })
	for range 40 {
		wg.Go(func() {
			r := send(t, gw, "/", h("X-Api-Key", k.Key))
			mu.Lock()
			ours[code(r)]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if total := theirs.Codes["OK"] + ours["OK"]; total != 60 {
		t.Errorf("%d uses passed of 60: Better-Auth %v, gateway %v", total, theirs.Codes, ours)
	}
	for c := range ours {
		if c != "OK" && c != "USAGE_EXCEEDED" {
			t.Errorf("gateway answered %s: %v", c, ours)
		}
	}
}

// usageRedis is the Redis that usage redis counts in, under a prefix of
// the test's own.
type usageRedis struct {
	url, prefix string
	c           *redis.Client
}

func newUsageRedis(t *testing.T) *usageRedis {
	url := testenv.Require(t, "TEST_REDIS_URL")
	return &usageRedis{url: url, prefix: "usage-" + strings.ToLower(rand.Text()[:10]) + ":", c: redisClient(t, url)}
}

func (u *usageRedis) config() string {
	return fmt.Sprintf(`usage redis {
			flush_interval 50ms
		}
		redis %s {
			prefix %s
		}`, u.url, u.prefix)
}

// flushed waits until no use counted in Redis is still to be written to
// the database.
func (u *usageRedis) flushed(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := u.c.ZCard(context.Background(), u.prefix+"{usage}:dirty").Result()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d keys' uses still not written to the database", n)
		}
	}
}

// reseeded waits until the gateway has heard that a key's row changed and
// will read it again (or holds nothing for it).
func (u *usageRedis) reseeded(t *testing.T, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	key := u.prefix + "{usage}:key:" + id
	for {
		// A change counted (rs) past the count the hash was seeded at.
		vs, err := u.c.HMGet(context.Background(), key, "rs", "rss").Result()
		if err == nil && (u.c.Exists(context.Background(), key).Val() == 0 || fmt.Sprint(vs[0]) != fmt.Sprint(vs[1]) && vs[0] != nil) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway never marked key %s to be read again (%v %v)", id, vs, err)
		}
	}
}

// A gateway killed in the middle of a burst loses no use: what it counted
// is in Redis, and another gateway writes it to the row.
func TestUsageRedisSurvivesAKill(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{})
	ba := startUsageShell(t, f.DatabaseURL)
	counted := newUsageRedis(t)
	up := newUpstream(t)
	// The victim never writes to the database itself.
	victim := startGateway(t, f.DatabaseURL, up, strings.Replace(counted.config(), "50ms", "1h", 1))
	other := startGateway(t, f.DatabaseURL, up, counted.config())
	k := ba.create(t, f.Users.Alice.ID, map[string]any{"remaining": 1000, "rateLimitEnabled": false})
	// A gateway starts writing uses back with its first request.
	if r := send(t, other, "/", h("X-Api-Key", k.Key)); r.status != 200 {
		t.Fatalf("first request: %d %s", r.status, r.raw)
	}

	var ok atomic.Int64
	answered := make(chan struct{}, 200)
	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, victim.URL+"/", nil)
			req.Header.Set("X-Api-Key", k.Key)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return // the gateway died under it
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				ok.Add(1)
			}
			answered <- struct{}{}
		})
	}
	for range 40 {
		<-answered
	}
	if err := syscall.Kill(victim.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	counted.flushed(t)
	left, err := counted.c.HGet(context.Background(), counted.prefix+"{usage}:key:"+k.ID, "r").Int64()
	if err != nil {
		t.Fatal(err)
	}
	row := ba.row(t, k.ID)
	if row == nil || *row.Remaining != left {
		t.Fatalf("the row says %v remaining, Redis %d", row, left)
	}
	if spent := 1000 - 1 - left; spent < ok.Load() {
		t.Fatalf("%d uses answered 200, only %d written", ok.Load(), spent)
	}
	t.Logf("%d uses answered before the kill, %d counted and written", ok.Load(), 1000-1-left)
}
