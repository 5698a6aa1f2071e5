package pgstore_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
	"github.com/caddy-betterauth/caddy-betterauth/pgstore"
)

// Organizations as real Better-Auth's organization plugin writes them: an
// organization's key comes with its organization, a session with its active
// organization and the user's role there, each in one query.
func TestOrganizationsRead(t *testing.T) {
	t.Parallel()
	for _, snake := range []bool{false, true} {
		f := testenv.Seed(t, testenv.SeedOptions{Org: true, Snake: snake})
		var c counter
		store, _ := pgstore.New(newPool(t, f.DatabaseURL, &c), pgstore.Options{})
		ctx := context.Background()
		if _, err := store.Layout(ctx); err != nil {
			t.Fatal(err)
		}
		before := c.queries.Load()
		rec, err := store.Lookup(ctx, betterauth.NewLookup(betterauth.KindAPIKey, f.Org.Keys.Acme.Key))
		if err != nil || rec.APIKey == nil {
			t.Fatalf("snake %v: %+v %v", snake, rec, err)
		}
		k, acme := rec.APIKey, f.Org.Acme
		if k.Org == nil || *k.Org != (betterauth.Organization{ID: acme.ID, Slug: acme.Slug, Name: acme.Name}) ||
			k.User != nil || k.ReferenceID != acme.ID || k.ConfigID != "org" {
			t.Fatalf("snake %v: key %+v org %+v user %+v", snake, k, k.Org, k.User)
		}
		for _, tc := range []struct {
			u    testenv.User
			want *betterauth.Membership
		}{
			{f.Users.Alice, &betterauth.Membership{OrgID: acme.ID, Role: "owner"}},
			{f.Users.Zoe, &betterauth.Membership{OrgID: acme.ID, Role: "member"}},
			{f.Users.Eve, nil},
		} {
			rec, err := store.Lookup(ctx, betterauth.NewLookup(betterauth.KindSession, tc.u.Token))
			if err != nil || rec.Session == nil {
				t.Fatalf("%s: %+v %v", tc.u.Email, rec, err)
			}
			if got := rec.Session.Org; (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
				t.Fatalf("%s: membership %+v, want %+v", tc.u.Email, got, tc.want)
			}
		}
		if n := c.queries.Load() - before; n != 4 {
			t.Fatalf("snake %v: %d queries for 4 lookups", snake, n)
		}
		// Without the member row, the active organization does not count.
		testenv.Exec(t, f.DatabaseURL, `DELETE FROM "member" WHERE "id" = $1`, f.Org.Members.Zoe.ID)
		if rec, err := store.Lookup(ctx, betterauth.NewLookup(betterauth.KindSession, f.Users.Zoe.Token)); err != nil || rec.Session.Org != nil {
			t.Fatalf("a removed member keeps %+v (%v)", rec.Session.Org, err)
		}
		// Secondary storage's reads.
		if u, o, err := store.Owner(ctx, acme.ID); err != nil || u != nil || o == nil || o.Slug != "acme" {
			t.Fatalf("owner: %v %v %v", u, o, err)
		}
		if role, ok, err := store.Member(ctx, acme.ID, f.Users.Alice.ID); err != nil || !ok || role != "owner" {
			t.Fatalf("member: %q %v %v", role, ok, err)
		}
	}
}

