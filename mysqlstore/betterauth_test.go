package mysqlstore_test

import (
	"testing"

	"github.com/caddy-betterauth/caddy-betterauth/internal/storetest"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
	"github.com/caddy-betterauth/caddy-betterauth/mysqlstore"
)

// The same credentials give the same decisions whether real Better-Auth
// (through mysql2 and Kysely) keeps them in MySQL or in PostgreSQL: the
// shared table of cases, with and without the admin plugin, and with
// snake_case columns.
func TestBetterAuthMySQLMatchesPostgres(t *testing.T) {
	for _, tt := range []struct {
		name string
		seed testenv.SeedOptions
	}{
		{"kysely with admin plugin", testenv.SeedOptions{}},
		{"kysely without admin plugin", testenv.SeedOptions{NoAdmin: true}},
		{"snake_case", testenv.SeedOptions{Snake: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			my := tt.seed
			my.MySQL = true
			f := testenv.Seed(t, my)
			db, err := mysqlstore.Open(f.DatabaseURL)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			store, err := mysqlstore.New(db, mysqlstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			storetest.MatchesPostgres(t, "MySQL", store, f, tt.seed)
		})
	}
}
