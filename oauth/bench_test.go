package oauth_test

import (
	"context"
	"testing"

	"github.com/caddy-betterauth/caddy-betterauth/oauth"
)

// benchVerify verifies a user's token signed with alg, its key in a
// CachedKeys (as the gateway keeps the jwks table's keys).
func benchVerify(b *testing.B, alg string) {
	s := signerFor(b, alg)
	keys, err := oauth.NewCachedKeys(oauth.CachedKeysConfig{Source: oauth.NewStaticKeys(s.key)})
	if err != nil {
		b.Fatal(err)
	}
	v := verifier(b, oauth.AccessTokenConfig{Keys: keys})
	token := s.token(b, s.header(), claims())
	ctx := context.Background()
	if _, err := v.Verify(ctx, token); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, token); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyEdDSA(b *testing.B) { benchVerify(b, oauth.EdDSA) }
func BenchmarkVerifyES256(b *testing.B) { benchVerify(b, oauth.ES256) }
func BenchmarkVerifyES512(b *testing.B) { benchVerify(b, oauth.ES512) }
func BenchmarkVerifyRS256(b *testing.B) { benchVerify(b, oauth.RS256) }
func BenchmarkVerifyPS256(b *testing.B) { benchVerify(b, oauth.PS256) }

// BenchmarkRefuseForged is the cost of a token the header refuses (alg
// none): no key lookup, no signature check.
func BenchmarkRefuseForged(b *testing.B) {
	s := signerFor(b, oauth.EdDSA)
	v := verifier(b, oauth.AccessTokenConfig{})
	token := encode(b, with(s.header(), object{"alg": "none"})) + "." + encode(b, claims()) + "."
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, token); err == nil {
			b.Fatal("accepted")
		}
	}
}
