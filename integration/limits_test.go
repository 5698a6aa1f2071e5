package integration

import (
	"crypto/rand"
	"fmt"
	"strings"
	"testing"

	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// limitedPair starts two Caddy processes (two replicas) behind a trusted
// proxy that names the clients, sharing one Redis under a fresh prefix,
// with extra lines in their better_auth blocks.
func limitedPair(t *testing.T, extra string) (a, b *testenv.Caddy, f *testenv.Fixture, up *upstream) {
	t.Helper()
	redisURL := testenv.Require(t, "TEST_REDIS_URL")
	f = testenv.Seed(t, testenv.SeedOptions{})
	up = newUpstream(t)
	prefix := "limits-" + strings.ToLower(rand.Text()[:8]) + ":"
	start := func() *testenv.Caddy {
		return testenv.StartCaddy(t, "servers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}", fmt.Sprintf(`
	better_auth {
		database {env.DATABASE_URL}
		secret {env.BETTER_AUTH_SECRET}
		redis {env.CACHE_REDIS_URL} {
			prefix %s
		}
		%s
	}
	reverse_proxy %s`, prefix, extra, up.addr()),
			"DATABASE_URL="+f.DatabaseURL, "BETTER_AUTH_SECRET="+testenv.Secret, "CACHE_REDIS_URL="+redisURL)
	}
	return start(), start(), f, up
}

func from(client string, kv ...string) map[string][]string {
	hdr := h(kv...)
	hdr.Set("X-Forwarded-For", client)
	return hdr
}

// A rate_limit tier of 5 per hour for each user, on two replicas sharing a
// Redis: 5 requests pass in total, whichever replica they reach; the rest
// get 429 RATE_LIMIT_EXCEEDED with Retry-After and never reach the
// upstream. A refused credential spends nothing.
func TestRateLimitAcrossReplicas(t *testing.T) {
	t.Parallel()
	a, b, f, up := limitedPair(t, "rate_limit per-user {\n\t\t\tkey user\n\t\t\trate 5/1h\n\t\t}")
	// Unknown keys first: refused before the limits, they spend none.
	for i := range 5 {
		if r := send(t, a, "/", h("X-Api-Key", fmt.Sprint("ba_unknown_", i))); r.status != 401 {
			t.Fatalf("an unknown key: %d %s", r.status, r.raw)
		}
	}
	counts := map[int]int{}
	for i := range 20 {
		gw := a
		if i%2 == 1 {
			gw = b
		}
		r := send(t, gw, "/", h("X-Api-Key", f.Keys.Valid.Key))
		counts[r.status]++
		if reached := up.headers(r.id) != nil; reached != (r.status == 200) {
			t.Fatalf("%d reached the upstream: %v", r.status, reached)
		}
		if r.status == 429 {
			if r.body.Code != "RATE_LIMIT_EXCEEDED" || r.header.Get("Retry-After") == "" {
				t.Fatalf("429 %v %s", r.header, r.raw)
			}
			// 5 per hour: one every 12 minutes.
			if ra := r.header.Get("Retry-After"); ra > "720" || len(ra) != 3 {
				t.Fatalf("Retry-After %s, want at most 720", ra)
			}
		}
	}
	if counts[200] != 5 || counts[429] != 15 {
		t.Fatalf("answers across the two replicas: %v; want 5 passes and 15 refusals", counts)
	}
}

// The brute-force shield shared through Redis: a client that guessed on
// replica A is refused by replica B, which never saw it, before any
// lookup, even with a valid key; another client's valid key passes on B.
func TestSharedShieldAcrossReplicas(t *testing.T) {
	t.Parallel()
	a, b, f, _ := limitedPair(t, "brute_force {\n\t\t\tfailures 5\n\t\t\twindow 1h\n\t\t}")
	const guesser, user = "203.0.113.5", "203.0.113.6"
	if r := send(t, a, "/", from(guesser, "X-Api-Key", f.Keys.Valid.Key)); r.status != 200 {
		t.Fatalf("the guesser's valid key before any guess: %d %s", r.status, r.raw)
	}
	counts := map[int]int{}
	for i := range 10 {
		r := send(t, a, "/", from(guesser, "X-Api-Key", fmt.Sprintf("ba_guess_%d_%s", i, strings.ToLower(rand.Text()))))
		counts[r.status]++
	}
	if counts[401] != 5 || counts[429] != 5 {
		t.Fatalf("answers to the guesser on A: %v; want 5 lookups and 5 refusals", counts)
	}
	// B has not heard of the guesser: it asks Redis.
	r := send(t, b, "/", from(guesser, "X-Api-Key", f.Keys.Valid.Key))
	if r.status != 429 || r.body.Code != "TOO_MANY_FAILURES" || r.header.Get("Retry-After") == "" {
		t.Fatalf("the guesser's valid key on B: %d %v %s", r.status, r.header, r.raw)
	}
	if r := send(t, b, "/", from(user, "X-Api-Key", f.Keys.Valid.Key)); r.status != 200 {
		t.Fatalf("another client's valid key on B: %d %s", r.status, r.raw)
	}
}
