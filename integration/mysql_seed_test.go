package integration

import (
	"database/sql"
	"net/url"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// TestMySQLSeed has real Better-Auth (mysql2) seed a MariaDB database the
// way it seeds PostgreSQL and SQLite, and reads the rows back with
// go-sql-driver/mysql: the groundwork of the MySQL store's tests.
func TestMySQLSeed(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts testenv.SeedOptions
	}{
		{"camel", testenv.SeedOptions{MySQL: true}},
		{"snake", testenv.SeedOptions{MySQL: true, Snake: true}},
		{"no-admin", testenv.SeedOptions{MySQL: true, NoAdmin: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := testenv.Seed(t, tc.opts)
			u, err := url.Parse(f.DatabaseURL)
			if err != nil {
				t.Fatal(err)
			}
			u.RawQuery = url.Values{"parseTime": {"true"}, "loc": {"UTC"}}.Encode()
			db := testenv.OpenMySQL(t, u.String())
			col := func(camel, snake string) string {
				if tc.opts.Snake {
					return snake
				}
				return camel
			}
			now := time.Now()

			var names []string
			for _, who := range []testenv.User{f.Users.Alice, f.Users.Eve, f.Users.Zoe} {
				var name string
				if err := db.QueryRow("SELECT name FROM user WHERE id = ?", who.ID).Scan(&name); err != nil {
					t.Fatalf("user %s: %v", who.Email, err)
				}
				names = append(names, name)
				if name != who.Name {
					t.Errorf("user %s: name %q, Better-Auth gave %q", who.Email, name, who.Name)
				}
			}
			if names[2] != "Zoë Ünïcødé" || names[1] != "Eve\r\nX-Auth-User-Role: admin" {
				t.Errorf("names not stored byte for byte: %q", names)
			}

			expires := func(table, id string) time.Time {
				t.Helper()
				var at time.Time
				q := "SELECT `" + col("expiresAt", "expires_at") + "` FROM `" + table + "` WHERE id = ?"
				if err := db.QueryRow(q, id).Scan(&at); err != nil {
					t.Fatalf("%s %s: %v", table, id, err)
				}
				return at
			}
			// Dates are UTC wall time on both sides: the live session ends
			// in about 7 days, the aged ones a minute ago.
			if at := expires("session", f.SessionIDs["alice"]); at.Before(now.Add(6*24*time.Hour)) || at.After(now.Add(8*24*time.Hour)) {
				t.Errorf("Alice's session expires at %v, now is %v", at, now)
			}
			if at := expires("session", f.SessionIDs["expired"]); !at.Before(now) || at.Before(now.Add(-time.Hour)) {
				t.Errorf("the expired session expires at %v, now is %v", at, now)
			}
			if at := expires("apikey", f.Keys.Expired.ID); !at.Before(now) || at.Before(now.Add(-time.Hour)) {
				t.Errorf("the expired key expires at %v, now is %v", at, now)
			}
			var token string
			if err := db.QueryRow("SELECT token FROM session WHERE id = ?", f.SessionIDs["alice"]).Scan(&token); err != nil || token != f.Users.Alice.Token {
				t.Errorf("Alice's session token %q (%v), want %q", token, err, f.Users.Alice.Token)
			}

			var enabled bool
			if err := db.QueryRow("SELECT enabled FROM apikey WHERE id = ?", f.Keys.Disabled.ID).Scan(&enabled); err != nil || enabled {
				t.Errorf("disabled key: enabled %v (%v)", enabled, err)
			}
			var remaining sql.NullInt64
			if err := db.QueryRow("SELECT remaining FROM apikey WHERE id = ?", f.Keys.Exhausted.ID).Scan(&remaining); err != nil || !remaining.Valid || remaining.Int64 != 0 {
				t.Errorf("exhausted key: remaining %v (%v)", remaining, err)
			}
			var owner string
			if err := db.QueryRow("SELECT `"+col("referenceId", "reference_id")+"` FROM apikey WHERE id = ?", f.Keys.Eve.ID).Scan(&owner); err != nil || owner != f.Users.Eve.ID {
				t.Errorf("Eve's key belongs to %q (%v), want %q", owner, err, f.Users.Eve.ID)
			}

			var banned sql.NullBool
			err = db.QueryRow("SELECT banned FROM user WHERE id = ?", f.Users.Bob.ID).Scan(&banned)
			if tc.opts.NoAdmin {
				if err == nil {
					t.Error("without the admin plugin, user has a banned column")
				}
			} else if err != nil || !banned.Bool {
				t.Errorf("Bob: banned %v (%v)", banned, err)
			}
		})
	}
}

// TestMySQLDefaultCollationIgnoresCase records what the MySQL store must
// guard against: Better-Auth's tables take the server's default collation
// (utf8mb4_general_ci here, utf8mb4_0900_ai_ci on MySQL 8), under which a
// token with its letters' case changed still equals the stored one; a
// binary comparison does not.
func TestMySQLDefaultCollationIgnoresCase(t *testing.T) {
	f := testenv.Seed(t, testenv.SeedOptions{MySQL: true})
	db := testenv.OpenMySQL(t, f.DatabaseURL)
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM session WHERE token = UPPER(?)", f.Users.Alice.Token).Scan(&n); err != nil || n != 1 {
		t.Errorf("case-changed token under the default collation: %d rows (%v), want 1", n, err)
	}
	if err := db.QueryRow("SELECT COUNT(*) FROM session WHERE token = BINARY UPPER(?)", f.Users.Alice.Token).Scan(&n); err != nil || n != 0 {
		t.Errorf("case-changed token compared as binary: %d rows (%v), want 0", n, err)
	}
}
