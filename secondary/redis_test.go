package secondary_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/secondary"
)

func TestOpenSettingsForASourceOfTruth(t *testing.T) {
	t.Parallel()
	c, err := secondary.Open(secondary.RedisOptions{URL: "redis://:pw@127.0.0.1:1/2"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	o := c.(*redis.Client).Options()
	if o.DialTimeout != secondary.DefaultTimeout || o.ReadTimeout != secondary.DefaultTimeout || o.WriteTimeout != secondary.DefaultTimeout ||
		o.PoolTimeout != secondary.DefaultTimeout || o.MaxRetries != 1 || o.DialerRetries != 2 || !o.ContextTimeoutEnabled || o.DB != 2 {
		t.Fatalf("options %+v", o)
	}
	for _, u := range []string{"http://x", "redis://user:hunter2@[::1", "not a url"} {
		if _, err := secondary.Open(secondary.RedisOptions{URL: u}); err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%q: %v", u, err)
		}
	}
}

// A Redis that accepts connections and never answers: the lookup's
// deadline, not the one-second timeout or the retry, ends the call.
func TestOpenHonoursTheCallersDeadline(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			cn, err := ln.Accept()
			if err != nil {
				return
			}
			defer cn.Close() // held open, silent, until the listener closes
		}
	}()
	c, err := secondary.Open(secondary.RedisOptions{URL: "redis://" + ln.Addr().String(), Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, _ := secondary.New(c, nil, secondary.Options{Sessions: secondary.Storage})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = s.Lookup(ctx, betterauth.NewLookup(betterauth.KindSession, strings.Repeat("t", 32)))
	if err == nil || !errors.Is(err, context.DeadlineExceeded) && !isTimeout(err) {
		t.Fatalf("err = %v, want a timeout", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("the call took %v: the caller's deadline was not honoured", d)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
