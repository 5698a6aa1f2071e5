package sqlitestore_test

import (
	"testing"

	"github.com/caddy-betterauth/caddy-betterauth/internal/storetest"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
	"github.com/caddy-betterauth/caddy-betterauth/sqlitestore"
)

// A lookup (what a cache miss costs) in a SQLite file made by Better-Auth.
func BenchmarkLookup(b *testing.B) {
	f := testenv.Seed(b, testenv.SeedOptions{SQLite: true})
	storetest.BenchLookups(b, open(b, f.DatabaseURL, sqlitestore.Options{}), f)
}
