package integration

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/cache"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
	"github.com/caddy-betterauth/caddy-betterauth/store"
)

// BenchmarkUnknownKeyFlood sends distinct unknown keys, as a scanner
// would, through the cache to PostgreSQL from both cores: each is one
// indexed query that finds nothing, then a short negative entry. The
// figure is the rate at which such keys are answered (and the database is
// queried), with the pool's default size.
//
//	go test -run '^$' -bench UnknownKeyFlood -benchtime 5s ./integration/
func BenchmarkUnknownKeyFlood(b *testing.B) {
	f := testenv.Seed(b, testenv.SeedOptions{})
	db, err := store.Open(f.DatabaseURL, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	c := cache.New(db, cache.Options{})
	v, _ := betterauth.NewVerifier(betterauth.Options{Store: c})
	ctx := context.Background()
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(8) // enough requests in flight to keep the pool busy
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			key := fmt.Sprintf("ba_flood_%d", n.Add(1))
			d, err := v.Verify(ctx, betterauth.Credential{Kind: betterauth.KindAPIKey, Value: key})
			if err != nil || d.Reason != betterauth.InvalidAPIKey {
				b.Fatalf("%v %v", d.Reason, err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
}
