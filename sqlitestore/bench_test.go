package sqlitestore_test

import (
	"context"
	"testing"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
	"github.com/caddy-betterauth/caddy-betterauth/sqlitestore"
)

// A lookup (what a cache miss costs) in a SQLite file made by Better-Auth.
func BenchmarkLookup(b *testing.B) {
	f := testenv.Seed(b, testenv.SeedOptions{SQLite: true})
	db, err := sqlitestore.Open(f.DatabaseURL)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	store, _ := sqlitestore.New(db, sqlitestore.Options{})
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
