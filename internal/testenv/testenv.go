// Package testenv gives integration tests the services that the test script
// (scripts/test.sh) starts: PostgreSQL and MariaDB servers, the pinned
// Better-Auth packages that seed them, and the Caddy binary built from
// cmd/caddy.
//
// Outside that script the tests that need them skip; under it
// (BETTERAUTH_INTEGRATION=1) a missing service fails the test instead, so CI
// can never pass by skipping.
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Secret is the BETTER_AUTH_SECRET the seeded apps use.
const Secret = "integration-secret-0123456789abcdefghijklmnopqrstuvwxyz"

// Require returns the value of an environment variable the test script sets,
// skipping the test (or failing it under the script) when it is unset.
func Require(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		if os.Getenv("BETTERAUTH_INTEGRATION") == "1" {
			t.Fatalf("%s is not set; run the tests with scripts/test.sh", name)
		}
		t.Skipf("%s is not set; run scripts/test.sh for integration tests", name)
	}
	return v
}

// RepoRoot returns the repository's root folder.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// NewDatabase creates an empty database on the test server and returns its
// URL. It is dropped when the test ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	return NewDatabaseOn(t, Require(t, "TEST_DATABASE_URL"))
}

// NewDatabaseOn creates an empty database on the server at base.
func NewDatabaseOn(t testing.TB, base string) string {
	t.Helper()
	name := "t_" + strings.ToLower(rand.Text()[:12])
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connecting to the test server: %v", err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("creating database: %v", err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), base)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// User is a seeded Better-Auth user with its first session.
type User struct {
	ID     string `json:"id"`
	Email  string `json:"email"`
	Name   string `json:"name"`
	Signed string `json:"signed"` // the set-auth-token value, "<token>.<signature>"
	Token  string `json:"token"`  // the raw session token
}

// Key is an API key created by Better-Auth.
type Key struct {
	Key string `json:"key"`
	ID  string `json:"id"`
}

// Fixture is what `seed.mjs setup` created.
type Fixture struct {
	DatabaseURL string `json:"-"`
	Admin       bool   `json:"admin"`
	Naming      string `json:"naming"`
	Users       struct {
		Alice, Eve, Zoe, Bob, Expired User
	} `json:"users"`
	SessionIDs    map[string]string `json:"sessionIds"`
	AliceSession2 struct {
		Signed string `json:"signed"`
		Token  string `json:"token"`
	} `json:"aliceSession2"`
	Keys struct {
		Valid, Valid2, Eve, Zoe, Disabled, Expired, Exhausted, Limited, Refill, Banned, Deletable, UnhashedPrefix, Permitted, IPListed, IPMalformed Key
	} `json:"keys"`
	// Org is set with SeedOptions.Org.
	Org *OrgFixture `json:"org"`
}

// Organization is an organization Better-Auth created.
type Organization struct {
	ID   string `json:"id"`
	Slug string `json:"slug"`
	Name string `json:"name"`
}

// Member is a member row.
type Member struct {
	ID   string `json:"id"`
	Role string `json:"role"`
}

// OrgFixture is what setup creates with the organization plugin: Alice
// owns Acme (whose name holds CR LF and non-ASCII text) and Doomed, Zoe is
// a member of Acme; Acme is the active organization of Alice's first
// session and Zoe's; each organization has a key of the api-key
// configuration "org" (references: "organization").
type OrgFixture struct {
	Acme, Doomed Organization
	Members      struct{ Alice, Zoe Member } `json:"members"`
	Keys         struct{ Acme, Doomed Key }  `json:"keys"`
}

// SeedOptions choose the Better-Auth setup.
type SeedOptions struct {
	NoAdmin bool // leave out the admin plugin
	Snake   bool // Drizzle-style snake_case columns with timestamp
	// Server is the PostgreSQL server's URL, or a MySQL server's
	// (mysql://). Default: TEST_DATABASE_URL, or TEST_MYSQL_URL with MySQL.
	Server string
	// SQLite puts the app's data in a new SQLite file instead (better-sqlite3).
	SQLite bool
	// MySQL puts it in a new database on the MySQL (MariaDB) server
	// instead (mysql2).
	MySQL bool
	// Redis gives the app secondary storage (@better-auth/redis-storage) at
	// this URL with this key prefix: sessions live there (only there unless
	// SessionsInDB), and API keys too with KeysInRedis.
	Redis, RedisPrefix        string
	SessionsInDB, KeysInRedis bool
	// Org adds the organization plugin and the "org" api-key
	// configuration, and fills Fixture.Org.
	Org bool
}

// Seed creates a database and has real Better-Auth build its schema and the
// fixture rows in it.
func Seed(t testing.TB, opts SeedOptions) *Fixture {
	t.Helper()
	var db string
	if opts.SQLite {
		db = "sqlite://" + filepath.Join(t.TempDir(), "app.db")
	} else {
		server := opts.Server
		if server == "" && opts.MySQL {
			server = Require(t, "TEST_MYSQL_URL")
		} else if server == "" {
			server = Require(t, "TEST_DATABASE_URL")
		}
		if strings.HasPrefix(server, "mysql://") {
			db = NewMySQLDatabaseOn(t, server)
		} else {
			db = NewDatabaseOn(t, server)
		}
	}
	env := []string{}
	if opts.NoAdmin {
		env = append(env, "ADMIN=0")
	}
	if opts.Snake {
		env = append(env, "NAMING=snake")
	}
	if opts.Org {
		env = append(env, "ORG=1")
	}
	if opts.Redis != "" {
		env = append(env, "REDIS_URL="+opts.Redis, "REDIS_PREFIX="+opts.RedisPrefix)
		if opts.SessionsInDB {
			env = append(env, "STORE_SESSIONS_IN_DB=1")
		}
		if opts.KeysInRedis {
			env = append(env, "KEY_STORAGE=secondary")
		}
	}
	out := RunSeed(t, db, env, "setup")
	f := &Fixture{DatabaseURL: db}
	if err := json.Unmarshal(out, f); err != nil {
		t.Fatalf("reading the fixture: %v\n%s", err, out)
	}
	return f
}

// RunSeed runs seed.mjs with a command against db and returns its output.
func RunSeed(t testing.TB, db string, env []string, args ...string) []byte {
	t.Helper()
	dir := filepath.Join(RepoRoot(), "integration", "seed")
	if _, err := os.Stat(filepath.Join(dir, "node_modules")); err != nil {
		if os.Getenv("BETTERAUTH_INTEGRATION") == "1" {
			t.Fatalf("integration/seed/node_modules is missing; run scripts/test.sh")
		}
		t.Skip("integration/seed/node_modules is missing; run scripts/test.sh")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{"seed.mjs"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), append(env, "DATABASE_URL="+db, "BETTER_AUTH_SECRET="+Secret)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("seed %v: %v\n%s", args, err, stderr.String())
	}
	return stdout.Bytes()
}

// Exec runs SQL on db: PostgreSQL, or MySQL for a mysql:// URL (with ?
// placeholders then).
func Exec(t testing.TB, db, sql string, args ...any) {
	t.Helper()
	if strings.HasPrefix(db, "mysql://") {
		if _, err := OpenMySQL(t, db).Exec(sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return
	}
	c, err := pgx.Connect(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
