package mysqlstore_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
	"github.com/caddy-betterauth/caddy-betterauth/mysqlstore"
)

// newDatabase creates a database on the server at TEST_MYSQL_URL, runs
// ddl in it as the server's user, and returns its URL.
func newDatabase(t testing.TB, ddl ...string) string {
	t.Helper()
	base := testenv.Require(t, "TEST_MYSQL_URL")
	cfg, _, err := mysqlstore.Config(strings.TrimSuffix(base, "/") + "/mysql")
	if err != nil {
		t.Fatal(err)
	}
	name := "t_" + strings.ToLower(rand.Text()[:12])
	cfg.DBName = ""
	cfg.MultiStatements = true
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a, _ := sql.Open("mysql", cfg.FormatDSN())
		defer a.Close()
		a.Exec("DROP DATABASE " + name)
	})
	cfg.DBName = name
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, s := range ddl {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	return strings.TrimSuffix(base, "/") + "/" + name
}

// Better-Auth's own migrations on MySQL (Kysely): camelCase, datetime(3),
// booleans as tinyint(1), read through the shared lookups, on a session
// that cannot write.
func TestLookupsOnBetterAuthTables(t *testing.T) {
	t.Parallel()
	const key = "ba_sgcryLxAZNSEehSEODGkbVrwreJKkSsEfciuHrogTDZBeKFjuPwWzTDKeEkrDGbp"
	dsn := newDatabase(t,
		"CREATE TABLE `user` (`id` varchar(36) NOT NULL PRIMARY KEY, `name` text NOT NULL, `email` varchar(255) NOT NULL UNIQUE, `emailVerified` boolean NOT NULL, `image` text, `createdAt` datetime(3) NOT NULL, `updatedAt` datetime(3) NOT NULL, `role` text, `banned` boolean, `banReason` text, `banExpires` datetime(3))",
		"CREATE TABLE `session` (`id` varchar(36) NOT NULL PRIMARY KEY, `expiresAt` datetime(3) NOT NULL, `token` varchar(255) NOT NULL UNIQUE, `createdAt` datetime(3) NOT NULL, `updatedAt` datetime(3) NOT NULL, `ipAddress` text, `userAgent` text, `userId` varchar(36) NOT NULL, `impersonatedBy` text)",
		"CREATE TABLE `apikey` (`id` varchar(36) NOT NULL PRIMARY KEY, `configId` varchar(255) NOT NULL DEFAULT 'default', `name` text, `start` text, `referenceId` varchar(36) NOT NULL, `prefix` text, `key` varchar(255) NOT NULL, `refillInterval` int, `refillAmount` int, `lastRefillAt` datetime(3), `enabled` boolean, `rateLimitEnabled` boolean, `rateLimitTimeWindow` int, `rateLimitMax` int, `requestCount` int, `remaining` int, `lastRequest` datetime(3), `expiresAt` datetime(3), `createdAt` datetime(3) NOT NULL, `updatedAt` datetime(3) NOT NULL, `permissions` text, `metadata` text)",
		"INSERT INTO `user` VALUES ('u1', 'Alice', 'alice@example.com', 1, NULL, UTC_TIMESTAMP(3), UTC_TIMESTAMP(3), 'admin', 0, NULL, NULL)",
		"INSERT INTO `session` (`id`, `expiresAt`, `token`, `createdAt`, `updatedAt`, `userId`) VALUES ('s1', '2099-01-02 03:04:05.678', 'tok123', UTC_TIMESTAMP(3), UTC_TIMESTAMP(3), 'u1')",
		"INSERT INTO `apikey` (`id`, `referenceId`, `key`, `enabled`, `createdAt`, `updatedAt`, `permissions`) VALUES ('k1', 'u1', '"+betterauth.HashAPIKey(key)+"', 1, UTC_TIMESTAMP(3), UTC_TIMESTAMP(3), '{\"files\":[\"read\"]}')",
	)
	db, err := mysqlstore.Open(dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err := mysqlstore.New(db, mysqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	layout, err := s.Layout(ctx)
	if err != nil || !layout.Admin || layout.APIKey == nil {
		t.Fatalf("layout %+v %v", layout, err)
	}
	rec, err := s.Lookup(ctx, betterauth.NewLookup(betterauth.KindAPIKey, key))
	if err != nil || rec.APIKey == nil || rec.APIKey.ID != "k1" || !rec.APIKey.Enabled || rec.APIKey.User == nil || rec.APIKey.User.Role != "admin" {
		t.Fatalf("key: %+v %v", rec.APIKey, err)
	}
	rec, err = s.Lookup(ctx, betterauth.NewLookup(betterauth.KindSession, "tok123"))
	if err != nil || rec.Session == nil || !rec.Session.ExpiresAt.Equal(time.Date(2099, 1, 2, 3, 4, 5, 678e6, time.UTC)) {
		t.Fatalf("session: %+v %v", rec.Session, err)
	}
	// Byte for byte, whatever the tables' collation (case-insensitive by
	// default).
	rec, err = s.Lookup(ctx, betterauth.NewLookup(betterauth.KindSession, "TOK123"))
	if err != nil || rec.Session != nil {
		t.Fatalf("a session token matched in another case: %+v %v", rec.Session, err)
	}
	rec, err = s.Lookup(ctx, betterauth.NewLookup(betterauth.KindEither, "nosuchtoken12345678901234567890ab"))
	if err != nil || rec.Found() {
		t.Fatalf("unknown: %+v %v", rec, err)
	}
	// A miss is one round trip: the statement is prepared once, then only
	// executed (a query with arguments is otherwise prepared, executed and
	// closed each time).
	status := func() (prepared, executed int) {
		rows, err := db.QueryContext(ctx, "SHOW SESSION STATUS WHERE Variable_name IN ('Com_stmt_prepare', 'Com_stmt_execute')")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var name string
			var n int
			if err := rows.Scan(&name, &n); err != nil {
				t.Fatal(err)
			}
			if name == "Com_stmt_prepare" {
				prepared = n
			} else {
				executed = n
			}
		}
		return prepared, executed
	}
	db.SetMaxOpenConns(1) // one session, whose counters status reads
	p0, e0 := status()
	for range 10 {
		if _, err := s.Lookup(ctx, betterauth.NewLookup(betterauth.KindAPIKey, key)); err != nil {
			t.Fatal(err)
		}
	}
	if p1, e1 := status(); p1-p0 > 1 || e1-e0 != 10 {
		t.Errorf("10 key lookups: %d prepared, %d executed; want at most 1 and 10", p1-p0, e1-e0)
	}
	// A value that may be either is one statement too, and finds either.
	for _, v := range []struct{ secret, want string }{{key, "key"}, {"tok123", "session"}, {"neither", ""}} {
		_, e0 := status()
		rec, err := s.Lookup(ctx, betterauth.NewLookup(betterauth.KindEither, v.secret))
		_, e1 := status()
		got := ""
		switch {
		case rec.APIKey != nil && rec.Session == nil:
			got = "key"
		case rec.Session != nil && rec.APIKey == nil && rec.Session.ID == "s1":
			got = "session"
		case rec.Found():
			got = "both"
		}
		if err != nil || got != v.want || e1-e0 != 1 {
			t.Errorf("either %q: %q (%v) in %d statements, want %q in 1", v.secret, got, err, e1-e0, v.want)
		}
	}
	// The session refuses writes.
	if _, err := db.ExecContext(ctx, "DELETE FROM `session`"); err == nil {
		t.Fatal("the store's connection could write")
	}
}

// A tinyint enabled flag other than 0 or 1 (written by hand) disables the
// key, as Better-Auth's adapters read it (value === 1).
func TestKeyEnabledOnlyWhenOne(t *testing.T) {
	t.Parallel()
	const key = "ba_tinyintEnabledTwoKeyxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	dsn := newDatabase(t,
		"CREATE TABLE `user` (`id` varchar(36) NOT NULL PRIMARY KEY, `name` text NOT NULL, `email` varchar(255) NOT NULL UNIQUE, `emailVerified` boolean NOT NULL, `image` text, `createdAt` datetime(3) NOT NULL, `updatedAt` datetime(3) NOT NULL)",
		"CREATE TABLE `apikey` (`id` varchar(36) NOT NULL PRIMARY KEY, `configId` varchar(255) NOT NULL DEFAULT 'default', `name` text, `start` text, `referenceId` varchar(36) NOT NULL, `prefix` text, `key` varchar(255) NOT NULL, `refillInterval` int, `refillAmount` int, `lastRefillAt` datetime(3), `enabled` boolean, `rateLimitEnabled` boolean, `rateLimitTimeWindow` int, `rateLimitMax` int, `requestCount` int, `remaining` int, `lastRequest` datetime(3), `expiresAt` datetime(3), `createdAt` datetime(3) NOT NULL, `updatedAt` datetime(3) NOT NULL, `permissions` text, `metadata` text)",
		"INSERT INTO `user` VALUES ('u1', 'Alice', 'alice@example.com', 1, NULL, UTC_TIMESTAMP(3), UTC_TIMESTAMP(3))",
		"INSERT INTO `apikey` (`id`, `referenceId`, `key`, `enabled`, `createdAt`, `updatedAt`) VALUES ('k1', 'u1', '"+betterauth.HashAPIKey(key)+"', 2, UTC_TIMESTAMP(3), UTC_TIMESTAMP(3))",
	)
	db, err := mysqlstore.Open(dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err := mysqlstore.New(db, mysqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := s.Lookup(context.Background(), betterauth.NewLookup(betterauth.KindAPIKey, key))
	if err != nil || rec.APIKey == nil || rec.APIKey.Enabled {
		t.Fatalf("enabled = 2: %+v %v", rec.APIKey, err)
	}
}

// On a server with lower_case_table_names 1 (TEST_MYSQL_LCTN1_URL, a
// server's URL without a database; skipped without it), the layout still
// finds the OAuth provider's camelCase tables, which it lists in lower
// case.
func TestCatalogLowerCaseTableNames(t *testing.T) {
	base := os.Getenv("TEST_MYSQL_LCTN1_URL")
	if base == "" {
		t.Skip("TEST_MYSQL_LCTN1_URL is not set")
	}
	dsn := testenv.NewMySQLDatabaseOn(t, base)
	admin := testenv.OpenMySQL(t, dsn)
	for _, ddl := range []string{
		"CREATE TABLE `user` (`id` varchar(36) NOT NULL PRIMARY KEY, `name` text NOT NULL, `email` varchar(255) NOT NULL UNIQUE, `emailVerified` boolean NOT NULL, `image` text, `createdAt` datetime(3) NOT NULL, `updatedAt` datetime(3) NOT NULL)",
		"CREATE TABLE `oauthAccessToken` (`id` varchar(36) NOT NULL PRIMARY KEY, `token` varchar(255) NOT NULL UNIQUE, `clientId` varchar(255) NOT NULL, `sessionId` varchar(36), `userId` varchar(36), `referenceId` varchar(36), `refreshId` varchar(36), `expiresAt` datetime(3) NOT NULL, `createdAt` datetime(3) NOT NULL, `scopes` text NOT NULL)",
	} {
		if _, err := admin.Exec(ddl); err != nil {
			t.Fatal(err)
		}
	}
	db, err := mysqlstore.Open(dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cat, err := mysqlstore.Catalog(context.Background(), db, []string{"user", "oauthAccessToken"})
	if err != nil || len(cat["oauthAccessToken"]) == 0 || len(cat["user"]) == 0 {
		t.Fatalf("catalog %v %v", cat, err)
	}
}

// The store's session settings hold on every connection, whatever SQL the
// URL's other parameters carry into the driver's one SET (here a comment
// that would swallow the settings after it, in the driver's map order).
func TestSessionSettingsLast(t *testing.T) {
	t.Parallel()
	dsn := newDatabase(t) + "?net_read_timeout=60%20--%20&max_conns=1"
	for wantWait, open := range map[int]func() (*sql.DB, error){
		0: func() (*sql.DB, error) { return mysqlstore.Open(dsn) },
		2: func() (*sql.DB, error) { return mysqlstore.OpenWritable(dsn, 2*time.Second) },
	} {
		for range 20 {
			db, err := open()
			if err != nil {
				t.Fatal(err)
			}
			var mode, zone string
			var autocommit, wait int
			err = db.QueryRow("SELECT @@sql_mode, @@time_zone, @@autocommit, @@innodb_lock_wait_timeout").Scan(&mode, &zone, &autocommit, &wait)
			db.Close()
			if err != nil || !strings.Contains(mode, "ANSI_QUOTES") || zone != "+00:00" || autocommit != 1 || (wantWait != 0 && wait != wantWait) {
				t.Fatalf("sql_mode %q, time_zone %q, autocommit %d, lock wait %d: %v", mode, zone, autocommit, wait, err)
			}
		}
	}
}
