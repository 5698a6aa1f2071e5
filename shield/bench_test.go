package shield

import (
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
	"github.com/caddy-betterauth/caddy-betterauth/rediscache"
)

// Blocked on the shared shield: a client read from Redis within Fresh (no
// round trip), and one read every time (Fresh 1ns: one EVALSHA).
func BenchmarkSharedBlocked(b *testing.B) {
	c, err := rediscache.Open(rediscache.Options{URL: testenv.Require(b, "TEST_REDIS_URL")})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	client := mustAddr("192.0.2.77")
	for _, tc := range []struct {
		name  string
		fresh time.Duration
	}{{"remembered", time.Hour}, {"redis", time.Nanosecond}} {
		b.Run(tc.name, func(b *testing.B) {
			s := NewShared(SharedOptions{Local: New(Options{Failures: 5, Window: time.Minute}), Redis: c, Prefix: "bf-bench:", Fresh: tc.fresh})
			b.ReportAllocs()
			for b.Loop() {
				if _, blocked := s.Blocked(client); blocked {
					b.Fatal("blocked")
				}
			}
			if s.failed.Count() != 0 {
				b.Fatal("Redis failed")
			}
		})
	}
}
