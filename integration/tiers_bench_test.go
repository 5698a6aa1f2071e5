package integration

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/cache"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
	"github.com/caddy-betterauth/caddy-betterauth/rediscache"
	"github.com/caddy-betterauth/caddy-betterauth/store"
)

// BenchmarkTiers times one API-key lookup served by each tier, and reports
// the 50th and 99th percentiles: the in-process cache (L1), the shared
// Redis (L2: a gateway that has not seen the key, while another has) and
// PostgreSQL (a miss everywhere). Each lookup is timed alone, so the
// percentiles are latencies, not throughput.
//
//	go test -run '^$' -bench Tiers -benchtime 2000x ./integration/
func BenchmarkTiers(b *testing.B) {
	redisURL := testenv.Require(b, "TEST_REDIS_URL")
	f := testenv.Seed(b, testenv.SeedOptions{})
	db, err := store.Open(f.DatabaseURL, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	client, err := rediscache.Open(rediscache.Options{URL: redisURL})
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	remote := rediscache.New(client)
	ctx := context.Background()
	l := betterauth.NewLookup(betterauth.KindAPIKey, f.Keys.Valid.Key)
	sealer, err := cache.NewSealer(testenv.Secret)
	if err != nil {
		b.Fatal(err)
	}
	counted := &countingDB{Store: db}
	opts := cache.Options{TTL: time.Hour, Jitter: -1, Remote: remote, Sealer: sealer, RemotePrefix: "tiers-" + f.Keys.Valid.ID + ":"}
	// Gateways do not read entries written less than cache.ClockSkew after
	// they start; the l2 gateways below start on every iteration, so the
	// writer's clock runs ahead of theirs.
	ahead := opts
	ahead.Now = func() time.Time { return time.Now().Add(time.Minute) }
	warm := cache.New(counted, ahead)
	if rec, err := warm.Lookup(ctx, l); err != nil || rec.APIKey == nil {
		b.Fatal(rec, err)
	}

	run := func(b *testing.B, setup func() betterauth.Store) {
		lat := make([]time.Duration, 0, b.N)
		for b.Loop() {
			s := setup()
			start := time.Now()
			rec, err := s.Lookup(ctx, l)
			lat = append(lat, time.Since(start))
			if err != nil || rec.APIKey == nil {
				b.Fatal(rec, err)
			}
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
	}
	b.Run("l1_hit", func(b *testing.B) { run(b, func() betterauth.Store { return warm }) })
	b.Run("l2_hit", func(b *testing.B) {
		before := counted.n.Load()
		run(b, func() betterauth.Store { return cache.New(counted, opts) })
		if counted.n.Load() != before {
			b.Fatal("an l2 hit reached the database")
		}
	})
	b.Run("database", func(b *testing.B) { run(b, func() betterauth.Store { return db }) })
}

// countingDB counts the lookups that reach the database.
type countingDB struct {
	betterauth.Store
	n atomic.Int64
}

func (c *countingDB) Lookup(ctx context.Context, l betterauth.Lookup) (betterauth.Record, error) {
	c.n.Add(1)
	return c.Store.Lookup(ctx, l)
}
