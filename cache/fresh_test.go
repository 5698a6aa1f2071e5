package cache

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

func TestPerKindTTLsWithJitter(t *testing.T) {
	t.Parallel()
	s := New(&countingStore{}, Options{TTL: time.Minute, APIKeyTTL: 10 * time.Second, SessionTTL: 20 * time.Second, Jitter: 0.5})
	key := keyRecord(time.Time{})
	sess := betterauth.Record{Session: &betterauth.Session{ID: "s", User: &betterauth.User{ID: "u"}}}
	seen := map[time.Duration]bool{}
	for range 200 {
		k, ss := s.ttlFor(key), s.ttlFor(sess)
		if k <= 5*time.Second || k > 10*time.Second || ss <= 10*time.Second || ss > 20*time.Second {
			t.Fatalf("ttl key %v session %v outside their jitter ranges", k, ss)
		}
		seen[k] = true
	}
	if len(seen) < 50 {
		t.Fatalf("jitter produced only %d distinct TTLs", len(seen))
	}
	if d := New(&countingStore{}, Options{TTL: time.Minute, Jitter: -1}).ttlFor(key); d != time.Minute {
		t.Fatalf("without jitter: %v", d)
	}
}

// syncClock is a clock that background refreshes may read.
type syncClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *syncClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *syncClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestStaleWhileRevalidate(t *testing.T) {
	t.Parallel()
	clk := &syncClock{t: t0}
	inner := &countingStore{rec: keyRecord(time.Time{})}
	s := New(inner, Options{TTL: 10 * time.Second, Jitter: -1, StaleWhileRevalidate: 5 * time.Second, Now: clk.now})
	loaded := make(chan struct{}, 4)
	s.loaded = func() { loaded <- struct{}{} }
	ctx := context.Background()
	s.Lookup(ctx, lookup("k"))
	<-loaded
	clk.advance(12 * time.Second) // stale, within the window
	// Hold the refresh in the database until all stale hits are served.
	inner.gate, inner.entered = make(chan struct{}), make(chan struct{}, 4)
	for range 3 {
		if rec, err := s.Lookup(ctx, lookup("k")); err != nil || rec.APIKey == nil {
			t.Fatalf("stale serve: %+v %v", rec, err)
		}
	}
	<-inner.entered
	close(inner.gate)
	<-loaded // the background refresh has stored its result
	if n := inner.calls.Load(); n != 2 {
		t.Fatalf("database calls %d, want 2: one refresh for three stale hits", n)
	}
	clk.advance(4 * time.Second) // past the old entry's window, within the new TTL
	s.Lookup(ctx, lookup("k"))
	if n := inner.calls.Load(); n != 2 {
		t.Fatalf("the refreshed entry was not used: %d database calls", n)
	}
	clk.advance(20 * time.Second) // past everything: a plain miss
	s.Lookup(ctx, lookup("k"))
	if n := inner.calls.Load(); n != 3 {
		t.Fatalf("database calls %d, want 3", n)
	}
}

func TestStaleIfError(t *testing.T) {
	t.Parallel()
	clk := &clock{t0}
	inner := &countingStore{rec: keyRecord(time.Time{})}
	ctx := context.Background()
	on := New(inner, Options{TTL: 10 * time.Second, Jitter: -1, StaleIfError: time.Minute, Now: clk.now})
	off := New(inner, Options{TTL: 10 * time.Second, Jitter: -1, Now: clk.now})
	on.Lookup(ctx, lookup("k"))
	off.Lookup(ctx, lookup("k"))
	inner.err = errors.New("connection refused")
	clk.advance(30 * time.Second)
	if rec, err := on.Lookup(ctx, lookup("k")); err != nil || rec.APIKey == nil {
		t.Fatalf("stale_if_error within the window: %+v %v", rec, err)
	}
	if _, err := off.Lookup(ctx, lookup("k")); err == nil {
		t.Fatal("without stale_if_error a database error must fail the lookup")
	}
	clk.advance(time.Minute)
	if _, err := on.Lookup(ctx, lookup("k")); err == nil {
		t.Fatal("past the window a database error must fail the lookup")
	}
	// A revocation removes stale entries too.
	inner.err = nil
	on.Lookup(ctx, lookup("k"))
	on.Revoke(ctx, Revocation{Target: TargetAPIKey, ID: "k1"})
	inner.err = errors.New("down again")
	if _, err := on.Lookup(ctx, lookup("k")); err == nil {
		t.Fatal("a revoked record was served as stale")
	}
}
