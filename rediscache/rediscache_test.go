package rediscache

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
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
	for range 2 {
		if err := r.Bump(ctx, "epoch"); err != nil {
			t.Fatal(err)
		}
	}
	if b, ep, err := r.Get(ctx, "k", "epoch"); string(b) != "v" || ep != 2 || err != nil {
		t.Fatalf("hit: %q %d %v", b, ep, err)
	}
	if ttl := mr.TTL("k"); ttl != time.Minute {
		t.Fatalf("TTL %v", ttl)
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
