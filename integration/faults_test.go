package integration

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/cache"
	"github.com/caddy-betterauth/caddy-betterauth/internal/faultproxy"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
	"github.com/caddy-betterauth/caddy-betterauth/pgstore"
)

// Network faults between the gateway and its PostgreSQL or Redis, put there
// by a proxy in the test process (package faultproxy). Whatever the fault,
// no request is allowed that should not be, a lookup that cannot finish
// answers 503 within lookup_timeout, and the gateway recovers without a
// restart once the network does.

// margin is what a 503 may take past lookup_timeout on this loaded test
// machine: a bound on correctness (the request is not left hanging), not a
// speed figure.
const margin = 3 * time.Second

// behindProxy starts a fault proxy in front of the server a URL names and
// returns it with the URL rewritten to go through it.
func behindProxy(t *testing.T, raw string) (*faultproxy.Proxy, string) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	p, err := faultproxy.Start(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	u.Host = p.Addr()
	return p, u.String()
}

// faultClient bounds every request, so that a gateway that hangs fails the
// test instead of stalling it.
var faultClient = &http.Client{Timeout: 60 * time.Second}

// timed sends a GET with hdr and returns the status and how long the
// answer took.
func timed(t *testing.T, gw *testenv.Caddy, hdr http.Header) (int, time.Duration) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, gw.URL+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	began := time.Now()
	resp, err := faultClient.Do(req)
	if err != nil {
		t.Fatalf("%v after %v", err, time.Since(began))
	}
	resp.Body.Close()
	return resp.StatusCode, time.Since(began)
}

// listening reports whether the revocation listener's latest word is that
// it listens (and not that it disconnected).
func listening(logs string) bool {
	return strings.LastIndex(logs, "listening for revocations") > strings.LastIndex(logs, "revocation listener disconnected")
}

// heal puts the proxy back to forwarding everything at once.
func heal(p *faultproxy.Proxy) {
	p.SetLatency(0)
	p.Set(faultproxy.Pass)
}

// unknownKey is a key no database holds, new each time (nothing can answer
// it from a cache).
func unknownKey() http.Header {
	return h("X-Api-Key", "ba_unknown_"+strings.ToLower(rand.Text()))
}

