package pgstore_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
	"github.com/caddy-betterauth/caddy-betterauth/oauth"
	"github.com/caddy-betterauth/caddy-betterauth/pgstore"
	"github.com/caddy-betterauth/caddy-betterauth/schema"
)

// jwtVector is one of the tokens better-auth 1.7.5 issued in
// oauth/testdata, with the jwks row of the key that signed it.
type jwtVector struct {
	Alg, Issuer, Resource string
	UserToken             string
	Rows                  []struct{ ID, PublicKey, Alg, Crv string }
}

func jwtVectors(t *testing.T) []jwtVector {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "oauth", "testdata", "betterauth-1.7.5.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct{ Vectors []jwtVector }
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	return f.Vectors
}

// tokenIssuedAt reads a token's iat without verifying it.
func tokenIssuedAt(t *testing.T, token string) time.Time {
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

// The jwks table as better-auth 1.7.5's migrations make it (Kysely), and
// as Drizzle's generator does.
const (
	jwksCamel = `CREATE TABLE "jwks" ("id" text not null primary key, "publicKey" text not null, "privateKey" text not null,
		"createdAt" timestamptz not null, "expiresAt" timestamptz, "alg" text, "crv" text)`
	jwksSnake = `CREATE TABLE jwks (id text PRIMARY KEY, public_key text NOT NULL, private_key text NOT NULL,
		created_at timestamp NOT NULL, expires_at timestamp, alg text, crv text)`
)

func TestJWK(t *testing.T) {
	for _, tt := range []struct {
		name string
		seed testenv.SeedOptions
		ddl  string
		cols string
	}{
		{"kysely camelCase", testenv.SeedOptions{}, jwksCamel, `"id", "publicKey", "privateKey", "createdAt", "expiresAt", "alg", "crv"`},
		{"drizzle snake_case", testenv.SeedOptions{Snake: true}, jwksSnake, `id, public_key, private_key, created_at, expires_at, alg, crv`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := testenv.Seed(t, tt.seed)
			testenv.Exec(t, f.DatabaseURL, tt.ddl)
			insert := `INSERT INTO jwks (` + tt.cols + `) VALUES ($1, $2, '"encrypted"', now(), $3, $4, $5)`
			vectors := jwtVectors(t)
			for _, vec := range vectors {
				r := vec.Rows[0]
				testenv.Exec(t, f.DatabaseURL, insert, r.ID, r.PublicKey, nil, r.Alg, nilIfEmpty(r.Crv))
			}
			ed := vectors[0].Rows[0]
			testenv.Exec(t, f.DatabaseURL, insert, "expiring", ed.PublicKey, "2026-12-01T10:22:12.012Z", "EdDSA", "Ed25519")
			testenv.Exec(t, f.DatabaseURL, insert, "legacy", ed.PublicKey, nil, nil, nil)
			testenv.Exec(t, f.DatabaseURL, insert, "garbage", `{"kty":"oct","k":"c2VjcmV0"}`, nil, "HS256", nil)

			store, err := pgstore.New(newPool(t, f.DatabaseURL, nil), pgstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			for _, vec := range vectors {
				k, err := store.JWK(ctx, vec.Rows[0].ID)
				if err != nil || k.ID != vec.Rows[0].ID || k.Alg != vec.Alg || !k.Expires.IsZero() {
					t.Errorf("%s: %+v, %v", vec.Alg, k, err)
				}
				// The token Better-Auth issued verifies with the key read.
				keys, err := oauth.NewCachedKeys(oauth.CachedKeysConfig{Source: oauth.KeyFunc(store.JWK)})
				if err != nil {
					t.Fatal(err)
				}
				now := tokenIssuedAt(t, vec.UserToken).Add(time.Minute)
				v, err := oauth.NewAccessTokenVerifier(oauth.AccessTokenConfig{
					Keys: keys, Issuers: []string{vec.Issuer}, Audience: vec.Resource, Now: func() time.Time { return now },
				})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := v.Verify(ctx, vec.UserToken); err != nil {
					t.Errorf("%s: %v", vec.Alg, err)
				}
			}

			want := time.Date(2026, 12, 1, 10, 22, 12, 12e6, time.UTC)
			if k, err := store.JWK(ctx, "expiring"); err != nil || !k.Expires.Equal(want) {
				t.Errorf("expiring key: %+v, %v", k, err)
			}
			if k, err := store.JWK(ctx, "legacy"); err != nil || k.Alg != oauth.EdDSA {
				t.Errorf("key without alg: %+v, %v", k, err)
			}
			if k, err := store.JWK(ctx, "garbage"); !errors.Is(err, oauth.ErrUnusableKey) {
				t.Errorf("HS256 row: %+v, %v", k, err)
			}
			for _, kid := range []string{"nope", "", "' OR 1=1 --", strings.Repeat("x", 256)} {
				if k, err := store.JWK(ctx, kid); !errors.Is(err, oauth.ErrKeyNotFound) {
					t.Errorf("JWK(%q) = %+v, %v", kid, k, err)
				}
			}
		})
	}
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Other layouts: a uuid id, a table from before the alg, crv and
// expiresAt columns, another table name, usePlural, and no table.
func TestJWKTables(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{})
	ed := jwtVectors(t)[0].Rows[0]
	testenv.Exec(t, f.DatabaseURL, `CREATE TABLE "signingKeys" ("id" uuid primary key, "publicKey" text not null, "privateKey" text not null, "createdAt" timestamp not null)`)
	testenv.Exec(t, f.DatabaseURL, `INSERT INTO "signingKeys" VALUES ('0b7d1e5c-3d2a-4c9e-9f1e-2a6b8c4d5e6f', $1, '"x"', now())`, ed.PublicKey)
	testenv.Exec(t, f.DatabaseURL, `CREATE TABLE "jwkss" ("id" text primary key, "publicKey" text not null, "privateKey" text not null, "createdAt" timestamptz not null, "expiresAt" timestamptz)`)
	testenv.Exec(t, f.DatabaseURL, `INSERT INTO "jwkss" VALUES ('plural', $1, '"x"', now(), 'infinity')`, ed.PublicKey)
	pool := newPool(t, f.DatabaseURL, nil)
	ctx := context.Background()

	store, err := pgstore.New(pool, pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	keys := store.JWKTable("signingKeys")
	if k, err := keys(ctx, "0b7d1e5c-3d2a-4c9e-9f1e-2a6b8c4d5e6f"); err != nil || k.Alg != oauth.EdDSA {
		t.Errorf("uuid id: %+v, %v", k, err)
	}
	// Not a uuid: nothing found, rather than a failed query.
	if k, err := keys(ctx, "hodv8BrAwoJysvFuccugHgKw1XnAiUVh"); !errors.Is(err, oauth.ErrKeyNotFound) {
		t.Errorf("a kid that is no uuid: %+v, %v", k, err)
	}
	// No jwks table: a failure, not "no such key".
	if k, err := store.JWK(ctx, "plural"); err == nil || errors.Is(err, oauth.ErrKeyNotFound) || errors.Is(err, oauth.ErrUnusableKey) {
		t.Errorf("no jwks table: %+v, %v", k, err)
	}

	plural, err := pgstore.New(pool, pgstore.Options{Schema: schema.Config{UsePlural: true}})
	if err != nil {
		t.Fatal(err)
	}
	if k, err := plural.JWK(ctx, "plural"); err != nil || !k.Expires.IsZero() {
		t.Errorf("usePlural: %+v, %v", k, err)
	}
}
