package sqlitestore_test

import (
	"context"
	"testing"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
	"github.com/caddy-betterauth/caddy-betterauth/sqlitestore"
)

// The organization plugin's rows in a SQLite file real Better-Auth wrote:
// an organization's key with its organization, a session with its active
// organization and role.
func TestOrganizationsRead(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{SQLite: true, Org: true})
	db, err := sqlitestore.Open(f.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store, err := sqlitestore.New(db, sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rec, err := store.Lookup(ctx, betterauth.NewLookup(betterauth.KindAPIKey, f.Org.Keys.Acme.Key))
	if err != nil || rec.APIKey == nil || rec.APIKey.Org == nil || rec.APIKey.Org.Slug != "acme" || rec.APIKey.User != nil {
		t.Fatalf("key: %+v %v", rec.APIKey, err)
	}
	rec, err = store.Lookup(ctx, betterauth.NewLookup(betterauth.KindSession, f.Users.Zoe.Token))
	if err != nil || rec.Session == nil || rec.Session.Org == nil || *rec.Session.Org != (betterauth.Membership{OrgID: f.Org.Acme.ID, Role: "member"}) {
		t.Fatalf("session: %+v %v", rec.Session, err)
	}
	if role, ok, err := store.Member(ctx, f.Org.Acme.ID, f.Users.Alice.ID); err != nil || !ok || role != "owner" {
		t.Fatalf("member: %q %v %v", role, ok, err)
	}
}
