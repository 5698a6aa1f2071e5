// Package storetest is the table of credentials that every store must answer
// alike, over a fixture made by real Better-Auth (see testenv.Seed).
package storetest

import (
	"context"
	"strings"
	"testing"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
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
