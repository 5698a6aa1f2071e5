package pgstore_test

import (
	"context"
	"testing"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
	"github.com/caddy-betterauth/caddy-betterauth/pgstore"
)

// A database lookup (what a cache miss costs) on loopback, through a warm
// pool, for each lookup kind.
func BenchmarkLookup(b *testing.B) {
	f := testenv.Seed(b, testenv.SeedOptions{})
	pool := newPoolB(b, f.DatabaseURL)
	store, err := pgstore.New(pool, pgstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		l    betterauth.Lookup
	}{
		{"api_key", betterauth.NewLookup(betterauth.ModeAPIKey, f.Keys.Valid.Key)},
		{"session", betterauth.NewLookup(betterauth.ModeSession, f.Users.Alice.Token)},
		{"either", betterauth.NewLookup(betterauth.ModeEither, f.Users.Alice.Token)},
		{"unknown_key", betterauth.NewLookup(betterauth.ModeAPIKey, "ba_unknown")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := store.Lookup(ctx, bc.l); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
