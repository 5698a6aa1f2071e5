package sqlitestore_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/internal/storetest"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
	"github.com/caddy-betterauth/caddy-betterauth/schema"
	"github.com/caddy-betterauth/caddy-betterauth/sqlitestore"
)

func open(t testing.TB, dsn string, opts sqlitestore.Options) *sqlitestore.Store {
	t.Helper()
	db, err := sqlitestore.Open(dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := sqlitestore.New(db, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The same credentials give the same decisions whether Better-Auth keeps
// them in SQLite (Kysely's ISO-8601 text, or Drizzle's epoch milliseconds)
// or in PostgreSQL.
func TestBetterAuthSQLiteMatchesPostgres(t *testing.T) {
	for _, tt := range []struct {
		name string
		seed testenv.SeedOptions
	}{
		{"kysely with admin plugin", testenv.SeedOptions{}},
		{"kysely without admin plugin", testenv.SeedOptions{NoAdmin: true}},
		{"drizzle epoch milliseconds", testenv.SeedOptions{Snake: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			lite := tt.seed
			lite.SQLite = true
			f := testenv.Seed(t, lite)
			store := open(t, f.DatabaseURL, sqlitestore.Options{})
			storetest.MatchesPostgres(t, "SQLite", store, f, tt.seed)
		})
	}
}

func TestReadOnlyAndMissingFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	missing := "sqlite://" + filepath.Join(dir, "nope.db")
	store := open(t, missing, sqlitestore.Options{})
	if _, err := store.Lookup(context.Background(), betterauth.NewLookup(betterauth.KindAPIKey, "k")); err == nil {
		t.Fatal("a missing file must be an error")
	}
	if _, err := filepath.Glob(filepath.Join(dir, "*")); err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*")); len(m) != 0 {
		t.Fatalf("the store created %v", m)
	}

	// A file the gateway can open but not write.
	path := filepath.Join(dir, "app.db")
	rw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	if _, err := rw.Exec(`CREATE TABLE "user" (id text primary key, name text, email text); CREATE TABLE session (id text, token text, "userId" text, "expiresAt" date)`); err != nil {
		t.Fatal(err)
	}
	db, _ := sqlitestore.Open("sqlite://" + path)
	defer db.Close()
	if _, err := db.Exec(`INSERT INTO "user" VALUES ('x', 'x', 'x')`); err == nil {
		t.Fatal("the gateway's connection could write")
	}
}

func TestUnusableSchemaNamesTheColumn(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "app.db")
	rw, _ := sql.Open("sqlite", path)
	defer rw.Close()
	if _, err := rw.Exec(`CREATE TABLE "user" (id text primary key, name text, email text); CREATE TABLE apikey (id text, key text, "createdAt" date)`); err != nil {
		t.Fatal(err)
	}
	store := open(t, "file:"+path, sqlitestore.Options{})
	_, err := store.Lookup(context.Background(), betterauth.NewLookup(betterauth.KindAPIKey, "k"))
	if !errors.Is(err, schema.ErrUnusable) || !strings.Contains(err.Error(), `table "apikey" has no column "enabled"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestPath(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"sqlite:///var/lib/app.db":          "/var/lib/app.db",
		"sqlite://localhost/var/lib/app.db": "/var/lib/app.db",
		"sqlite:app.db":                     "app.db",
		"sqlite://data/app.db":              "data/app.db",
		"file:/tmp/a%20b.db?mode=rw":        "/tmp/a b.db",
		"file:app.db":                       "app.db",
	} {
		if got, err := sqlitestore.Path(in); err != nil || got != want {
			t.Errorf("Path(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"postgres://x", "sqlite:", "sqlite://"} {
		if _, err := sqlitestore.Path(bad); err == nil {
			t.Errorf("Path(%q) accepted", bad)
		}
	}
}

// An app that runs SQLite in WAL mode keeps a writer open; the gateway's
// read-only connection still sees each committed change.
func TestReadsAWALDatabaseWhileItIsWritten(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "wal.db")
	rw, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(wal)")
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	rw.SetMaxOpenConns(1)
	for _, q := range []string{
		`CREATE TABLE "user" (id text primary key, name text, email text)`,
		`CREATE TABLE session (id text, token text, "userId" text, "expiresAt" date)`,
		`INSERT INTO "user" VALUES ('u1', 'U', 'u@example.com')`,
	} {
		if _, err := rw.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	store := open(t, "sqlite://"+path, sqlitestore.Options{})
	ctx := context.Background()
	token := strings.Repeat("t", 32)
	if rec, err := store.Lookup(ctx, betterauth.NewLookup(betterauth.KindSession, token)); err != nil || rec.Found() {
		t.Fatalf("before the insert: %+v %v", rec, err)
	}
	if _, err := rw.Exec(`INSERT INTO session VALUES ('s1', ?, 'u1', ?)`, token, time.Now().Add(time.Hour).UTC().Format("2006-01-02T15:04:05.000Z")); err != nil {
		t.Fatal(err)
	}
	if rec, err := store.Lookup(ctx, betterauth.NewLookup(betterauth.KindSession, token)); err != nil || rec.Session == nil || rec.Session.User.Email != "u@example.com" {
		t.Fatalf("after the insert: %+v %v", rec, err)
	}
}

// The pool is bounded (each connection is a file descriptor), and as many
// connections as the bound may stay idle, so a busy gateway does not reopen
// the file for every miss.
func TestConnectionsAreBounded(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "app.db")
	rw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	if _, err := rw.Exec(`CREATE TABLE "user" (id text primary key)`); err != nil {
		t.Fatal(err)
	}
	if d := sqlitestore.DefaultMaxConns(); d != max(4, runtime.GOMAXPROCS(0)) {
		t.Fatalf("DefaultMaxConns() = %d", d)
	}
	ctx := context.Background()
	for dsn, want := range map[string]int{
		"sqlite://" + path:                      sqlitestore.DefaultMaxConns(),
		"sqlite://" + path + "?max_conns=2":     2,
		"file:" + path + "?mode=ro&max_conns=7": 7,
	} {
		db, err := sqlitestore.Open(dsn)
		if err != nil {
			t.Fatalf("Open(%q): %v", dsn, err)
		}
		if got := db.Stats().MaxOpenConnections; got != want {
			t.Errorf("Open(%q): at most %d connections, want %d", dsn, got, want)
		}
		var conns []*sql.Conn
		for range want {
			c, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.PingContext(ctx); err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		for _, c := range conns {
			c.Close()
		}
		if s := db.Stats(); s.OpenConnections != want || s.Idle != want {
			t.Errorf("Open(%q): %d open and %d idle after use, want %d of each", dsn, s.OpenConnections, s.Idle, want)
		}
		db.Close()
	}
	for _, bad := range []string{"?max_conns=0", "?max_conns=-1", "?max_conns=many", "?max_conns="} {
		if db, err := sqlitestore.Open("sqlite://" + path + bad); err == nil {
			db.Close()
			t.Errorf("Open with %s accepted", bad)
		}
	}
}
