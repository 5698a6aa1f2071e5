package ratelimit

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
	"github.com/caddy-betterauth/caddy-betterauth/rediscache"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func decision(user, cred string) betterauth.Decision {
	return betterauth.Decision{Method: betterauth.MethodAPIKey, CredentialID: cred, User: &betterauth.User{ID: user}}
}

func mustLimiter(t testing.TB, s *Store, ts ...Tier) *Limiter {
	t.Helper()
	l, err := s.Limiter(ts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// GCRA: burst requests at once, then one per interval; the wait is exact.
func TestGCRAWithAClock(t *testing.T) {
	t.Parallel()
	c := &clock{t0}
	s := NewStore(Options{Now: c.now})
	l := mustLimiter(t, s, Tier{Name: "per-user", Key: KeyUser, Rate: 5, Per: time.Minute})
	ctx, d := context.Background(), decision("u1", "k1")
	for i := range 5 {
		if wait, limited := l.Limit(ctx, d, netip.Addr{}); limited {
			t.Fatalf("request %d limited (wait %v)", i+1, wait)
		}
	}
	wait, limited := l.Limit(ctx, d, netip.Addr{})
	if !limited || wait != 12*time.Second {
		t.Fatalf("6th request: limited %v, wait %v; want 12s", limited, wait)
	}
	if _, limited := l.Limit(ctx, decision("u2", "k2"), netip.Addr{}); limited {
		t.Fatal("another user was limited")
	}
	c.t = c.t.Add(12*time.Second - time.Nanosecond)
	if _, limited := l.Limit(ctx, d, netip.Addr{}); !limited {
		t.Fatal("allowed before the wait was over")
	}
	c.t = c.t.Add(time.Nanosecond)
	if _, limited := l.Limit(ctx, d, netip.Addr{}); limited {
		t.Fatal("still limited once the wait was over")
	}
	if _, limited := l.Limit(ctx, d, netip.Addr{}); !limited {
		t.Fatal("two requests passed on one interval")
	}
	// Burst 1: evenly spaced only.
	l1 := mustLimiter(t, s, Tier{Name: "smooth", Key: KeyGlobal, Rate: 10, Per: time.Second, Burst: 1})
	if _, limited := l1.Limit(ctx, d, netip.Addr{}); limited {
		t.Fatal("first request limited")
	}
	if wait, limited := l1.Limit(ctx, d, netip.Addr{}); !limited || wait != 100*time.Millisecond {
		t.Fatalf("burst 1: limited %v wait %v", limited, wait)
	}
}

// Tiers are checked in order, and all or none are spent: a request the
// second tier refuses leaves the first untouched.
func TestTiersAllOrNone(t *testing.T) {
	t.Parallel()
	c := &clock{t0}
	s := NewStore(Options{Now: c.now})
	l := mustLimiter(t, s,
		Tier{Name: "user", Key: KeyUser, Rate: 3, Per: time.Hour},
		Tier{Name: "everyone", Key: KeyGlobal, Rate: 2, Per: time.Hour})
	alice := mustLimiter(t, s, Tier{Name: "user", Key: KeyUser, Rate: 3, Per: time.Hour})
	ctx := context.Background()
	for range 2 {
		if _, limited := l.Limit(ctx, decision("alice", "k"), netip.Addr{}); limited {
			t.Fatal("limited early")
		}
	}
	for range 5 {
		if _, limited := l.Limit(ctx, decision("alice", "k"), netip.Addr{}); !limited {
			t.Fatal("the global tier let a third request through")
		}
	}
	// Alice spent 2 of her 3 on the user tier, not 7.
	if _, limited := alice.Limit(ctx, decision("alice", "k"), netip.Addr{}); limited {
		t.Fatal("refused requests spent the first tier")
	}
	if _, limited := alice.Limit(ctx, decision("alice", "k"), netip.Addr{}); !limited {
		t.Fatal("the user tier allowed a fourth request")
	}
}

// Each key kind counts apart; a tier whose key a request lacks is skipped;
// IPv6 clients count by /64.
func TestKeys(t *testing.T) {
	t.Parallel()
	s := NewStore(Options{})
	ctx := context.Background()
	one := func(k Key) *Limiter {
		return mustLimiter(t, s, Tier{Name: "one-" + k.String(), Key: k, Rate: 1, Per: time.Hour})
	}
	ip := one(KeyIP)
	a, b := netip.MustParseAddr("2001:db8:1:2::1"), netip.MustParseAddr("2001:db8:1:2:ffff::9")
	if _, limited := ip.Limit(ctx, decision("u", "k"), a); limited {
		t.Fatal("first")
	}
	if _, limited := ip.Limit(ctx, decision("v", "j"), b); !limited {
		t.Fatal("another address of the same /64 was not limited")
	}
	if _, limited := ip.Limit(ctx, decision("u", "k"), netip.MustParseAddr("2001:db8:1:3::1")); limited {
		t.Fatal("another /64 was limited")
	}
	if _, limited := ip.Limit(ctx, decision("u", "k"), netip.Addr{}); limited {
		t.Fatal("an unknown address was limited")
	}
	if !ip.UsesClient() || one(KeyUser).UsesClient() {
		t.Fatal("UsesClient")
	}
	cred := one(KeyCredential)
	cred.Limit(ctx, decision("u", "k1"), netip.Addr{})
	if _, limited := cred.Limit(ctx, decision("u", "k2"), netip.Addr{}); limited {
		t.Fatal("a user's second key shares the first's bucket")
	}
	org := one(KeyOrganization)
	for range 3 {
		if _, limited := org.Limit(ctx, decision("u", "k"), netip.Addr{}); limited {
			t.Fatal("an organization tier limited a request without an organization")
		}
	}
	// An organization's key and a member's session acting for it share
	// its bucket.
	orgKey := betterauth.Decision{Method: betterauth.MethodAPIKey, CredentialID: "ok", Org: &betterauth.Organization{ID: "acme"}}
	member := decision("zoe", "s1")
	member.Member = &betterauth.Membership{OrgID: "acme"}
	if _, limited := org.Limit(ctx, orgKey, netip.Addr{}); limited {
		t.Fatal("the organization's first request was limited")
	}
	if _, limited := org.Limit(ctx, member, netip.Addr{}); !limited {
		t.Fatal("a member's session acting for the organization has a bucket of its own")
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	good := Tier{Name: "a_b-9", Key: KeyUser, Rate: 1, Per: time.Second}
	if err := ValidateTiers([]Tier{good}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []Tier{
		{Name: "", Key: KeyUser, Rate: 1, Per: time.Second},
		{Name: "Upper", Key: KeyUser, Rate: 1, Per: time.Second},
		{Name: "has space", Key: KeyUser, Rate: 1, Per: time.Second},
		{Name: strings.Repeat("a", 33), Key: KeyUser, Rate: 1, Per: time.Second},
		{Name: "x", Key: numKeys, Rate: 1, Per: time.Second},
		{Name: "x", Key: KeyUser, Rate: 0, Per: time.Second},
		{Name: "x", Key: KeyUser, Rate: 10_000_000, Per: time.Second},
		{Name: "x", Key: KeyUser, Rate: 1, Per: time.Second, Burst: -1},
	} {
		if err := ValidateTiers([]Tier{bad}); err == nil {
			t.Errorf("%+v passed", bad)
		}
	}
	if ValidateTiers([]Tier{good, good}) == nil {
		t.Error("a name twice passed")
	}
	var many []Tier
	for i := range MaxTiers + 1 {
		many = append(many, Tier{Name: fmt.Sprint("t", i), Key: KeyUser, Rate: 1, Per: time.Second})
	}
	if ValidateTiers(many) == nil {
		t.Error("too many tiers passed")
	}
	for in, want := range map[string]string{"100/1m": "100 1m0s", "5/s": "5 1s", "3/1h30m": "3 1h30m0s"} {
		n, per, err := ParseRate(in, time.ParseDuration)
		if got := fmt.Sprint(n, " ", per); err != nil || got != want {
			t.Errorf("%s: %s %v", in, got, err)
		}
	}
	for _, in := range []string{"100", "0/1m", "-1/1m", "a/1m", "5/0s", "5/x"} {
		if _, _, err := ParseRate(in, time.ParseDuration); err == nil {
			t.Errorf("%s parsed", in)
		}
	}
}

// A flood of users keeps the in-process buckets within their bound, and
// one limited user's bucket, further from full than any, survives it.
func TestLocalBounded(t *testing.T) {
	t.Parallel()
	c := &clock{t0}
	s := NewStore(Options{Now: c.now, MaxBuckets: 640})
	l := mustLimiter(t, s, Tier{Name: "u", Key: KeyUser, Rate: 2, Per: time.Hour})
	ctx := context.Background()
	for range 2 {
		l.Limit(ctx, decision("heavy", "k"), netip.Addr{})
	}
	for i := range 100_000 {
		c.t = c.t.Add(time.Microsecond)
		l.Limit(ctx, decision(fmt.Sprint("user-", i), "k"), netip.Addr{})
	}
	if n := s.local.len(); n > 640 {
		t.Fatalf("%d buckets, bound 640", n)
	}
	if _, limited := l.Limit(ctx, decision("heavy", "k"), netip.Addr{}); !limited {
		t.Fatal("the flood freed a limited user")
	}
}

// N goroutines against one limit: exactly the burst passes.
func TestLocalConcurrent(t *testing.T) {
	t.Parallel()
	s := NewStore(Options{Now: func() time.Time { return t0 }})
	l := mustLimiter(t, s,
		Tier{Name: "a", Key: KeyUser, Rate: 1000, Per: time.Hour},
		Tier{Name: "b", Key: KeyGlobal, Rate: 100, Per: time.Hour},
		Tier{Name: "c", Key: KeyCredential, Rate: 1000, Per: time.Hour})
	if n := concurrently(t, l, 64, 20); n != 100 {
		t.Fatalf("%d passed, want 100", n)
	}
}

func concurrently(t *testing.T, l *Limiter, workers, each int) int64 {
	t.Helper()
	var passed atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range workers {
		wg.Go(func() {
			<-start
			for range each {
				if _, limited := l.Limit(context.Background(), decision("u", "k"), netip.Addr{}); !limited {
					passed.Add(1)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	return passed.Load()
}

func redisStore(t *testing.T) (*Store, redis.UniversalClient, string) { return redisStoreB(t) }

func redisStoreB(t testing.TB) (*Store, redis.UniversalClient, string) {
	t.Helper()
	url := testenv.Require(t, "TEST_REDIS_URL")
	c, err := rediscache.Open(rediscache.Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	prefix := "rl-test-" + strings.ToLower(rand.Text()[:8]) + ":"
	return NewStore(Options{Redis: c, Prefix: prefix}), c, prefix
}

// The script against the real Redis: the burst, then refusals with a wait
// of about one interval; the keys expire when the bucket is full again.
func TestRedisScript(t *testing.T) {
	t.Parallel()
	s, c, prefix := redisStore(t)
	l := mustLimiter(t, s, Tier{Name: "per-user", Key: KeyUser, Rate: 5, Per: time.Minute})
	ctx, d := context.Background(), decision("u1", "k1")
	for i := range 5 {
		if _, limited := l.Limit(ctx, d, netip.Addr{}); limited {
			t.Fatalf("request %d limited", i+1)
		}
	}
	wait, limited := l.Limit(ctx, d, netip.Addr{})
	if !limited || wait <= 11*time.Second || wait > 12*time.Second {
		t.Fatalf("6th: limited %v wait %v; want just under 12s", limited, wait)
	}
	key := prefix + "rl:per-user:user:u1"
	ttl, err := c.PTTL(ctx, key).Result()
	if err != nil || ttl <= 59*time.Second || ttl > time.Minute {
		t.Fatalf("the bucket expires in %v (%v); want about a minute", ttl, err)
	}
	if s.local.len() != 0 {
		t.Fatal("the in-process buckets were used while Redis answered")
	}
}

// Atomic across tiers in Redis: the later tier refusing spends none of
// the earlier ones.
func TestRedisTiersAllOrNone(t *testing.T) {
	t.Parallel()
	s, c, prefix := redisStore(t)
	l := mustLimiter(t, s,
		Tier{Name: "user", Key: KeyUser, Rate: 3, Per: time.Hour},
		Tier{Name: "ip", Key: KeyIP, Rate: 2, Per: time.Hour})
	ctx, d := context.Background(), decision("alice", "k")
	client := netip.MustParseAddr("192.0.2.9")
	for range 2 {
		if _, limited := l.Limit(ctx, d, client); limited {
			t.Fatal("limited early")
		}
	}
	before, _ := c.Get(ctx, prefix+"rl:user:user:alice").Result()
	for range 5 {
		if _, limited := l.Limit(ctx, d, client); !limited {
			t.Fatal("the ip tier let a third request through")
		}
	}
	after, _ := c.Get(ctx, prefix+"rl:user:user:alice").Result()
	if before == "" || before != after {
		t.Fatalf("the user tier moved from %q to %q on refused requests", before, after)
	}
	if _, limited := l.Limit(ctx, d, netip.MustParseAddr("192.0.2.10")); limited {
		t.Fatal("alice from another address: the user tier had been spent")
	}
	if _, limited := l.Limit(ctx, d, netip.MustParseAddr("192.0.2.11")); !limited {
		t.Fatal("the user tier allowed a fourth")
	}
}

// Concurrent requests from two stores (two replicas) on one Redis:
// exactly the burst passes.
func TestRedisConcurrent(t *testing.T) {
	t.Parallel()
	s, c, prefix := redisStore(t)
	other := NewStore(Options{Redis: c, Prefix: prefix})
	tiers := []Tier{{Name: "u", Key: KeyUser, Rate: 1000, Per: time.Hour}, {Name: "g", Key: KeyGlobal, Rate: 50, Per: time.Hour}}
	a, b := mustLimiter(t, s, tiers...), mustLimiter(t, other, tiers...)
	var passed atomic.Int64
	var wg sync.WaitGroup
	for _, l := range []*Limiter{a, b} {
		wg.Go(func() { passed.Add(concurrently(t, l, 16, 10)) })
	}
	wg.Wait()
	if n := passed.Load(); n != 50 {
		t.Fatalf("%d passed across two stores, want 50", n)
	}
	if s.local.len()+other.local.len() != 0 {
		t.Fatal("fell back to in-process buckets")
	}
}

// Values someone else wrote: not numbers count as a full bucket, numbers
// far in the future are capped to one interval's wait, and nothing fails.
func TestRedisGarbage(t *testing.T) {
	t.Parallel()
	s, c, prefix := redisStore(t)
	l := mustLimiter(t, s, Tier{Name: "g", Key: KeyUser, Rate: 2, Per: time.Hour})
	ctx := context.Background()
	for i, v := range []string{"garbage", "", "nan", "-inf", "1e999999", "0x10", " 12 "} {
		user := fmt.Sprint("garbage-", i)
		c.Set(ctx, prefix+"rl:g:user:"+user, v, time.Hour)
		wait, limited := l.Limit(ctx, decision(user, "k"), netip.Addr{})
		if limited && wait > 30*time.Minute+time.Second {
			t.Errorf("%q: limited for %v", v, wait)
		}
	}
	c.Del(ctx, prefix+"rl:g:user:hash")
	c.HSet(ctx, prefix+"rl:g:user:hash", "f", "v")
	if _, limited := l.Limit(ctx, decision("hash", "k"), netip.Addr{}); limited {
		t.Error("a key of another type limited")
	}
	c.Set(ctx, prefix+"rl:g:user:future", "99999999999999999", time.Hour)
	if wait, limited := l.Limit(ctx, decision("future", "k"), netip.Addr{}); !limited || wait > 30*time.Minute+time.Second {
		t.Errorf("a TAT far ahead: limited %v for %v; want at most one interval", limited, wait)
	}
	if s.local.len() != 0 {
		t.Fatal("garbage made the store fall back")
	}
}

// Redis down: requests are counted in process (fail open to local
// limits), never refused for it.
func TestRedisDownFallsBack(t *testing.T) {
	t.Parallel()
	c, err := rediscache.Open(rediscache.Options{URL: "redis://127.0.0.1:1/0", Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := NewStore(Options{Redis: c})
	l := mustLimiter(t, s, Tier{Name: "u", Key: KeyUser, Rate: 2, Per: time.Hour})
	ctx := context.Background()
	for range 2 {
		if _, limited := l.Limit(ctx, decision("u", "k"), netip.Addr{}); limited {
			t.Fatal("limited while Redis is down and the local bucket is full")
		}
	}
	if _, limited := l.Limit(ctx, decision("u", "k"), netip.Addr{}); !limited {
		t.Fatal("the local limits did not apply")
	}
	if s.failed.Count() == 0 || s.local.len() != 1 {
		t.Fatalf("failures %d, local buckets %d", s.failed.Count(), s.local.len())
	}
}
