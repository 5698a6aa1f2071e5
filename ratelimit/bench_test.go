package ratelimit

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

// The in-process check of one tier (hash, shard lock, GCRA), on a bucket
// that never runs out.
func BenchmarkLocalLimit(b *testing.B) {
	l := mustLimiter(b, NewStore(Options{}), Tier{Name: "u", Key: KeyUser, Rate: 1 << 30, Per: time.Hour})
	ctx, d := context.Background(), decision("user-1", "key-1")
	b.ReportAllocs()
	for b.Loop() {
		if _, limited := l.Limit(ctx, d, netip.Addr{}); limited {
			b.Fatal("limited")
		}
	}
}

// Three tiers (credential, user, ip) in process, all or none.
func BenchmarkLocalLimitThreeTiers(b *testing.B) {
	l := mustLimiter(b, NewStore(Options{}),
		Tier{Name: "k", Key: KeyCredential, Rate: 1 << 30, Per: time.Hour},
		Tier{Name: "u", Key: KeyUser, Rate: 1 << 30, Per: time.Hour},
		Tier{Name: "ip", Key: KeyIP, Rate: 1 << 30, Per: time.Hour})
	ctx, d, client := context.Background(), decision("user-1", "key-1"), netip.MustParseAddr("2001:db8::1")
	b.ReportAllocs()
	for b.Loop() {
		if _, limited := l.Limit(ctx, d, client); limited {
			b.Fatal("limited")
		}
	}
}

// One tier in process, many goroutines on many users.
func BenchmarkLocalLimitParallel(b *testing.B) {
	l := mustLimiter(b, NewStore(Options{}), Tier{Name: "u", Key: KeyUser, Rate: 1 << 30, Per: time.Hour})
	ds := make([]betterauth.Decision, 1024)
	for i := range ds {
		ds[i] = decision(string(rune('a'+i%26))+string(rune('a'+i/26)), "k")
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.Limit(context.Background(), ds[i%len(ds)], netip.Addr{})
			i++
		}
	})
}

// The Redis script: one EVALSHA for two tiers, one round trip.
func BenchmarkRedisLimit(b *testing.B) {
	s, _, _ := redisStoreB(b)
	l := mustLimiter(b, s, Tier{Name: "u", Key: KeyUser, Rate: 1 << 30, Per: time.Hour},
		Tier{Name: "g", Key: KeyGlobal, Rate: 1 << 30, Per: time.Hour})
	ctx, d := context.Background(), decision("user-1", "key-1")
	b.ReportAllocs()
	for b.Loop() {
		if _, limited := l.Limit(ctx, d, netip.Addr{}); limited {
			b.Fatal("limited")
		}
	}
	if s.failed.Count() != 0 {
		b.Fatal("Redis failed")
	}
}

type gateStore struct{ rec betterauth.Record }

func (s gateStore) Lookup(context.Context, betterauth.Lookup) (betterauth.Record, error) {
	return s.rec, nil
}

// BenchmarkGateDecide in package betterauth, with one in-process tier:
// what a rate_limit adds to a request's decision.
func BenchmarkGateDecideOneLocalTier(b *testing.B) {
	const key = "ba_sgcryLxAZNSEehSEODGkbVrwreJKkSsEfciuHrogTDZBeKFjuPwWzTDKeEkrDGbp"
	rec := betterauth.Record{APIKey: &betterauth.APIKey{ID: "k1", ConfigID: "default", Enabled: true,
		User: &betterauth.User{ID: "u1", Name: "Alice", Email: "alice@example.com"}}}.Seal()
	v, _ := betterauth.NewVerifier(betterauth.Options{Store: gateStore{rec}})
	for _, tc := range []struct {
		name  string
		tiers []Tier
	}{{"none", nil}, {"one", []Tier{{Name: "u", Key: KeyUser, Rate: 1 << 30, Per: time.Hour}}}} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := betterauth.GateConfig{Verifier: v}
			if l := mustLimiter(b, NewStore(Options{}), tc.tiers...); l != nil {
				cfg.Limiter = l
			}
			g := betterauth.NewGate(cfg)
			h := betterauth.HTTPHeader{"X-Api-Key": {key}, "Accept": {"*/*"}}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if res := g.Decide(ctx, h, netip.Addr{}); !res.Allowed() {
					b.Fatal(res.Decision.Reason)
				}
			}
		})
	}
}
