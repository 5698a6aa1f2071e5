package pgstore_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
	"github.com/caddy-betterauth/caddy-betterauth/pgstore"
)

// counter is a pgx tracer that counts the statements a connection sends.
type counter struct{ queries, prepares, batches atomic.Int64 }

func (c *counter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.queries.Add(1)
	return ctx
}
func (c *counter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (c *counter) TracePrepareStart(ctx context.Context, _ *pgx.Conn, _ pgx.TracePrepareStartData) context.Context {
	c.prepares.Add(1)
	return ctx
}
func (c *counter) TracePrepareEnd(context.Context, *pgx.Conn, pgx.TracePrepareEndData) {}
func (c *counter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.batches.Add(1)
	return ctx
}
func (c *counter) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (c *counter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

func newPool(t *testing.T, dsn string, tracer pgx.QueryTracer) *pgxpool.Pool {
	return openPool(t, dsn, tracer)
}

func newPoolB(b *testing.B, dsn string) *pgxpool.Pool { return openPool(b, dsn, nil) }

func openPool(t testing.TB, dsn string, tracer pgx.QueryTracer) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 1 // one connection, so prepared statements are reused
	cfg.ConnConfig.Tracer = tracer
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func verifier(t *testing.T, store betterauth.Store) *betterauth.Verifier {
	t.Helper()
	v, err := betterauth.NewVerifier(betterauth.Options{Store: store, Secret: testenv.Secret})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

type storeCase struct {
	name     string
	cred     betterauth.Credential
	want     betterauth.Reason
	wantUser string
	wantID   string
}

// cases is the table every Better-Auth schema must answer alike.
func cases(f *testenv.Fixture) []storeCase {
	key := func(k string) betterauth.Credential {
		return betterauth.Credential{Kind: betterauth.KindAPIKey, Source: betterauth.SourceAPIKeyHeader, Value: k}
	}
	cookie := func(v string) betterauth.Credential {
		return betterauth.Credential{Kind: betterauth.KindSession, Source: betterauth.SourceCookie, Value: v}
	}
	bearer := func(k betterauth.Kind, v string) betterauth.Credential {
		return betterauth.Credential{Kind: k, Source: betterauth.SourceBearer, Value: v}
	}
	banned := betterauth.UserBanned
	if !f.Admin {
		banned = betterauth.Allowed // without the admin plugin nobody is banned
	}
	u := f.Users
	return []storeCase{
		{"valid key", key(f.Keys.Valid.Key), betterauth.Allowed, u.Alice.ID, f.Keys.Valid.ID},
		{"key as bearer", bearer(betterauth.KindAPIKey, f.Keys.Valid2.Key), betterauth.Allowed, u.Alice.ID, f.Keys.Valid2.ID},
		{"unknown key", key(f.Keys.Valid.Key + "x"), betterauth.InvalidAPIKey, "", ""},
		{"disabled key", key(f.Keys.Disabled.Key), betterauth.KeyDisabled, "", ""},
		{"expired key", key(f.Keys.Expired.Key), betterauth.KeyExpired, "", ""},
		{"exhausted key", key(f.Keys.Exhausted.Key), betterauth.UsageExceeded, "", ""},
		{"key with uses left", key(f.Keys.Limited.Key), betterauth.Allowed, u.Alice.ID, f.Keys.Limited.ID},
		{"exhausted key due for refill", key(f.Keys.Refill.Key), betterauth.Allowed, u.Alice.ID, f.Keys.Refill.ID},
		{"banned owner's key", key(f.Keys.Banned.Key), banned, "", ""},
		{"signed cookie", cookie(strings.ReplaceAll(f.Users.Alice.Signed, "=", "%3D")), betterauth.Allowed, u.Alice.ID, f.SessionIDs["alice"]},
		{"signed bearer", bearer(betterauth.KindSession, f.Users.Alice.Signed), betterauth.Allowed, u.Alice.ID, f.SessionIDs["alice"]},
		{"raw bearer, one round trip for both tables", bearer(betterauth.KindEither, f.Users.Zoe.Token), betterauth.Allowed, u.Zoe.ID, f.SessionIDs["zoe"]},
		{"expired session", bearer(betterauth.KindSession, f.Users.Expired.Signed), betterauth.SessionExpired, "", ""},
		{"banned user's session", cookie(f.Users.Bob.Signed), banned, "", ""},
		{"forged signature", cookie(f.Users.Alice.Token + ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="), betterauth.InvalidSession, "", ""},
		{"unknown session", bearer(betterauth.KindEither, strings.Repeat("a", 32)), betterauth.InvalidSession, "", ""},
	}
}

func runCases(t *testing.T, v *betterauth.Verifier, f *testenv.Fixture) {
	for _, tc := range cases(f) {
		t.Run(tc.name, func(t *testing.T) {
			d, err := v.Verify(context.Background(), tc.cred)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if d.Reason != tc.want {
				t.Fatalf("reason = %v, want %v", d.Reason, tc.want)
			}
			if tc.wantUser == "" {
				return
			}
			if d.User.ID != tc.wantUser || d.CredentialID != tc.wantID {
				t.Fatalf("identity = user %q credential %q, want %q %q", d.User.ID, d.CredentialID, tc.wantUser, tc.wantID)
			}
		})
	}
}

func TestBetterAuthSchemas(t *testing.T) {
	for _, tt := range []struct {
		name   string
		seed   testenv.SeedOptions
		schema pgstore.Schema
	}{
		{"kysely camelCase with admin plugin", testenv.SeedOptions{}, pgstore.Schema{}},
		{"kysely camelCase without admin plugin", testenv.SeedOptions{NoAdmin: true}, pgstore.Schema{}},
		{"drizzle snake_case timestamp", testenv.SeedOptions{Snake: true}, pgstore.Schema{Naming: pgstore.SnakeCase}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := testenv.Seed(t, tt.seed)
			store, err := pgstore.New(newPool(t, f.DatabaseURL, nil), pgstore.Options{Schema: tt.schema})
			if err != nil {
				t.Fatal(err)
			}
			runCases(t, verifier(t, store), f)
			t.Run("user fields", func(t *testing.T) {
				rec, err := store.Lookup(context.Background(), betterauth.NewLookup(betterauth.ModeAPIKey, f.Keys.Zoe.Key))
				if err != nil || rec.APIKey == nil {
					t.Fatalf("Lookup = %+v, %v", rec, err)
				}
				u := rec.APIKey.User
				wantRole := "user"
				if !tt.seed.NoAdmin {
					if u.Role != wantRole {
						t.Errorf("role = %q, want %q", u.Role, wantRole)
					}
				} else if u.Role != "" {
					t.Errorf("role = %q without the admin plugin", u.Role)
				}
				if u.Name != "Zoë Ünïcødé" || u.Email != "zoe@example.com" {
					t.Errorf("user = %+v", u)
				}
				if rec.APIKey.ConfigID != "default" || !rec.APIKey.Enabled || rec.APIKey.CreatedAt.IsZero() {
					t.Errorf("key = %+v", rec.APIKey)
				}
			})
			t.Run("timestamps are instants", func(t *testing.T) {
				rec, err := store.Lookup(context.Background(), betterauth.NewLookup(betterauth.ModeSession, f.Users.Alice.Token))
				if err != nil || rec.Session == nil {
					t.Fatalf("Lookup = %+v, %v", rec, err)
				}
				// Better-Auth gives sessions seven days; a time-zone slip would
				// be off by whole hours.
				left := time.Until(rec.Session.ExpiresAt)
				if left < 7*24*time.Hour-5*time.Minute || left > 7*24*time.Hour {
					t.Errorf("session expires in %v, want about 7 days", left)
				}
			})
		})
	}
}

func TestLegacyUserIDSchema(t *testing.T) {
	t.Parallel()
	db := testenv.NewDatabase(t)
	legacy, err := readTestdata("legacy.sql")
	if err != nil {
		t.Fatal(err)
	}
	testenv.Exec(t, db, legacy)
	const key = "ba_testkey"
	testenv.Exec(t, db, `INSERT INTO auth.users (id, name, email_address) VALUES ('u1', 'Legacy', 'legacy@example.com')`)
	testenv.Exec(t, db, `INSERT INTO auth.api_keys (id, key, user_id, enabled, created_at, updated_at) VALUES ('k1', $1, 'u1', NULL, now(), now())`, betterauth.HashAPIKey(key))
	testenv.Exec(t, db, `INSERT INTO auth.api_keys (id, key, user_id, enabled, created_at, updated_at) VALUES ('k2', 'dup', 'u1', true, now(), now()), ('k3', 'dup', 'u1', true, now(), now())`)
	testenv.Exec(t, db, `INSERT INTO auth.sessions (id, token, user_id, expires_at, created_at, updated_at) VALUES ('s1', 'tokentokentokentokentokentoken12', 'u1', now() + interval '1 hour', now(), now())`)
	store, err := pgstore.New(newPool(t, db, nil), pgstore.Options{Schema: pgstore.Schema{
		Schema: "auth", Naming: pgstore.SnakeCase, Owner: pgstore.UserID, UsePlural: true, APIKeyTable: "api_keys",
		Columns: map[string]string{"user.email": "email_address"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	v := verifier(t, store)
	ctx := context.Background()
	d, err := v.Verify(ctx, betterauth.Credential{Kind: betterauth.KindAPIKey, Value: key})
	if err != nil || !d.Allowed() || d.User.Email != "legacy@example.com" {
		t.Fatalf("legacy key: %+v, %v", d, err)
	}
	d, err = v.Verify(ctx, betterauth.Credential{Kind: betterauth.KindEither, Source: betterauth.SourceBearer, Value: "tokentokentokentokentokentoken12"})
	if err != nil || d.Method != betterauth.MethodSession {
		t.Fatalf("legacy session: %+v, %v", d, err)
	}
	// Two rows with one hash: neither is trusted.
	rec, err := store.Lookup(ctx, betterauth.Lookup{Mode: betterauth.ModeAPIKey, Secret: "dup"})
	if err != nil || rec.Found() {
		t.Fatalf("duplicate hash: %+v, %v", rec, err)
	}
	plain, _ := pgstore.New(newPool(t, db, nil), pgstore.Options{PlainKeys: true, Schema: pgstore.Schema{
		Schema: "auth", Naming: pgstore.SnakeCase, Owner: pgstore.UserID, UsePlural: true, APIKeyTable: "api_keys",
		Columns: map[string]string{"user.email": "email_address"},
	}})
	if rec, err := plain.Lookup(ctx, betterauth.NewLookup(betterauth.ModeAPIKey, "dup")); err != nil || rec.Found() {
		t.Fatalf("duplicate plain key: %+v, %v", rec, err)
	}
}

// A miss is one query: the statement, once prepared, is only executed, and a
// lookup of both tables is one pipelined batch.
func TestMissIsOneRoundTrip(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{})
	c := &counter{}
	store, err := pgstore.New(newPool(t, f.DatabaseURL, c), pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	warm := func(l betterauth.Lookup) {
		if _, err := store.Lookup(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	warm(betterauth.NewLookup(betterauth.ModeAPIKey, "warm-up"))
	warm(betterauth.NewLookup(betterauth.ModeEither, strings.Repeat("w", 32)))
	for _, l := range []betterauth.Lookup{
		betterauth.NewLookup(betterauth.ModeAPIKey, f.Keys.Valid.Key),
		betterauth.NewLookup(betterauth.ModeSession, f.Users.Alice.Token),
		betterauth.NewLookup(betterauth.ModeEither, f.Users.Zoe.Token),
	} {
		q, p, b := c.queries.Load(), c.prepares.Load(), c.batches.Load()
		rec, err := store.Lookup(ctx, l)
		if err != nil || !rec.Found() {
			t.Fatalf("mode %d: %+v, %v", l.Mode, rec, err)
		}
		dq, dp, db := c.queries.Load()-q, c.prepares.Load()-p, c.batches.Load()-b
		if dp != 0 || dq+db != 1 {
			t.Errorf("mode %d: %d queries, %d batches, %d prepares; want one statement", l.Mode, dq, db, dp)
		}
	}
}

func TestUnreachableDatabaseIsAnError(t *testing.T) {
	t.Parallel()
	pool, err := pgxpool.New(context.Background(), "postgres://nobody@127.0.0.1:1/none?connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	store, _ := pgstore.New(pool, pgstore.Options{})
	for _, mode := range []betterauth.Mode{betterauth.ModeAPIKey, betterauth.ModeSession, betterauth.ModeEither} {
		if rec, err := store.Lookup(context.Background(), betterauth.NewLookup(mode, "k")); err == nil || rec.Found() {
			t.Fatalf("mode %d: %+v, %v; want an error", mode, rec, err)
		}
	}
}

func TestSchemaValidation(t *testing.T) {
	t.Parallel()
	for _, s := range []pgstore.Schema{
		{Naming: "kebab"},
		{Owner: "org"},
		{Columns: map[string]string{"apikey.secret": "x"}},
		{Columns: map[string]string{"nomodel": "x"}},
	} {
		if _, err := pgstore.New(nil, pgstore.Options{Schema: s}); err == nil {
			t.Errorf("schema %+v accepted", s)
		}
	}
}

func TestIdentifiersAreQuoted(t *testing.T) {
	t.Parallel()
	s, err := pgstore.New(nil, pgstore.Options{Schema: pgstore.Schema{
		Schema: `a"; DROP TABLE x; --`, UserTable: "weird name", Columns: map[string]string{"user.email": `e"mail`},
	}})
	if err != nil {
		t.Fatal(err)
	}
	k, _ := s.Queries()
	for _, want := range []string{`"a""; DROP TABLE x; --"."weird name"`, `u."e""mail"`, `"a""; DROP TABLE x; --"."apikey"`} {
		if !strings.Contains(k, want) {
			t.Errorf("query lacks %s:\n%s", want, k)
		}
	}
}
