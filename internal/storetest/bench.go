package storetest

import (
	"context"
	"testing"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// BenchLookups measures one store lookup per kind: what a cache miss costs.
func BenchLookups(b *testing.B, store betterauth.Store, f *testenv.Fixture) {
	for _, bc := range []struct {
		name string
		l    betterauth.Lookup
	}{
		{"api_key", betterauth.NewLookup(betterauth.KindAPIKey, f.Keys.Valid.Key)},
		{"session", betterauth.NewLookup(betterauth.KindSession, f.Users.Alice.Token)},
		{"either", betterauth.NewLookup(betterauth.KindEither, f.Users.Alice.Token)},
		{"unknown_key", betterauth.NewLookup(betterauth.KindAPIKey, "ba_unknown")},
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
