package pgstore_test

import (
	"testing"

	"github.com/caddy-betterauth/caddy-betterauth/internal/storetest"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
	"github.com/caddy-betterauth/caddy-betterauth/pgstore"
)

// A database lookup (what a cache miss costs) on loopback, through a warm
// pool.
func BenchmarkLookup(b *testing.B) {
	f := testenv.Seed(b, testenv.SeedOptions{})
	store, err := pgstore.New(newPoolB(b, f.DatabaseURL), pgstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	storetest.BenchLookups(b, store, f)
}
