package sqlitestore_test

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
	"github.com/caddy-betterauth/caddy-betterauth/schema"
	"github.com/caddy-betterauth/caddy-betterauth/sqlitestore"
)

// jwtVector is one of the tokens better-auth 1.7.5 issued in
// oauth/testdata (with SQLite), with the jwks table and row of the key
// that signed it.
type jwtVector struct {
	Alg, Issuer, Resource string
	UserToken             string
	DDL                   string
	Rows                  []struct {
		ID, PublicKey, Alg, Crv, CreatedAt string
	}
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

// exec runs statements on the SQLite database at dsn.
func exec(t *testing.T, dsn, query string, args ...any) {
	t.Helper()
	db, err := sqlitestore.OpenWritable(dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// Drizzle's jwks table in SQLite: snake_case, dates in epoch milliseconds.
const jwksSnake = `CREATE TABLE jwks (id text PRIMARY KEY NOT NULL, public_key text NOT NULL, private_key text NOT NULL,
	created_at integer NOT NULL, expires_at integer, alg text, crv text)`

func TestJWK(t *testing.T) {
	vectors := jwtVectors(t)
	ed := vectors[0].Rows[0]
	for _, tt := range []struct {
		name    string
		seed    testenv.SeedOptions
		ddl     string // the table better-auth made in oauth/testdata, or Drizzle's
		expires any    // 2026-12-01T10:22:12.012Z as the layout stores it
	}{
		{"kysely camelCase", testenv.SeedOptions{SQLite: true}, vectors[0].DDL, "2026-12-01T10:22:12.012Z"},
		{"drizzle snake_case", testenv.SeedOptions{SQLite: true, Snake: true}, jwksSnake, int64(1796120532012)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := testenv.Seed(t, tt.seed)
			exec(t, f.DatabaseURL, tt.ddl)
			insert := `INSERT INTO jwks VALUES (?, ?, '"encrypted"', ?, ?, ?, ?)`
			created := any("2026-12-01T10:22:12.012Z")
			if tt.seed.Snake {
				created = int64(1796120532012)
			}
			for _, vec := range vectors {
				r := vec.Rows[0]
				exec(t, f.DatabaseURL, insert, r.ID, r.PublicKey, created, nil, r.Alg, nilIfEmpty(r.Crv))
			}
			exec(t, f.DatabaseURL, insert, "expiring", ed.PublicKey, created, tt.expires, "EdDSA", "Ed25519")
			exec(t, f.DatabaseURL, insert, "legacy", ed.PublicKey, created, nil, nil, nil)
			exec(t, f.DatabaseURL, insert, "garbage", `{"kty":"oct","k":"c2VjcmV0"}`, created, nil, "HS256", nil)

			store := open(t, f.DatabaseURL, sqlitestore.Options{})
			ctx := context.Background()
			for _, vec := range vectors {
				k, err := store.JWK(ctx, vec.Rows[0].ID)
				if err != nil || k.ID != vec.Rows[0].ID || k.Alg != vec.Alg || !k.Expires.IsZero() {
					t.Errorf("%s: %+v, %v", vec.Alg, k, err)
				}
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
			for _, kid := range []string{"nope", "", "' OR 1=1 --"} {
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

// Other layouts: a table from before the alg, crv and expiresAt columns,
// another table name, usePlural, and no table.
func TestJWKTables(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{SQLite: true})
	ed := jwtVectors(t)[0].Rows[0]
	exec(t, f.DatabaseURL, `CREATE TABLE "signingKeys" ("id" text primary key, "publicKey" text not null, "privateKey" text not null, "createdAt" date not null)`)
	exec(t, f.DatabaseURL, `INSERT INTO "signingKeys" VALUES ('old', ?, '"x"', '2026-12-01T10:22:12.012Z')`, ed.PublicKey)
	exec(t, f.DatabaseURL, `CREATE TABLE "jwkss" ("id" text primary key, "publicKey" text not null, "privateKey" text not null, "createdAt" date not null)`)
	exec(t, f.DatabaseURL, `INSERT INTO "jwkss" VALUES ('plural', ?, '"x"', '2026-12-01T10:22:12.012Z')`, ed.PublicKey)
	ctx := context.Background()

	store := open(t, f.DatabaseURL, sqlitestore.Options{})
	if k, err := store.JWKTable("signingKeys")(ctx, "old"); err != nil || k.Alg != oauth.EdDSA || !k.Expires.IsZero() {
		t.Errorf("legacy table: %+v, %v", k, err)
	}
	// No jwks table: a failure, not "no such key".
	if k, err := store.JWK(ctx, "plural"); err == nil || errors.Is(err, oauth.ErrKeyNotFound) || errors.Is(err, oauth.ErrUnusableKey) {
		t.Errorf("no jwks table: %+v, %v", k, err)
	}
	plural := open(t, f.DatabaseURL, sqlitestore.Options{Schema: schema.Config{UsePlural: true}})
	if k, err := plural.JWK(ctx, "plural"); err != nil || k.ID != "plural" {
		t.Errorf("usePlural: %+v, %v", k, err)
	}
}
