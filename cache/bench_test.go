package cache

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

const (
	benchKey    = "ba_sgcryLxAZNSEehSEODGkbVrwreJKkSsEfciuHrogTDZBeKFjuPwWzTDKeEkrDGbp"
	benchToken  = "aoJx7uLCwsPeAyLVHnBVFjacXa1LpN7M"
	benchSecret = "bench-secret-0123456789abcdefghijklmnopqrstuvwxyz"
)

// benchStore answers every lookup with a valid key or session.
type benchStore struct{}

func (benchStore) Lookup(_ context.Context, l betterauth.Lookup) (betterauth.Record, error) {
	u := &betterauth.User{ID: "u1", Email: "alice@example.com", Name: "Alice"}
	if l.Kind == betterauth.KindAPIKey {
		return betterauth.Record{APIKey: &betterauth.APIKey{ID: "k1", Enabled: true, User: u}}, nil
	}
	return betterauth.Record{Session: &betterauth.Session{ID: "s1", ExpiresAt: time.Now().Add(time.Hour), User: u}}, nil
}

func benchVerifier(b *testing.B) *betterauth.Verifier {
	v, err := betterauth.NewVerifier(betterauth.Options{Store: New(benchStore{}, Options{TTL: time.Hour}), Secret: benchSecret})
	if err != nil {
		b.Fatal(err)
	}
	return v
}

func benchVerify(b *testing.B, c betterauth.Credential) {
	v := benchVerifier(b)
	ctx := context.Background()
	if d, err := v.Verify(ctx, c); err != nil || !d.Allowed() {
		b.Fatalf("%+v %v", d, err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		v.Verify(ctx, c)
	}
}

// The core's cached API-key check: SHA-256 of the key, a map lookup, the
// record's rules.
func BenchmarkVerifyAPIKeyHit(b *testing.B) {
	benchVerify(b, betterauth.Credential{Kind: betterauth.KindAPIKey, Source: betterauth.SourceAPIKeyHeader, Value: benchKey})
}

// A signed session cookie adds the HMAC check.
func BenchmarkVerifySignedSessionHit(b *testing.B) {
	signed := betterauth.NewSigner(benchSecret).Sign(benchToken)
	benchVerify(b, betterauth.Credential{Kind: betterauth.KindSession, Source: betterauth.SourceCookie, Value: signed})
}

// Extraction from the request headers plus the cached check.
func BenchmarkExtractAndVerifyAPIKeyHit(b *testing.B) {
	v := benchVerifier(b)
	ex := betterauth.NewExtractor(betterauth.ExtractorConfig{})
	hdr := http.Header{"X-Api-Key": {benchKey}, "Accept": {"application/json"}, "User-Agent": {"bench"}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		v.Verify(ctx, ex.Extract(betterauth.HTTPHeader(hdr)))
	}
}

func BenchmarkVerifyAPIKeyHitParallel(b *testing.B) {
	v := benchVerifier(b)
	c := betterauth.Credential{Kind: betterauth.KindAPIKey, Value: benchKey}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			v.Verify(ctx, c)
		}
	})
}
