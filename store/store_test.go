package store

import (
	"context"
	"crypto/rand"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
	"github.com/caddy-betterauth/caddy-betterauth/usage"
)

// Gateways share cached records only when they read the same rows: every
// DSN setting that selects rows is in the scope, and nothing else is.
func TestScopeNamesWhatSelectsRows(t *testing.T) {
	t.Parallel()
	const base = "postgres://app:hunter2@db.internal:5432/auth"
	scope := func(dsn, pgSchema string) string {
		t.Helper()
		db, err := Open(dsn, Options{PGSchema: pgSchema})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		s := db.(*pgDB).scope
		if strings.Contains(s, "hunter2") {
			t.Fatalf("the scope holds the password: %s", s)
		}
		return s
	}
	ref := scope(base, "")
	for name, dsn := range map[string]string{
		"search_path": base + "?search_path=tenant_b",
		"options":     base + "?options=" + url.QueryEscape("-c search_path=tenant_b"),
		"user":        "postgres://tenant_b:hunter2@db.internal:5432/auth",
		"database":    "postgres://app:hunter2@db.internal:5432/auth_b",
		"host":        "postgres://app:hunter2@db2.internal:5432/auth",
		"port":        "postgres://app:hunter2@db.internal:5433/auth",
	} {
		if scope(dsn, "") == ref {
			t.Errorf("a different %s, the same scope", name)
		}
	}
	if scope(base, "tenant_b") == ref {
		t.Error("a different pg_schema, the same scope")
	}
	for name, dsn := range map[string]string{
		"password":         "postgres://app:other@db.internal:5432/auth",
		"application_name": base + "?application_name=x",
		"pool settings":    base + "?pool_max_conns=50&statement_cache_capacity=10",
	} {
		if got := scope(dsn, ""); got != ref {
			t.Errorf("only the %s differs, yet the scope does: %s vs %s", name, got, ref)
		}
	}
}

// The scope names the schema the connection resolves to, which only the
// database can tell (a search_path set on the role or database).
func TestScopeResolvesTheSchema(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{})
	role := "tenant_" + strings.ToLower(rand.Text()[:8])
	testenv.Exec(t, f.DatabaseURL, strings.ReplaceAll(`CREATE SCHEMA tenant_b;
CREATE TABLE tenant_b."user" (LIKE public."user" INCLUDING ALL);
CREATE TABLE tenant_b.session (LIKE public.session INCLUDING ALL);
CREATE TABLE tenant_b.apikey (LIKE public.apikey INCLUDING ALL);
CREATE ROLE NAME LOGIN;
GRANT USAGE ON SCHEMA tenant_b, public TO NAME;
GRANT SELECT ON ALL TABLES IN SCHEMA tenant_b, public TO NAME`, "NAME", role))
	u, _ := url.Parse(f.DatabaseURL)
	testenv.Exec(t, f.DatabaseURL, `ALTER ROLE `+role+` IN DATABASE `+strings.TrimPrefix(u.Path, "/")+` SET search_path = tenant_b`)
	t.Cleanup(func() {
		testenv.Exec(t, f.DatabaseURL, `DROP OWNED BY `+role)
		testenv.Exec(t, testenv.Require(t, "TEST_DATABASE_URL"), `DROP ROLE IF EXISTS `+role)
	})
	resolved := func(dsn string) string {
		t.Helper()
		db, err := Open(dsn, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		s, err := db.Scope(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	public := resolved(f.DatabaseURL)
	u.User = url.User(role)
	tenant := resolved(u.String())
	if !strings.Contains(public, "system_identifier=") || !strings.Contains(public, "database_oid=") {
		t.Errorf("the scope does not name the cluster and database: %s", public)
	}
	if !strings.Contains(public, `schema="public"`) || !strings.Contains(tenant, `schema="tenant_b"`) || !strings.Contains(tenant, `"Name":"apikey"`) {
		t.Fatalf("scopes:\n%s\n%s", public, tenant)
	}
}

// Open tells the two databases apart by the DSN alone, and the dialect
// prints as the word messages use.
func TestDialect(t *testing.T) {
	t.Parallel()
	for dsn, want := range map[string]Dialect{
		"postgres://app@db.internal:5432/auth":     Postgres,
		"host=db.internal dbname=auth":             Postgres,
		"sqlite://" + t.TempDir() + "/auth.db":     SQLite,
		"file:" + t.TempDir() + "/auth.db?mode=ro": SQLite,
	} {
		db, err := Open(dsn, Options{})
		if err != nil {
			t.Fatalf("%s: %v", dsn, err)
		}
		if got := db.Dialect(); got != want {
			t.Errorf("%s: dialect %v, want %v", dsn, got, want)
		}
		db.Close()
	}
	if Postgres.String() != "postgres" || SQLite.String() != "sqlite" || Dialect(0).String() != "Dialect(0)" {
		t.Errorf("names: %s, %s, %s", Postgres, SQLite, Dialect(0))
	}
}

// Usage database on MySQL counts on a pool of its own, whose lock waits
// end with the meter's timeout; the lookups' sessions stay read-only.
func TestMySQLUsageWritesOnItsOwnPool(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{MySQL: true})
	ctx := context.Background()
	ro, err := Open(f.DatabaseURL, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if _, _, _, err := ro.ClaimUsage(ctx, f.Keys.Limited.ID, usage.Rules{}, time.Now); err == nil {
		t.Error("a store opened read-only counted a use")
	}
	db, err := Open(f.DatabaseURL, Options{Writable: true, UsageTimeout: 2500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	row, _, found, err := db.ClaimUsage(ctx, f.Keys.Limited.ID, usage.Rules{}, time.Now)
	if err != nil || !found || row.Remaining != 5 {
		t.Fatalf("a use: %+v found %v, %v", row, found, err)
	}
	if row, _, _, err = db.ClaimUsage(ctx, f.Keys.Limited.ID, usage.Rules{}, time.Now); err != nil || row.Remaining != 4 {
		t.Fatalf("the second use read %+v, %v", row, err)
	}
	m := db.(*mysqlDB)
	var wait int
	if err := m.writes.QueryRowContext(ctx, "SELECT @@session.innodb_lock_wait_timeout").Scan(&wait); err != nil || wait != 3 {
		t.Errorf("lock wait %d s (%v), want 3", wait, err)
	}
	if _, err := m.db.ExecContext(ctx, "UPDATE `apikey` SET `remaining` = 100"); err == nil || !strings.Contains(err.Error(), "READ ONLY") {
		t.Errorf("the lookups' pool wrote, or failed otherwise: %v", err)
	}
}
