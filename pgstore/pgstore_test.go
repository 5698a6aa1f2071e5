package pgstore_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/internal/storetest"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
	"github.com/caddy-betterauth/caddy-betterauth/pgstore"
	"github.com/caddy-betterauth/caddy-betterauth/schema"
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

func TestBetterAuthSchemas(t *testing.T) {
	// Nothing is configured: the store detects each layout.
	for _, tt := range []struct {
		name   string
		seed   testenv.SeedOptions
		schema schema.Config
	}{
		{"kysely camelCase with admin plugin", testenv.SeedOptions{}, schema.Config{}},
		{"kysely camelCase without admin plugin", testenv.SeedOptions{NoAdmin: true}, schema.Config{}},
		{"drizzle snake_case timestamp", testenv.SeedOptions{Snake: true}, schema.Config{}},
		{"drizzle snake_case, configured", testenv.SeedOptions{Snake: true}, schema.Config{Naming: schema.SnakeCase, Owner: schema.ReferenceID}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := testenv.Seed(t, tt.seed)
			store, err := pgstore.New(newPool(t, f.DatabaseURL, nil), pgstore.Options{Schema: tt.schema})
			if err != nil {
				t.Fatal(err)
			}
			storetest.Run(t, store, f)
			layout, err := store.Layout(context.Background())
			if err != nil || layout.Admin == tt.seed.NoAdmin || (layout.Naming == schema.SnakeCase) != tt.seed.Snake {
				t.Errorf("layout %+v, %v", layout, err)
			}
			t.Run("user fields", func(t *testing.T) {
				rec, err := store.Lookup(context.Background(), betterauth.NewLookup(betterauth.KindAPIKey, f.Keys.Zoe.Key))
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
				rec, err := store.Lookup(context.Background(), betterauth.NewLookup(betterauth.KindSession, f.Users.Alice.Token))
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
	// Detected: snake_case, plural users and sessions, the userId owner.
	// Configured: the schema, the api-key table and the renamed column.
	opts := pgstore.Options{PGSchema: "auth", Schema: schema.Config{
		APIKeyTable: "api_keys", Columns: map[string]string{"user.email": "email_address"},
	}}
	store, err := pgstore.New(newPool(t, db, nil), opts)
	if err != nil {
		t.Fatal(err)
	}
	v, err := betterauth.NewVerifier(betterauth.Options{Store: store})
	if err != nil {
		t.Fatal(err)
	}
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
	rec, err := store.Lookup(ctx, betterauth.Lookup{Kind: betterauth.KindAPIKey, Secret: "dup"})
	if err != nil || rec.Found() {
		t.Fatalf("duplicate hash: %+v, %v", rec, err)
	}
	opts.PlainKeys = true
	plain, _ := pgstore.New(newPool(t, db, nil), opts)
	if rec, err := plain.Lookup(ctx, betterauth.NewLookup(betterauth.KindAPIKey, "dup")); err != nil || rec.Found() {
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
	warm(betterauth.NewLookup(betterauth.KindAPIKey, "warm-up"))
	warm(betterauth.NewLookup(betterauth.KindEither, strings.Repeat("w", 32)))
	for _, l := range []betterauth.Lookup{
		betterauth.NewLookup(betterauth.KindAPIKey, f.Keys.Valid.Key),
		betterauth.NewLookup(betterauth.KindSession, f.Users.Alice.Token),
		betterauth.NewLookup(betterauth.KindEither, f.Users.Zoe.Token),
	} {
		q, p, b := c.queries.Load(), c.prepares.Load(), c.batches.Load()
		rec, err := store.Lookup(ctx, l)
		if err != nil || !rec.Found() {
			t.Fatalf("kind %d: %+v, %v", l.Kind, rec, err)
		}
		dq, dp, db := c.queries.Load()-q, c.prepares.Load()-p, c.batches.Load()-b
		if dp != 0 || dq+db != 1 {
			t.Errorf("kind %d: %d queries, %d batches, %d prepares; want one statement", l.Kind, dq, db, dp)
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
	for _, kind := range []betterauth.Kind{betterauth.KindAPIKey, betterauth.KindSession, betterauth.KindEither} {
		if rec, err := store.Lookup(context.Background(), betterauth.NewLookup(kind, "k")); err == nil || rec.Found() {
			t.Fatalf("kind %d: %+v, %v; want an error", kind, rec, err)
		}
	}
}

func TestSchemaValidation(t *testing.T) {
	t.Parallel()
	if _, err := pgstore.New(nil, pgstore.Options{Schema: schema.Config{Naming: "kebab"}}); err == nil {
		t.Error("bad naming accepted")
	}
}

// A schema the store cannot use is an error that names what is missing, and
// it is not remembered: once the table is fixed, lookups work.
func TestUnusableSchemaIsAnErrorUntilFixed(t *testing.T) {
	t.Parallel()
	db := testenv.NewDatabase(t)
	testenv.Exec(t, db, `CREATE TABLE "user" (id text PRIMARY KEY, name text NOT NULL, email text NOT NULL)`)
	testenv.Exec(t, db, `CREATE TABLE session (id text PRIMARY KEY, "expiresAt" timestamptz NOT NULL, "userId" text NOT NULL)`)
	store, err := pgstore.New(newPool(t, db, nil), pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	l := betterauth.NewLookup(betterauth.KindSession, "tokentokentokentokentokentoken12")
	_, err = store.Lookup(ctx, l)
	if !errors.Is(err, schema.ErrUnusable) || !strings.Contains(err.Error(), `table "session" has no column "token"`) {
		t.Fatalf("err = %v", err)
	}
	testenv.Exec(t, db, `ALTER TABLE session ADD COLUMN token text UNIQUE`)
	testenv.Exec(t, db, `INSERT INTO "user" VALUES ('u1', 'U', 'u@example.com')`)
	testenv.Exec(t, db, `INSERT INTO session VALUES ('s1', now() + interval '1 hour', 'u1', 'tokentokentokentokentokentoken12')`)
	rec, err := store.Lookup(ctx, l)
	if err != nil || rec.Session == nil || rec.Session.User.Email != "u@example.com" || rec.Session.User.Role != "" {
		t.Fatalf("after the fix: %+v, %v", rec, err)
	}
	// No api-key table: keys are unknown, not an error.
	if rec, err := store.Lookup(ctx, betterauth.NewLookup(betterauth.KindAPIKey, "ba_x")); err != nil || rec.Found() {
		t.Fatalf("key lookup without the table: %+v, %v", rec, err)
	}
}