// Each fault on the way to PostgreSQL, one after another on one gateway:
// cached keys keep passing, everything that needs the database gets 503
// within lookup_timeout (a known-bad key may get its cached 401 or 403,
// never a 200), and once the network heals the same gateway answers right
// again.
func TestPostgresFaults(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{})
	p, db := behindProxy(t, f.DatabaseURL)
	up := newUpstream(t)
	const lookupTimeout = time.Second
	// API keys are cached for an hour; sessions practically not at all, so
	// that a session is always a database lookup; unknown keys are never
	// cached.
	gw := startGateway(t, db, up, `lookup_timeout 1s
		cache {
			ttl 1h
			session_ttl 1ns
			negative_ttl off
			jitter off
		}`)
	u, k := f.Users, f.Keys
	cached := h("X-Api-Key", k.Valid.Key)
	session := h("Authorization", "Bearer "+u.Alice.Signed)
	denied := []struct {
		name string
		hdr  http.Header
		want int // the answer with the database reachable
	}{
		{"disabled key", h("X-Api-Key", k.Disabled.Key), 401},
		{"expired key", h("X-Api-Key", k.Expired.Key), 401},
		{"banned user's key", h("X-Api-Key", k.Banned.Key), 403},
	}
	settle(t, gw, false)

	for _, fault := range []struct {
		name string
		set  func()
	}{
		{"latency", func() { p.SetLatency(3 * lookupTimeout) }},
		{"blackhole", func() { p.Set(faultproxy.Blackhole) }},
		{"reset", func() { p.Set(faultproxy.Reset) }},
		{"drop before the reply", func() { p.SetDrop(0) }},
		{"drop mid-reply", func() { p.SetDrop(7) }},
	} {
		t.Run(fault.name, func(t *testing.T) {
			// The listener purges the cache when it reconnects (after the
			// reset): warm the cached key once it listens.
			gw.WaitForLogs(t, "that the listener listens", listening, 30*time.Second)
			for range 2 {
				if s, _ := timed(t, gw, cached); s != 200 {
					t.Fatalf("warming the cached key: %d", s)
				}
			}
			for _, d := range denied {
				if s, _ := timed(t, gw, d.hdr); s != d.want {
					t.Fatalf("before the fault, %s: %d, want %d", d.name, s, d.want)
				}
			}

			fault.set()
			for round := range 3 {
				if s, took := timed(t, gw, cached); s != 200 {
					t.Errorf("round %d, cached key: %d after %v, want 200", round, s, took)
				}
				for _, tc := range []struct {
					name string
					hdr  http.Header
				}{{"session", session}, {"unknown key", unknownKey()}} {
					s, took := timed(t, gw, tc.hdr)
					if s != 503 {
						t.Errorf("round %d, %s: %d after %v, want 503", round, tc.name, s, took)
					}
					if took > lookupTimeout+margin {
						t.Errorf("round %d, %s: answered after %v, lookup_timeout is %v", round, tc.name, took, lookupTimeout)
					}
				}
				for _, d := range denied {
					// Cached as found, or looked up and failed: either way
					// never let through.
					if s, took := timed(t, gw, d.hdr); s != d.want && s != 503 {
						t.Errorf("round %d, %s: %d after %v, want %d or 503", round, d.name, s, took, d.want)
					}
				}
			}

			heal(p)
			back := time.Now()
			for {
				s, _ := timed(t, gw, session)
				if s == 200 {
					break
				}
				if s != 503 {
					t.Fatalf("recovering, session: %d", s)
				}
				if time.Since(back) > 30*time.Second {
					t.Fatal("the gateway did not recover within 30s")
				}
			}
			t.Logf("%s: the session passed again %v after the network healed", fault.name, time.Since(back).Round(time.Millisecond))
			if s, _ := timed(t, gw, unknownKey()); s != 401 {
				t.Errorf("after the fault, unknown key: %d, want 401", s)
			}
			for _, d := range denied {
				if s, _ := timed(t, gw, d.hdr); s != d.want {
					t.Errorf("after the fault, %s: %d, want %d", d.name, s, d.want)
				}
			}
			if s, _ := timed(t, gw, cached); s != 200 {
				t.Errorf("after the fault, cached key: %d", s)
			}
		})
	}
}

// Every pooled connection is stuck behind a blackhole and many more misses
// queue for one: a cached key still answers while they wait.
func TestPoolExhaustionSparesCachedHits(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{})
	p, db := behindProxy(t, f.DatabaseURL)
	db += "&pool_max_conns=2"
	up := newUpstream(t)
	const lookupTimeout = 5 * time.Second
	gw := startGateway(t, db, up, `lookup_timeout 5s
		cache {
			ttl 1h
			negative_ttl off
		}`)
	settle(t, gw, false)
	cached := h("X-Api-Key", f.Keys.Valid.Key)
	for range 2 {
		if s, _ := timed(t, gw, cached); s != 200 {
			t.Fatalf("warming the cached key: %d", s)
		}
	}

	p.Set(faultproxy.Blackhole)
	const misses = 16
	var done atomic.Int32
	statuses, took := make([]int, misses), make([]time.Duration, misses)
	var wg sync.WaitGroup
	for i := range misses {
		wg.Go(func() {
			statuses[i], took[i] = timed(t, gw, unknownKey())
			done.Add(1)
		})
	}
	// The listener's connection and the pool's two, all held.
	deadline := time.Now().Add(lookupTimeout)
	for p.Conns() < 3 && time.Now().Before(deadline) && done.Load() == 0 {
		timed(t, gw, cached)
	}
	if n := p.Conns(); n < 3 {
		t.Fatalf("%d connections through the proxy, want the listener's and the pool's two", n)
	}
	for i := range 10 {
		if s, d := timed(t, gw, cached); s != 200 {
			t.Fatalf("cached key while the pool is exhausted (request %d): %d after %v", i, s, d)
		}
		if n := done.Load(); n > 0 {
			t.Fatalf("%d misses were answered before cached request %d: the pool was not exhausted while it ran", n, i)
		}
	}
	wg.Wait()
	for i, s := range statuses {
		if s != 503 {
			t.Errorf("miss %d behind the blackhole: %d, want 503", i, s)
		}
		if took[i] > lookupTimeout+margin {
			t.Errorf("miss %d answered after %v, lookup_timeout is %v", i, took[i], lookupTimeout)
		}
	}

	heal(p)
	back := time.Now()
	for {
		s, _ := timed(t, gw, unknownKey())
		if s == 401 {
			break
		}
		if s != 503 || time.Since(back) > 30*time.Second {
			t.Fatalf("recovering: %d %v after the network healed", s, time.Since(back))
		}
	}
	if s, _ := timed(t, gw, h("X-Api-Key", f.Keys.Valid2.Key)); s != 200 {
		t.Errorf("after the blackhole, an uncached key: %d", s)
	}
}