// The api-key trigger ignores Better-Auth's usage writes (a verify, and an
// update of the usage columns alone) and notifies an update of enabled;
// organizations and memberships notify what depends on them.
func TestTriggersIgnoreUsageAndWatchOrganizations(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{Org: true})
	store, _ := pgstore.New(newPool(t, f.DatabaseURL, nil), pgstore.Options{})
	installTriggers(t, f.DatabaseURL, store)

	ctx, conn := listen(t, f.DatabaseURL, 60*time.Second)
	// Notifications arrive in commit order: whatever the usage writes sent
	// would come before the next one.
	next := func(want pgstore.Invalidation) {
		t.Helper()
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			t.Fatalf("waiting for %+v: %v", want, err)
		}
		var inv pgstore.Invalidation
		if err := json.Unmarshal([]byte(n.Payload), &inv); err != nil || inv != want {
			t.Fatalf("notification %s, want %+v", n.Payload, want)
		}
	}
	env := []string{"ORG=1"}
	limited := f.Keys.Limited
	out := testenv.RunSeed(t, f.DatabaseURL, env, "verify-key", limited.Key)
	var verified struct{ Valid bool }
	if json.Unmarshal(out, &verified) != nil || !verified.Valid {
		t.Fatalf("Better-Auth's verify: %s", out)
	}
	testenv.Exec(t, f.DatabaseURL, `UPDATE "apikey" SET "remaining" = "remaining" - 1, "requestCount" = "requestCount" + 1,
		"lastRequest" = now(), "updatedAt" = now() WHERE "id" = $1`, limited.ID)
	// Quota granted by the app (a raise of remaining without a refill) is
	// sent apart, for gateways that count in Redis; the gateways' own
	// writes, marked, are not.
	testenv.Exec(t, f.DatabaseURL, `UPDATE "apikey" SET "remaining" = "remaining" + 100, "updatedAt" = now() WHERE "id" = $1`, limited.ID)
	next(pgstore.Invalidation{Kind: "apikey_usage", ID: limited.ID})
	// A verify's own decrement is not; a cut is.
	testenv.Exec(t, f.DatabaseURL, `UPDATE "apikey" SET "remaining" = "remaining" - 1, "updatedAt" = now() WHERE "id" = $1`, limited.ID)
	testenv.Exec(t, f.DatabaseURL, `UPDATE "apikey" SET "remaining" = 1, "updatedAt" = now() WHERE "id" = $1`, limited.ID)
	next(pgstore.Invalidation{Kind: "apikey_usage", ID: limited.ID})
	testenv.Exec(t, f.DatabaseURL, `BEGIN; SELECT set_config('caddy_betterauth.writer', 'usage', true);
		UPDATE "apikey" SET "remaining" = "remaining" + 100 WHERE "id" = '`+limited.ID+`'; COMMIT`)
	// Another key: the usage writes' notifications would name the first.
	testenv.Exec(t, f.DatabaseURL, `UPDATE "apikey" SET "enabled" = false WHERE "id" = $1`, f.Keys.Valid2.ID)
	next(pgstore.Invalidation{Kind: "apikey", ID: f.Keys.Valid2.ID, UserID: f.Users.Alice.ID})
	testenv.RunSeed(t, f.DatabaseURL, env, "disable-key", f.Keys.Valid.ID, f.Users.Alice.ID) // Better-Auth's own update
	next(pgstore.Invalidation{Kind: "apikey", ID: f.Keys.Valid.ID, UserID: f.Users.Alice.ID})

	acme, zoe := f.Org.Acme, f.Org.Members.Zoe
	testenv.Exec(t, f.DatabaseURL, `UPDATE "organization" SET "metadata" = '{}' WHERE "id" = $1`, acme.ID) // not watched
	testenv.Exec(t, f.DatabaseURL, `UPDATE "organization" SET "slug" = 'acme2' WHERE "id" = $1`, acme.ID)
	next(pgstore.Invalidation{Kind: "organization", ID: acme.ID})
	testenv.RunSeed(t, f.DatabaseURL, env, "update-member-role", acme.ID, zoe.ID, "admin", f.Users.Alice.Signed)
	next(pgstore.Invalidation{Kind: "member", ID: zoe.ID, UserID: f.Users.Zoe.ID})
	testenv.RunSeed(t, f.DatabaseURL, env, "delete-org", f.Org.Doomed.ID, f.Users.Alice.Signed)
	seen := map[string]bool{}
	for !seen["organization"] {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			t.Fatalf("waiting for the organization's deletion (have %v): %v", seen, err)
		}
		var inv pgstore.Invalidation
		if err := json.Unmarshal([]byte(n.Payload), &inv); err != nil {
			t.Fatal(err)
		}
		if inv.Kind == "organization" && inv.ID != f.Org.Doomed.ID {
			t.Fatalf("deleted %+v, want %s", inv, f.Org.Doomed.ID)
		}
		seen[inv.Kind] = true
	}
	if !seen["member"] {
		t.Fatalf("the owner's membership went without a notification (%v)", seen)
	}
}
