package mysqlstore_test

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

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
	"github.com/caddy-betterauth/caddy-betterauth/mysqlstore"
	"github.com/caddy-betterauth/caddy-betterauth/oauth"
	"github.com/caddy-betterauth/caddy-betterauth/schema"
	"github.com/caddy-betterauth/caddy-betterauth/sqlitestore"
)

// The OAuth provider's tables as Better-Auth's migrations make them on
// MySQL (Kysely: varchar(36) ids, text, datetime(3), tinyint booleans).
const (
	userDDL        = "CREATE TABLE `user` (`id` varchar(36) NOT NULL PRIMARY KEY, `name` text NOT NULL, `email` varchar(255) NOT NULL UNIQUE, `emailVerified` boolean NOT NULL, `image` text, `createdAt` datetime(3) NOT NULL, `updatedAt` datetime(3) NOT NULL)"
	sessionDDL     = "CREATE TABLE `session` (`id` varchar(36) NOT NULL PRIMARY KEY, `expiresAt` datetime(3) NOT NULL, `token` varchar(255) NOT NULL UNIQUE, `createdAt` datetime(3) NOT NULL, `updatedAt` datetime(3) NOT NULL, `ipAddress` text, `userAgent` text, `userId` varchar(36) NOT NULL)"
	clientDDL      = "CREATE TABLE `oauthClient` (`id` varchar(36) NOT NULL PRIMARY KEY, `clientId` varchar(255) NOT NULL UNIQUE, `clientSecret` text, `disabled` boolean, `name` text, `createdAt` datetime(3), `updatedAt` datetime(3))"
	accessTokenDDL = "CREATE TABLE `oauthAccessToken` (`id` varchar(36) NOT NULL PRIMARY KEY, `token` varchar(255) UNIQUE, `clientId` varchar(255) NOT NULL, `sessionId` varchar(36), `userId` varchar(36), `referenceId` text, `refreshId` varchar(36), `expiresAt` datetime(3), `createdAt` datetime(3), `scopes` json NOT NULL, `resources` json, `revoked` datetime(3), `confirmation` text)"
	resourceDDL    = "CREATE TABLE `oauthResource` (`id` varchar(36) NOT NULL PRIMARY KEY, `identifier` varchar(255) NOT NULL UNIQUE, `name` text, `createdAt` datetime(3), `updatedAt` datetime(3))"
	apikeyDDL      = "CREATE TABLE `apikey` (`id` varchar(36) NOT NULL PRIMARY KEY, `configId` varchar(255) NOT NULL DEFAULT 'default', `name` text, `start` text, `referenceId` varchar(36) NOT NULL, `prefix` text, `key` varchar(255) NOT NULL, `refillInterval` int, `refillAmount` int, `lastRefillAt` datetime(3), `enabled` boolean, `rateLimitEnabled` boolean, `rateLimitTimeWindow` int, `rateLimitMax` int, `requestCount` int, `remaining` int, `lastRequest` datetime(3), `expiresAt` datetime(3), `createdAt` datetime(3) NOT NULL, `updatedAt` datetime(3) NOT NULL, `permissions` text, `metadata` text)"
	jwksDDL        = "CREATE TABLE `jwks` (`id` varchar(36) NOT NULL PRIMARY KEY, `publicKey` text NOT NULL, `privateKey` text NOT NULL, `createdAt` datetime(3) NOT NULL, `expiresAt` datetime(3), `alg` text, `crv` text)"
)

