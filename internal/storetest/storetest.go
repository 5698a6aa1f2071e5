// Package storetest is the table of credentials that every store must answer
// alike, over a fixture made by real Better-Auth (see testenv.Seed).
package storetest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
	"github.com/caddy-betterauth/caddy-betterauth/pgstore"
	"github.com/caddy-betterauth/caddy-betterauth/schema"
)

// Case is one credential and the decision it must get.
type Case struct {
	Name     string
	Cred     betterauth.Credential
	Want     betterauth.Reason
	WantUser string
	WantID   string // key or session id
}

// Cases returns the table for a fixture. Without the admin plugin nobody is
// banned.
func Cases(f *testenv.Fixture) []Case {
	key := func(k string) betterauth.Credential {
		return betterauth.Credential{Kind: betterauth.KindAPIKey, Source: betterauth.SourceAPIKeyHeader, Value: k}
	}
	cookie := func(v string) betterauth.Credential {
		return betterauth.Credential{Kind: betterauth.KindSession, Source: betterauth.SourceCookie, Value: v}
	}
	bearer := func(k betterauth.Kind, v string) betterauth.Credential {
		return betterauth.Credential{Kind: k, Source: betterauth.SourceBearer, Value: v}
	}
	banned := betterauth.UserBanned
	if !f.Admin {
		banned = betterauth.Allowed
	}
	u, k := f.Users, f.Keys
	return []Case{
		{"valid key", key(k.Valid.Key), betterauth.Allowed, u.Alice.ID, k.Valid.ID},
		{"key as bearer", bearer(betterauth.KindAPIKey, k.Valid2.Key), betterauth.Allowed, u.Alice.ID, k.Valid2.ID},
		{"unknown key", key(k.Valid.Key + "x"), betterauth.InvalidAPIKey, "", ""},
		{"disabled key", key(k.Disabled.Key), betterauth.KeyDisabled, "", ""},
		{"expired key", key(k.Expired.Key), betterauth.KeyExpired, "", ""},
		{"exhausted key", key(k.Exhausted.Key), betterauth.UsageExceeded, "", ""},
		{"key with uses left", key(k.Limited.Key), betterauth.Allowed, u.Alice.ID, k.Limited.ID},
		{"exhausted key due for refill", key(k.Refill.Key), betterauth.Allowed, u.Alice.ID, k.Refill.ID},
		{"banned owner's key", key(k.Banned.Key), banned, "", ""},
		{"signed cookie", cookie(strings.ReplaceAll(u.Alice.Signed, "=", "%3D")), betterauth.Allowed, u.Alice.ID, f.SessionIDs["alice"]},
		{"signed bearer", bearer(betterauth.KindSession, u.Alice.Signed), betterauth.Allowed, u.Alice.ID, f.SessionIDs["alice"]},
		{"raw bearer, both tables", bearer(betterauth.KindEither, u.Zoe.Token), betterauth.Allowed, u.Zoe.ID, f.SessionIDs["zoe"]},
		{"expired session", bearer(betterauth.KindSession, u.Expired.Signed), betterauth.SessionExpired, "", ""},
		{"banned user's session", cookie(u.Bob.Signed), banned, "", ""},
		{"forged signature", cookie(u.Alice.Token + ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="), betterauth.InvalidSession, "", ""},
		{"unknown session", bearer(betterauth.KindEither, strings.Repeat("a", 32)), betterauth.InvalidSession, "", ""},
	}
}

// Run checks every case against a store and returns the decisions by case
// name, so that callers can compare stores with each other.
func Run(t *testing.T, store betterauth.Store, f *testenv.Fixture) map[string]betterauth.Reason {
	t.Helper()
	v, err := betterauth.NewVerifier(betterauth.Options{Store: store, Secret: testenv.Secret})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]betterauth.Reason{}
	for _, tc := range Cases(f) {
		t.Run(tc.Name, func(t *testing.T) {
			d, err := v.Verify(context.Background(), tc.Cred)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			got[tc.Name] = d.Reason
			if d.Reason != tc.Want {
				t.Fatalf("reason = %v, want %v", d.Reason, tc.Want)
			}
			if tc.WantUser == "" {
				return
			}
			if d.User.ID != tc.WantUser || d.CredentialID != tc.WantID {
				t.Fatalf("identity = user %q credential %q, want %q %q", d.User.ID, d.CredentialID, tc.WantUser, tc.WantID)
			}
		})
	}
	return got
}

// LayoutStore is a store that says which layout it detected.
type LayoutStore interface {
	betterauth.Store
	Layout(ctx context.Context) (*schema.Layout, error)
}

// MatchesPostgres runs the cases on store, whose database real
// Better-Auth seeded as seed says (f), checks the layout it detected and
// that a session's expiry reads back as Better-Auth wrote it (seven days
// ahead: dates in the right zone), then seeds PostgreSQL alike and
// requires the same decision for every case. name names store's database
// in failures.
func MatchesPostgres(t *testing.T, name string, store LayoutStore, f *testenv.Fixture, seed testenv.SeedOptions) {
	t.Helper()
	got := Run(t, store, f)
	layout, err := store.Layout(context.Background())
	if err != nil || layout.Admin == seed.NoAdmin || (layout.Naming == schema.SnakeCase) != seed.Snake {
		t.Errorf("layout %+v, %v", layout, err)
	}
	rec, err := store.Lookup(context.Background(), betterauth.NewLookup(betterauth.KindSession, f.Users.Alice.Token))
	if err != nil || rec.Session == nil {
		t.Fatalf("session: %+v %v", rec, err)
	}
	if left := time.Until(rec.Session.ExpiresAt); left < 7*24*time.Hour-5*time.Minute || left > 7*24*time.Hour {
		t.Errorf("session expires in %v, want about 7 days", left)
	}

	seed.SQLite, seed.MySQL = false, false
	pf := testenv.Seed(t, seed)
	pool, err := pgxpool.New(context.Background(), pf.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	pg, _ := pgstore.New(pool, pgstore.Options{})
	want := Run(t, pg, pf)
	if len(got) == 0 {
		t.Fatal("no cases ran")
	}
	for c, r := range got {
		if want[c] != r {
			t.Errorf("%s: %s %v, PostgreSQL %v", c, name, r, want[c])
		}
	}
}
