package oauth_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/oauth"
)

// betterAuthVector is one algorithm's output of testdata/issue.mjs: tokens
// that better-auth 1.7.5 and @better-auth/oauth-provider 1.7.5 issued, and
// the key that signed them as the jwks table and the /jwks endpoint hold it.
type betterAuthVector struct {
	Alg, Issuer, Resource, ClientID, UserID string
	M2MToken, UserToken, SessionJWT         string
	JWKS                                    json.RawMessage
	Rows                                    []struct {
		ID, PublicKey, Alg, Crv string
		ExpiresAt               *string
	}
}

func betterAuthVectors(t *testing.T) []betterAuthVector {
	t.Helper()
	b, err := os.ReadFile("testdata/betterauth-1.7.5.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct{ Vectors []betterAuthVector }
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Vectors) != 5 {
		t.Fatalf("%d vectors", len(f.Vectors))
	}
	return f.Vectors
}

// issuedAt reads a token's iat, without verifying anything: the fixed
// "now" of the vector's checks is a minute after it.
func issuedAt(t *testing.T, token string) time.Time {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct{ Iat int64 }
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return time.Unix(c.Iat, 0)
}

// Tokens Better-Auth really issued verify, with the key read from its jwks
// table's row and with the key from its /jwks endpoint; its session JWT,
// signed with the same key, does not.
func TestBetterAuthTokens(t *testing.T) {
	for _, vec := range betterAuthVectors(t) {
		t.Run(vec.Alg, func(t *testing.T) {
			if len(vec.Rows) != 1 {
				t.Fatalf("%d rows", len(vec.Rows))
			}
			r := vec.Rows[0]
			if r.Alg != vec.Alg || r.ExpiresAt != nil {
				t.Fatalf("row %+v", r)
			}
			rowKey, err := oauth.JWKRow{ID: r.ID, PublicKey: r.PublicKey, Alg: r.Alg, Crv: r.Crv}.Key()
			if err != nil {
				t.Fatal(err)
			}
			if rowKey.Alg != vec.Alg {
				t.Errorf("row key alg %s", rowKey.Alg)
			}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.Write(vec.JWKS)
			}))
			defer srv.Close()
			jwks, err := oauth.NewJWKSURL(oauth.JWKSURLConfig{URL: srv.URL + "/api/auth/jwks"})
			if err != nil {
				t.Fatal(err)
			}
			now := issuedAt(t, vec.UserToken).Add(time.Minute)
			for source, keys := range map[string]oauth.KeySource{"jwks row": oauth.NewStaticKeys(rowKey), "/jwks": jwks} {
				v, err := oauth.NewAccessTokenVerifier(oauth.AccessTokenConfig{
					Keys: keys, Issuers: []string{vec.Issuer}, Audience: vec.Resource,
					Now: func() time.Time { return now },
				})
				if err != nil {
					t.Fatal(err)
				}
				ctx := context.Background()

				user, err := v.Verify(ctx, vec.UserToken)
				if err != nil {
					t.Fatalf("%s: user token: %v", source, err)
				}
				if id, ok := user.User(); !ok || id != vec.UserID || user.ClientID != vec.ClientID || user.SessionID == "" ||
					strings.Join(user.Scopes, " ") != "openid mcp:read" || user.KeyID != r.ID ||
					strings.Join(user.Audience, " ") != vec.Resource+" "+vec.Issuer+"/oauth2/userinfo" {
					t.Errorf("%s: user token %+v", source, user)
				}

				m2m, err := v.Verify(ctx, vec.M2MToken)
				if err != nil {
					t.Fatalf("%s: m2m token: %v", source, err)
				}
				if _, ok := m2m.User(); ok || m2m.Subject != vec.ClientID || m2m.ClientID != vec.ClientID || m2m.SessionID != "" ||
					strings.Join(m2m.Scopes, " ") != "mcp:read" {
					t.Errorf("%s: m2m token %+v", source, m2m)
				}
				if got := m2m.ExpiresAt.Sub(m2m.IssuedAt); got != time.Hour {
					t.Errorf("%s: m2m token lives %v", source, got)
				}

				var te *oauth.TokenError
				if _, err := v.Verify(ctx, vec.SessionJWT); !errors.As(err, &te) || te.Reason != "typ" {
					t.Errorf("%s: session JWT: %v", source, err)
				}
			}

			// Expiry is Better-Auth's: an hour.
			later, err := oauth.NewAccessTokenVerifier(oauth.AccessTokenConfig{
				Keys: oauth.NewStaticKeys(rowKey), Issuers: []string{vec.Issuer}, Audience: vec.Resource,
				Now: func() time.Time { return now.Add(time.Hour) },
			})
			if err != nil {
				t.Fatal(err)
			}
			var te *oauth.TokenError
			if _, err := later.Verify(context.Background(), vec.UserToken); !errors.As(err, &te) || te.Reason != "exp" {
				t.Errorf("an hour later: %v", err)
			}
		})
	}
}