// The shared Redis is optional: blackholed or resetting, it costs no
// request a 503 nor a wrong answer (memory and the database answer), and
// once it is back the gateway shares entries through it again.
func TestRedisFaultsCostNothing(t *testing.T) {
	t.Parallel()
	redisURL := testenv.Require(t, "TEST_REDIS_URL")
	p, viaProxy := behindProxy(t, redisURL)
	f := testenv.Seed(t, testenv.SeedOptions{})
	up := newUpstream(t)
	prefix := "faults-" + strings.ToLower(rand.Text()[:8]) + ":"
	// Sessions are cached briefly, so that they go to Redis (and the
	// database) again and again. The Redis timeout is longer than the
	// lookup's: a Redis that does not answer must still leave the database
	// its time.
	gw := testenv.StartCaddy(t, "", fmt.Sprintf(`
	better_auth {
		database {env.DATABASE_URL}
		secret {env.BETTER_AUTH_SECRET}
		lookup_timeout 2s
		redis {env.CACHE_REDIS_URL} {
			prefix %s
			timeout 5s
		}
		cache {
			ttl 1h
			session_ttl 200ms
			negative_ttl off
		}
	}
	reverse_proxy %s`, prefix, up.addr()),
		"DATABASE_URL="+f.DatabaseURL, "BETTER_AUTH_SECRET="+testenv.Secret, "CACHE_REDIS_URL="+viaProxy)
	settle(t, gw, true)
	rdb := redisClient(t, redisURL)
	ctx := context.Background()
	entries := func() []string {
		keys, err := rdb.Keys(ctx, prefix+cache.CodecVersion+":?:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return keys
	}
	k := f.Keys
	cached := h("X-Api-Key", k.Valid.Key)
	session := h("Authorization", "Bearer "+f.Users.Alice.Signed)

	for _, fault := range []struct {
		name string
		mode faultproxy.Mode
		// uncached is a key first read under the fault.
		uncached string
	}{
		{"blackhole", faultproxy.Blackhole, k.Valid2.Key},
		{"reset", faultproxy.Reset, k.Eve.Key},
	} {
		t.Run(fault.name, func(t *testing.T) {
			for range 2 {
				if s, _ := timed(t, gw, cached); s != 200 {
					t.Fatalf("warming the cached key: %d", s)
				}
			}
			p.Set(fault.mode)
			for round := range 3 {
				for _, tc := range []struct {
					name string
					hdr  http.Header
					want int
				}{
					{"cached key", cached, 200},
					{"key first read now", h("X-Api-Key", fault.uncached), 200},
					{"session", session, 200},
					{"unknown key", unknownKey(), 401},
					{"disabled key", h("X-Api-Key", k.Disabled.Key), 401},
					{"banned user's key", h("X-Api-Key", k.Banned.Key), 403},
				} {
					if s, took := timed(t, gw, tc.hdr); s != tc.want {
						t.Errorf("round %d with Redis down (%s), %s: %d after %v, want %d", round, fault.name, tc.name, s, took, tc.want)
					}
				}
			}
			// Nothing shared is left from before: what appears now was
			// written after the network healed.
			if old := entries(); len(old) > 0 {
				rdb.Del(ctx, old...)
			}
			heal(p)
			back := time.Now()
			for len(entries()) == 0 {
				if time.Since(back) > 30*time.Second {
					t.Fatal("the gateway did not write to Redis again within 30s")
				}
				// Past session_ttl, each of these is a miss that reads,
				// then writes, the shared tier.
				if s, _ := timed(t, gw, session); s != 200 {
					t.Fatalf("after Redis came back, session: %d", s)
				}
			}
			t.Logf("%s: Redis used again %v after the network healed", fault.name, time.Since(back).Round(time.Millisecond))
		})
	}
	if logs := gw.Logs(); strings.Contains(logs, "answering 503") {
		t.Errorf("a lookup failed while only Redis was down:\n%s", logs)
	}
}

// The revocation listener's connection is reset, and reconnecting is
// refused for a while: a key revoked meanwhile (its notification lost) is
// still served from the cache, and refused as soon as the listener is
// back, since it purges the cache when it reconnects. The key is cached for
// an hour: only the purge can explain the refusal. The URL carries a pool
// setting, as the docs suggest: the listener and install-triggers, which
// connect outside the pool, must leave it out.
func TestListenerComesBackAndPurges(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{})
	p, db := behindProxy(t, f.DatabaseURL)
	db += "&pool_max_conns=4"
	if out, errOut, code := runCLI(t, "", []string{"DATABASE_URL=" + db}, "install-triggers"); code != 0 || !strings.Contains(out, "installed") {
		t.Fatalf("install-triggers: exit %d\n%s%s", code, out, errOut)
	}
	up := newUpstream(t)
	gw := startGateway(t, db, up, "cache {\n\t\t\tttl 1h\n\t\t}")
	settle(t, gw, false)
	key := h("X-Api-Key", f.Keys.Valid.Key)
	for range 2 {
		if s, _ := timed(t, gw, key); s != 200 {
			t.Fatalf("before: %d", s)
		}
	}

	p.Set(faultproxy.Reset)
	gw.WaitForLog(t, "revocation listener disconnected", 10*time.Second)
	// Straight to the database: the trigger notifies, and nobody listens.
	testenv.Exec(t, f.DatabaseURL, `UPDATE apikey SET enabled = false WHERE id = $1`, f.Keys.Valid.ID)
	if s, _ := timed(t, gw, key); s != 200 {
		t.Fatalf("revoked while nobody listened: %d, want the cached 200 (the test would prove nothing)", s)
	}

	heal(p)
	healed := time.Now()
	gw.WaitForLogCount(t, "listening for revocations", 2, 30*time.Second)
	// The purge comes before the listener says it listens.
	if s, _ := timed(t, gw, key); s != 401 {
		t.Fatalf("after the listener came back: %d, want 401", s)
	}
	t.Logf("the listener was back and the key refused %v after the network healed", time.Since(healed).Round(time.Millisecond))
}

