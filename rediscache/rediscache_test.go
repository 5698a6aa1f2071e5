package rediscache

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/caddy-betterauth/caddy-betterauth/internal/faultproxy"
)

func TestRemoteAgainstARedisProtocolServer(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	c, err := Open(Options{URL: "redis://" + mr.Addr() + "/0"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := New(c)
	ctx := context.Background()
	if b, ep, err := r.Get(ctx, "missing", "epoch"); b != nil || ep != 0 || err != nil {
		t.Fatalf("miss: %q %d %v", b, ep, err)
	}
	if err := r.Set(ctx, "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	for want := uint64(1); want <= 2; want++ {
		if ep, err := r.Bump(ctx, "epoch", 0); err != nil || ep != want {
			t.Fatalf("bump: %d %v, want %d", ep, err, want)
		}
	}
	if b, ep, err := r.Get(ctx, "k", "epoch"); string(b) != "v" || ep != 2 || err != nil {
		t.Fatalf("hit: %q %d %v", b, ep, err)
	}
	// A gateway that has seen epoch 40 never lets it go back.
	mr.Set("epoch", "3")
	if ep, err := r.Bump(ctx, "epoch", 40); err != nil || ep != 41 {
		t.Fatalf("bump past a floor: %d %v", ep, err)
	}
	if ep, err := r.Bump(ctx, "epoch", 40); err != nil || ep != 42 {
		t.Fatalf("bump above the floor: %d %v", ep, err)
	}
	if ttl := mr.TTL("k"); ttl != time.Minute {
		t.Fatalf("TTL %v", ttl)
	}
	if err := r.Del(ctx, "k", "absent"); err != nil || mr.Exists("k") {
		t.Fatalf("del: %v, k still there: %v", err, mr.Exists("k"))
	}
	mr.Close()
	if _, _, err := r.Get(ctx, "k", "epoch"); err == nil {
		t.Fatal("no error with the server gone")
	}
}

func TestOpenRejectsBadURLsWithoutRepeatingThem(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"http://x", "redis://user:hunter2@[::1", "not a url"} {
		_, err := Open(Options{URL: u})
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%q: %v", u, err)
		}
	}
	c, err := Open(Options{URL: "redis://:pw@127.0.0.1:1?addr=127.0.0.1:2"})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// The bus delivers what is published, and reports every subscription: the
// first, and the one go-redis makes again after its connection dropped, when
// messages sent meanwhile were lost.
func TestBusRelaysAndReportsResubscriptions(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	var mu sync.Mutex
	var conns []net.Conn
	c := redis.NewClient(&redis.Options{Addr: mr.Addr(), Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
		cn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			mu.Lock()
			conns = append(conns, cn)
			mu.Unlock()
		}
		return cn, err
	}})
	defer c.Close()
	bus := NewBus(c)
	ctx, cancel := context.WithCancel(context.Background())
	subscribed, got, done := make(chan struct{}, 4), make(chan string, 4), make(chan error)
	go func() {
		done <- bus.Subscribe(ctx, "ch", func() { subscribed <- struct{}{} }, func(b []byte) { got <- string(b) })
	}()
	// The timeouts bound a failing run; they synchronise nothing.
	for round, msg := range []string{"first", "after the connections dropped"} {
		select {
		case <-subscribed:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: no subscription", round)
		}
		if err := bus.Publish(ctx, "ch", []byte(msg)); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-got:
			if m != msg {
				t.Fatalf("got %q, want %q", m, msg)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: nothing delivered", round)
		}
		mu.Lock()
		for _, cn := range conns {
			cn.Close()
		}
		conns = nil
		mu.Unlock()
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Subscribe after cancellation: %v", err)
	}
}

// A Redis that stops answering holds a read no longer than the caller's
// deadline, however long the client's timeout: the cache's lookup timeout
// bounds the whole lookup, this tier included.
func TestStalledRedisHonoursTheDeadline(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	p, err := faultproxy.Start(mr.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := Open(Options{URL: "redis://" + p.Addr() + "/0", Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := New(c)
	if _, _, err := r.Get(context.Background(), "k", "epoch"); err != nil {
		t.Fatal(err)
	}
	p.Set(faultproxy.Blackhole)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	began := time.Now()
	_, _, err = r.Get(ctx, "k", "epoch")
	// A bound far under the client's minute, not a speed figure.
	if took := time.Since(began); err == nil || took > 20*time.Second {
		t.Fatalf("a read from a stalled Redis: %v after %v, want the 200ms deadline's error", err, took)
	}
}
