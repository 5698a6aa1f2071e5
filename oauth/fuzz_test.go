package oauth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/oauth"
)

// fuzzVectors are the JWKS and tokens Better-Auth issued (testdata).
func fuzzVectors(f *testing.F) (keys []oauth.Key, tokens []string) {
	b, err := os.ReadFile("testdata/betterauth-1.7.5.json")
	if err != nil {
		f.Fatal(err)
	}
	var doc struct {
		Vectors []struct {
			JWKS                json.RawMessage
			M2MToken, UserToken string
		}
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		f.Fatal(err)
	}
	for _, v := range doc.Vectors {
		ks, err := oauth.ParseJWKS(v.JWKS)
		if err != nil {
			f.Fatal(err)
		}
		keys = append(keys, ks...)
		tokens = append(tokens, v.M2MToken, v.UserToken)
	}
	return keys, tokens
}

// FuzzVerifyAccessToken checks that Verify accepts only what the keys
// signed: an arbitrary token is refused unless it is one of Better-Auth's
// genuine ones, and a token signed over fuzzed claims is refused once any
// byte of it changes.
func FuzzVerifyAccessToken(f *testing.F) {
	keys, genuine := fuzzVectors(f)
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	own := oauth.Key{ID: "kid-fuzz", Alg: oauth.EdDSA, Public: priv.Public()}
	set := oauth.NewStaticKeys(append(keys, own)...)
	v, err := oauth.NewAccessTokenVerifier(oauth.AccessTokenConfig{Keys: set, Issuers: []string{testIssuer},
		Audience: testAudience, Now: func() time.Time { return testNow }})
	if err != nil {
		f.Fatal(err)
	}
	c, _ := json.Marshal(claims())
	for _, tok := range genuine {
		f.Add(c, uint16(len(tok)-1), byte('A'), tok)
	}
	f.Add([]byte(`{"sub":"u","aud":["x","https://mcp.example.com/mcp"],"client_id":"c","iss":"http://localhost:3000/api/auth","exp":1796120700}`),
		uint16(3), byte('x'), "eyJ0eXAiOiJhdCtqd3QiLCJhbGciOiJub25lIiwia2lkIjoia2lkLWZ1enoifQ.e30.")
	f.Add([]byte(`null`), uint16(0), byte(0), "a.b.c")
	f.Add([]byte(`{"exp":1}`), uint16(200), byte('.'), "..")
	f.Fuzz(func(t *testing.T, payload []byte, at uint16, b byte, token string) {
		ctx := context.Background()
		if _, err := v.Verify(ctx, token); err == nil && !contains(genuine, token) {
			t.Fatalf("accepted %q, which no key signed", token)
		}

		header := base64.RawURLEncoding.EncodeToString([]byte(`{"typ":"at+jwt","alg":"EdDSA","kid":"kid-fuzz"}`))
		input := header + "." + base64.RawURLEncoding.EncodeToString(payload)
		signed := input + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(priv, []byte(input)))
		if at, err := v.Verify(ctx, signed); err == nil && at.KeyID != own.ID {
			t.Fatalf("signed by %q, verified with %q", own.ID, at.KeyID)
		}
		for _, tok := range append(genuine, signed) {
			i := int(at) % len(tok)
			if tok[i] == b {
				continue
			}
			changed := tok[:i] + string(b) + tok[i+1:]
			if _, err := v.Verify(ctx, changed); err == nil {
				t.Fatalf("accepted %q with byte %d changed", changed, i)
			}
		}
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// FuzzParseJWK checks that parsing any JWK or JWKS document never panics,
// and that every key it returns is usable: a known algorithm with a public
// key of that family.
func FuzzParseJWK(f *testing.F) {
	for _, alg := range []string{oauth.EdDSA, oauth.ES256} {
		b, _ := json.Marshal(publicJWK(f, signerFor(f, alg).key))
		f.Add(b)
	}
	for _, s := range []string{
		`{"kty":"OKP","crv":"Ed25519","x":"DmZWfYAsawuCVRTUgqLWHlT7p_YXiJOtn4zmSw2bTQM","kid":"GQqZ49BGrDGDrHRnCKVWHeFN4N79WQwH","alg":"EdDSA"}`,
		`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"DmZWfYAsawuCVRTUgqLWHlT7p_YXiJOtn4zmSw2bTQM","kid":"a"},{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"b"}]}`,
		`{"kty":"EC","crv":"P-256","x":"","y":""}`,
		`{"kty":"RSA","alg":"PS256","n":"` + strings.Repeat("_", 342) + `","e":"AQAB","use":"sig","key_ops":["verify"]}`,
		`{"kty":"OKP","crv":"Ed25519","x":"DmZWfYAsawuCVRTUgqLWHlT7p_YXiJOtn4zmSw2bTQM","d":"secret"}`,
		`null`, `{"keys":null}`, `[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if k, err := oauth.ParseJWK(data); err == nil {
			usable(t, k)
		}
		if ks, err := oauth.ParseJWKS(data); err == nil {
			seen := map[string]bool{}
			for _, k := range ks {
				usable(t, k)
				if k.ID == "" || seen[k.ID] {
					t.Fatalf("kid %q empty or given twice", k.ID)
				}
				seen[k.ID] = true
			}
		}
	})
}

func usable(t *testing.T, k oauth.Key) {
	t.Helper()
	var ok bool
	switch pub := k.Public.(type) {
	case ed25519.PublicKey:
		ok = k.Alg == oauth.EdDSA && len(pub) == ed25519.PublicKeySize
	case *ecdsa.PublicKey:
		ok = k.Alg == oauth.ES256 && pub.Curve == elliptic.P256() || k.Alg == oauth.ES512 && pub.Curve == elliptic.P521()
	case *rsa.PublicKey:
		ok = (k.Alg == oauth.RS256 || k.Alg == oauth.PS256) && pub.N.BitLen() >= 2048
	}
	if !ok {
		t.Fatalf("unusable key parsed: %+v", k)
	}
}