// The revocation listener's connection goes silent for good, as when a NAT
// or load balancer forgets an idle flow: nothing is closed, every byte is
// lost, a revocation's notification with them. The listener's ping notices,
// it reconnects, and the purge refuses the key, cached for an hour, within
// the ping's interval and timeout (pgstore.DefaultPingEvery and
// DefaultPingTimeout). The pooled connections went silent too: they are
// dropped with the listener's, or the lookup after the purge would wait on
// one of them and answer 503.
func TestListenerNoticesASilentConnection(t *testing.T) {
	t.Parallel()
	f := seedWithTriggers(t, testenv.SeedOptions{})
	p, db := behindProxy(t, f.DatabaseURL)
	up := newUpstream(t)
	gw := startGateway(t, db, up, "cache {\n\t\t\tttl 1h\n\t\t}")
	settle(t, gw, false)
	key := h("X-Api-Key", f.Keys.Valid.Key)
	for range 2 {
		if s, _ := timed(t, gw, key); s != 200 {
			t.Fatalf("before: %d", s)
		}
	}

	p.Set(faultproxy.Forget)
	p.Set(faultproxy.Pass) // new connections get through; the listener's stays silent
	testenv.Exec(t, f.DatabaseURL, `UPDATE apikey SET enabled = false WHERE id = $1`, f.Keys.Valid.ID)
	revoked := time.Now()
	gw.WaitForLogCount(t, "listening for revocations", 2, pgstore.DefaultPingEvery+pgstore.DefaultPingTimeout+30*time.Second)
	// The purge comes before the listener says it listens.
	if s, _ := timed(t, gw, key); s != 401 {
		t.Fatalf("after the listener came back: %d, want 401", s)
	}
	if !strings.Contains(gw.Logs(), "did not answer a ping") {
		t.Errorf("the listener reconnected, but not for its ping:\n%s", gw.Logs())
	}
	t.Logf("the revoked key was refused %v after the revocation", time.Since(revoked).Round(time.Millisecond))
}
