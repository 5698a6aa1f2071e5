package mysqlstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/internal/storetest"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
	"github.com/caddy-betterauth/caddy-betterauth/mysqlstore"
	"github.com/caddy-betterauth/caddy-betterauth/pgstore"
	"github.com/caddy-betterauth/caddy-betterauth/schema"
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
			gotMy := storetest.Run(t, store, f)

			layout, err := store.Layout(context.Background())
			if err != nil || layout.Admin == tt.seed.NoAdmin || (layout.Naming == schema.SnakeCase) != tt.seed.Snake {
				t.Errorf("layout %+v, %v", layout, err)
			}
			rec, err := store.Lookup(context.Background(), betterauth.NewLookup(betterauth.KindSession, f.Users.Alice.Token))
			if err != nil || rec.Session == nil {
				t.Fatalf("session: %+v %v", rec, err)
			}
			if left := time.Until(rec.Session.ExpiresAt); left < 7*24*time.Hour-5*time.Minute || left > 7*24*time.Hour {
				t.Errorf("session expires in %v, want about 7 days (dates read as UTC)", left)
			}

			pf := testenv.Seed(t, tt.seed)
			pool, err := pgxpool.New(context.Background(), pf.DatabaseURL)
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			pg, _ := pgstore.New(pool, pgstore.Options{})
			gotPG := storetest.Run(t, pg, pf)
			if len(gotMy) == 0 {
				t.Fatal("no cases ran")
			}
			for name, r := range gotMy {
				if gotPG[name] != r {
					t.Errorf("%s: MySQL %v, PostgreSQL %v", name, r, gotPG[name])
				}
			}
		})
	}
}
