package shield

import (
	"context"
	"crypto/rand"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
	"github.com/caddy-betterauth/caddy-betterauth/rediscache"
)

type countingRedis struct {
	redis.Scripter
	mu    sync.Mutex
	calls int
}

func (c *countingRedis) EvalSha(ctx context.Context, sha string, keys []string, args ...any) *redis.Cmd {
	c.mu.Lock()
	c.calls++
	c.mu.Unlock()
	return c.Scripter.EvalSha(ctx, sha, keys, args...)
}

func (c *countingRedis) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

func sharedPair(t *testing.T) (a, b *Shared, rdb redis.UniversalClient, prefix string, ca *countingRedis) {
	t.Helper()
	url := testenv.Require(t, "TEST_REDIS_URL")
	c, err := rediscache.Open(rediscache.Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	prefix = "bf-test-" + strings.ToLower(rand.Text()[:8]) + ":"
	opts := Options{Failures: 5, Window: time.Minute}
	ca = &countingRedis{Scripter: c}
	a = NewShared(SharedOptions{Local: New(opts), Redis: ca, Prefix: prefix})
	b = NewShared(SharedOptions{Local: New(opts), Redis: c, Prefix: prefix})
	return a, b, c, prefix, ca
}

// Failures counted by one replica block the address on the other, which
// never saw them; another address is not blocked; the key expires when
// the failures are forgiven.
func TestSharedAcrossReplicas(t *testing.T) {
	t.Parallel()
	a, b, rdb, prefix, _ := sharedPair(t)
	guesser, other := mustAddr("2001:db8:7:7::1"), mustAddr("198.51.100.1")
	for i := range 5 {
		if _, blocked := a.Blocked(guesser); blocked {
			t.Fatalf("blocked after %d failures", i)
		}
		a.Failed(guesser)
	}
	wait, blocked := b.Blocked(mustAddr("2001:db8:7:7::99")) // same /64
	if !blocked || wait <= 11*time.Second || wait > 12*time.Second {
		t.Fatalf("replica B: blocked %v, wait %v; want just under 12s", blocked, wait)
	}
	if _, blocked := b.Blocked(other); blocked {
		t.Fatal("another address is blocked")
	}
	if b.local.Len() != 0 {
		t.Fatal("replica B counted failures it never saw")
	}
	ttl, err := rdb.PTTL(context.Background(), prefix+"bf:2001:db8:7:7::").Result()
	if err != nil || ttl <= 59*time.Second || ttl > time.Minute {
		t.Fatalf("the account expires in %v (%v); want about a minute", ttl, err)
	}
}

// A client that keeps asking costs one round trip per Fresh, not one per
// request: the account read is reused.
func TestSharedMemo(t *testing.T) {
	t.Parallel()
	a, _, _, _, ca := sharedPair(t)
	c := &clock{t0}
	a.local.now = c.now
	client := mustAddr("192.0.2.50")
	for range 100 {
		if _, blocked := a.Blocked(client); blocked {
			t.Fatal("blocked")
		}
	}
	if n := ca.count(); n != 1 {
		t.Fatalf("%d scripts for 100 requests within Fresh; want 1", n)
	}
	c.t = c.t.Add(DefaultFresh)
	a.Blocked(client)
	if n := ca.count(); n != 2 {
		t.Fatalf("%d scripts once the account went stale; want 2", n)
	}
}

// Values someone else wrote: not a number is no failures; a number far
// ahead blocks for at most the window; nothing fails.
func TestSharedGarbage(t *testing.T) {
	t.Parallel()
	a, _, rdb, prefix, _ := sharedPair(t)
	ctx := context.Background()
	for i, v := range []string{"garbage", "", "nan", "-inf", "0x10"} {
		addr := mustAddr("192.0.2." + string(rune('1'+i)))
		rdb.Set(ctx, prefix+"bf:"+addr.String(), v, time.Hour)
		if _, blocked := a.Blocked(addr); blocked {
			t.Errorf("%q blocked", v)
		}
		a.Failed(addr) // overwrites it
		if _, blocked := a.Blocked(addr); blocked {
			t.Errorf("%q: one failure blocked", v)
		}
	}
	h := mustAddr("192.0.2.100")
	rdb.HSet(ctx, prefix+"bf:"+h.String(), "f", "v")
	if _, blocked := a.Blocked(h); blocked {
		t.Error("a key of another type blocked")
	}
	far := mustAddr("192.0.2.101")
	rdb.Set(ctx, prefix+"bf:"+far.String(), "1e999999", time.Hour)
	if wait, blocked := a.Blocked(far); !blocked || wait > 49*time.Second {
		t.Errorf("a TAT far ahead: blocked %v for %v; want at most window - interval", blocked, wait)
	}
	if a.failed.Count() != 0 {
		t.Fatalf("%d Redis failures", a.failed.Count())
	}
}

// Redis down: the local shield answers, having counted every failure seen
// here; nobody is refused for it, and the failure is logged (throttled).
func TestSharedRedisDown(t *testing.T) {
	t.Parallel()
	c, err := rediscache.Open(rediscache.Options{URL: "redis://127.0.0.1:1/0", Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := NewShared(SharedOptions{Local: New(Options{Failures: 3, Window: time.Minute}), Redis: c})
	guesser, other := mustAddr("192.0.2.1"), mustAddr("192.0.2.2")
	for range 3 {
		if _, blocked := s.Blocked(guesser); blocked {
			t.Fatal("blocked early")
		}
		s.Failed(guesser)
	}
	if _, blocked := s.Blocked(guesser); !blocked {
		t.Fatal("the local shield did not take over")
	}
	if _, blocked := s.Blocked(other); blocked {
		t.Fatal("another address is blocked")
	}
	if s.failed.Count() == 0 {
		t.Fatal("no failure noted")
	}
}

// The remembered accounts stay within the bound.
func TestSharedMemoBounded(t *testing.T) {
	t.Parallel()
	url := testenv.Require(t, "TEST_REDIS_URL")
	c, err := rediscache.Open(rediscache.Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := NewShared(SharedOptions{Local: New(Options{Failures: 3, Window: time.Minute, MaxClients: 128}), Redis: c,
		Prefix: "bf-bound-" + strings.ToLower(rand.Text()[:8]) + ":"})
	for i := range 2000 {
		s.Blocked(mustAddr("10.0." + itoa(i/250) + "." + itoa(i%250)))
	}
	if n := s.remembered(); n > 128 {
		t.Fatalf("%d accounts remembered, bound 128", n)
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func itoa(i int) string { return strconv.Itoa(i) }
