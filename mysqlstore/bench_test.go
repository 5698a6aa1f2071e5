package mysqlstore_test

import (
	"testing"

	"github.com/caddy-betterauth/caddy-betterauth/internal/storetest"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
	"github.com/caddy-betterauth/caddy-betterauth/mysqlstore"
)

// A lookup (what a cache miss costs) in a MySQL (MariaDB) database made by
// Better-Auth.
func BenchmarkLookup(b *testing.B) {
	f := testenv.Seed(b, testenv.SeedOptions{MySQL: true})
	db, err := mysqlstore.Open(f.DatabaseURL)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	s, err := mysqlstore.New(db, mysqlstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	storetest.BenchLookups(b, s, f)
}