func openStore(t *testing.T, dsn string) *sqlitestore.Store {
	t.Helper()
	db, err := mysqlstore.Open(dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := mysqlstore.New(db, mysqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The keys of the jwks table: each of the tokens better-auth 1.7.5 issued
// in oauth/testdata verifies with the key read from MySQL by its id, the
// listing holds the usable keys, and ids compare byte for byte.
func TestJWKs(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "oauth", "testdata", "betterauth-1.7.5.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Vectors []struct {
			Alg, Issuer, Resource, UserToken string
			Rows                             []struct{ ID, PublicKey, Alg, Crv string }
		}
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	insert := "INSERT INTO `jwks` (`id`, `publicKey`, `privateKey`, `createdAt`, `expiresAt`, `alg`, `crv`) VALUES "
	var values []string
	quote := func(s string) string {
		if s == "" {
			return "NULL"
		}
		return "'" + strings.ReplaceAll(s, "'", "''") + "'"
	}
	for _, v := range f.Vectors {
		r := v.Rows[0]
		values = append(values, "("+quote(r.ID)+", "+quote(r.PublicKey)+", 'x', UTC_TIMESTAMP(3), NULL, "+quote(r.Alg)+", "+quote(r.Crv)+")")
	}
	ed := f.Vectors[0].Rows[0]
	values = append(values, "('expiring', "+quote(ed.PublicKey)+", 'x', UTC_TIMESTAMP(3), '2026-12-01 10:22:12.012', 'EdDSA', 'Ed25519')",
		"('garbage', '{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}', 'x', UTC_TIMESTAMP(3), NULL, 'HS256', NULL)")
	store := openStore(t, newDatabase(t, userDDL, sessionDDL, jwksDDL, insert+strings.Join(values, ", ")))
	ctx := context.Background()

	for _, v := range f.Vectors {
		k, err := store.JWK(ctx, v.Rows[0].ID)
		if err != nil || k.ID != v.Rows[0].ID || !k.Expires.IsZero() {
			t.Fatalf("%s: %+v, %v", v.Alg, k, err)
		}
		keys, err := oauth.NewCachedKeys(oauth.CachedKeysConfig{Source: oauth.KeyFunc(store.JWK)})
		if err != nil {
			t.Fatal(err)
		}
		now := tokenIssuedAt(t, v.UserToken).Add(time.Minute)
		verifier, err := oauth.NewAccessTokenVerifier(oauth.AccessTokenConfig{
			Keys: keys, Issuers: []string{v.Issuer}, Audience: v.Resource, Now: func() time.Time { return now },
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := verifier.Verify(ctx, v.UserToken); err != nil {
			t.Errorf("%s: %v", v.Alg, err)
		}
	}
	if k, err := store.JWK(ctx, "expiring"); err != nil || !k.Expires.Equal(time.Date(2026, 12, 1, 10, 22, 12, 12e6, time.UTC)) {
		t.Errorf("expiring key: %+v, %v", k, err)
	}
	if k, err := store.JWK(ctx, "garbage"); !errors.Is(err, oauth.ErrUnusableKey) {
		t.Errorf("HS256 row: %+v, %v", k, err)
	}
	for _, kid := range []string{"nope", "EXPIRING", "' OR 1=1 -- "} {
		if k, err := store.JWK(ctx, kid); !errors.Is(err, oauth.ErrKeyNotFound) {
			t.Errorf("JWK(%q) = %+v, %v", kid, k, err)
		}
	}
	keys, err := store.JWKs(ctx)
	if err != nil || len(keys) != len(f.Vectors)+1 {
		t.Fatalf("JWKs: %d keys, %v; want %d", len(keys), err, len(f.Vectors)+1)
	}
	ids := map[string]bool{}
	for _, k := range keys {
		ids[k.ID] = true
	}
	if !ids["expiring"] || ids["garbage"] || !ids[ed.ID] {
		t.Errorf("JWKs ids %v", ids)
	}
}

func tokenIssuedAt(t *testing.T, token string) time.Time {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", token)
	}
	var c struct{ Iat int64 }
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	return time.Unix(c.Iat, 0)
}

// What a JWT access token names, read in one statement whose parameters
// MySQL binds as they appear: the client, the session, the user, and how
// many of its resources are registered (byte for byte, though the tables
// ignore case); and on a layout without the session and resource tables,
// whose query still references every parameter.
func TestOAuthGrant(t *testing.T) {
	t.Parallel()
	const res = "https://api.example.com/mcp"
	rows := []string{
		"INSERT INTO `user` VALUES ('u1', 'Alice', 'alice@example.com', 1, NULL, UTC_TIMESTAMP(3), UTC_TIMESTAMP(3))",
		"INSERT INTO `oauthClient` (`id`, `clientId`, `disabled`, `name`) VALUES ('c', 'client1', 0, 'App'), ('d', 'client2', 1, 'Off')",
	}
	full := append([]string{userDDL, sessionDDL, clientDDL, accessTokenDDL, resourceDDL,
		"INSERT INTO `session` (`id`, `expiresAt`, `token`, `createdAt`, `updatedAt`, `userId`) VALUES ('s1', '2099-01-02 03:04:05.678', 'tok', UTC_TIMESTAMP(3), UTC_TIMESTAMP(3), 'u1')",
		"INSERT INTO `oauthResource` (`id`, `identifier`) VALUES ('r1', '" + res + "'), ('r2', 'urn:other')"}, rows...)
	store := openStore(t, newDatabase(t, full...))
	ctx := context.Background()
	if l, err := store.Layout(ctx); err != nil || l.OAuth == nil || l.OAuth.Legacy || l.OAuth.Resource == nil {
		t.Fatalf("layout %+v %v", l, err)
	}
	grant := func(t *testing.T, s *sqlitestore.Store, g schema.Grant) (client string, disabled bool, session time.Time, user string, missing bool) {
		t.Helper()
		tok, err := s.OAuthGrant(ctx, g)
		if err != nil {
			t.Fatalf("%+v: %v", g, err)
		}
		if tok.Client != nil {
			client, disabled = tok.Client.ClientID, tok.Client.Disabled
		}
		if tok.User != nil {
			user = tok.User.Email
		}
		return client, disabled, tok.SessionExpiresAt, user, tok.ResourceMissing
	}
	c, off, sess, user, missing := grant(t, store, schema.Grant{ClientID: "client1", SessionID: "s1", UserID: "u1", Resources: []string{res, "urn:other"}})
	if c != "client1" || off || !sess.Equal(time.Date(2099, 1, 2, 3, 4, 5, 678e6, time.UTC)) || user != "alice@example.com" || missing {
		t.Fatalf("grant: %q %v %v %q %v", c, off, sess, user, missing)
	}
	if c, off, _, user, missing := grant(t, store, schema.Grant{ClientID: "client2", Resources: []string{res}}); c != "client2" || !off || user != "" || missing {
		t.Fatalf("disabled client, no user: %q %v %q %v", c, off, user, missing)
	}
	for _, r := range [][]string{{strings.ToUpper(res)}, {res, "urn:gone"}, {"' OR 1=1 -- "}} {
		if _, _, _, _, missing := grant(t, store, schema.Grant{ClientID: "client1", Resources: r}); !missing {
			t.Errorf("resources %q: none missing", r)
		}
	}
	if c, _, sess, user, _ := grant(t, store, schema.Grant{ClientID: "CLIENT1", SessionID: "S1", UserID: "U1"}); c != "" || !sess.IsZero() || user != "" {
		t.Errorf("ids in another case matched: %q %v %q", c, sess, user)
	}

	// API keys but no sessions (Layout.Session nil), no oauthResource.
	bare := openStore(t, newDatabase(t, append([]string{userDDL, apikeyDDL, clientDDL, accessTokenDDL}, rows...)...))
	if l, err := bare.Layout(ctx); err != nil || l.OAuth == nil || l.Session != nil || l.OAuth.Resource != nil {
		t.Fatalf("bare layout %+v %v", l, err)
	}
	c, _, sess, user, missing = grant(t, bare, schema.Grant{ClientID: "client1", SessionID: "s1", UserID: "u1", Resources: []string{res}})
	if c != "client1" || !sess.IsZero() || user != "alice@example.com" || !missing {
		t.Fatalf("bare grant: %q %v %q %v", c, sess, user, missing)
	}
	if _, _, _, _, missing := grant(t, bare, schema.Grant{ClientID: "client1"}); missing {
		t.Error("no resources: one missing")
	}
}

// An opaque access token of the OAuth provider, read by its hash with its
// client, session and user, and whether each of its resources (a JSON
// array, through JSON_TABLE) still has its oauthResource row, byte for
// byte.
func TestOAuthToken(t *testing.T) {
	t.Parallel()
	const res = "https://api.example.com/mcp"
	insert := func(id, secret, resources string) string {
		return "INSERT INTO `oauthAccessToken` (`id`, `token`, `clientId`, `sessionId`, `userId`, `expiresAt`, `createdAt`, `scopes`, `resources`) VALUES ('" +
			id + "', '" + betterauth.NewLookup(betterauth.KindOAuth, secret).KeyHash() + "', 'client1', 's1', 'u1', '2099-01-01 00:00:00', UTC_TIMESTAMP(3), '[\"mcp:read\"]', " + resources + ")"
	}
	store := openStore(t, newDatabase(t, userDDL, sessionDDL, clientDDL, accessTokenDDL, resourceDDL,
		"INSERT INTO `user` VALUES ('u1', 'Alice', 'alice@example.com', 1, NULL, UTC_TIMESTAMP(3), UTC_TIMESTAMP(3))",
		"INSERT INTO `session` (`id`, `expiresAt`, `token`, `createdAt`, `updatedAt`, `userId`) VALUES ('s1', '2099-01-02 03:04:05.678', 'tok', UTC_TIMESTAMP(3), UTC_TIMESTAMP(3), 'u1')",
		"INSERT INTO `oauthClient` (`id`, `clientId`, `disabled`, `name`) VALUES ('c', 'client1', 0, 'App')",
		"INSERT INTO `oauthResource` (`id`, `identifier`) VALUES ('r1', '"+res+"')",
		insert("t1", "registered", "'[\""+res+"\"]'"),
		insert("t2", "othercase", "'[\""+strings.ToUpper(res)+"\"]'"),
		insert("t3", "gone", "'[\""+res+"\", \"urn:gone\"]'"),
		insert("t4", "unbound", "NULL"),
	))
	ctx := context.Background()
	for _, c := range []struct {
		secret, id string
		missing    bool
	}{{"registered", "t1", false}, {"othercase", "t2", true}, {"gone", "t3", true}, {"unbound", "t4", false}} {
		rec, err := store.Lookup(ctx, betterauth.NewLookup(betterauth.KindOAuth, c.secret))
		if err != nil || rec.OAuth == nil {
			t.Fatalf("%s: %+v %v", c.secret, rec, err)
		}
		o := rec.OAuth
		if o.ID != c.id || o.Client == nil || o.Client.ClientID != "client1" || o.User == nil || o.User.ID != "u1" ||
			!o.SessionExpiresAt.Equal(time.Date(2099, 1, 2, 3, 4, 5, 678e6, time.UTC)) || o.ResourceMissing != c.missing {
			t.Errorf("%s: %+v (missing %v, want %v)", c.secret, o, o.ResourceMissing, c.missing)
		}
	}
	if rec, err := store.Lookup(ctx, betterauth.NewLookup(betterauth.KindOAuth, "nosuchtoken")); err != nil || rec.OAuth != nil {
		t.Fatalf("unknown token: %+v %v", rec, err)
	}
}
