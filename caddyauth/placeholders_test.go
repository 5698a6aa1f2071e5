package caddyauth

import (
	"testing"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

// An organization's key has {http.auth.org.*} and no user placeholders; a
// session has its active organization's id and role.
func TestOrganizationPlaceholders(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		d    betterauth.Decision
		want map[string]any // nil: unset
	}{
		{"organization key", betterauth.Decision{Method: betterauth.MethodAPIKey, Org: &betterauth.Organization{ID: "o1", Slug: "acme", Name: "Acmé"}},
			map[string]any{"http.auth.org.id": "o1", "http.auth.org.slug": "acme", "http.auth.org.name": "Acm%C3%A9", "http.auth.org.role": nil,
				"http.auth.user.id": nil, "http.auth.user.email": nil, "http.auth.user.method": "api_key"}},
		{"session", betterauth.Decision{Method: betterauth.MethodSession, User: &betterauth.User{ID: "u1"},
			Member: &betterauth.Membership{OrgID: "o1", Role: "owner"}},
			map[string]any{"http.auth.org.id": "o1", "http.auth.org.role": "owner", "http.auth.org.slug": nil, "http.auth.user.id": "u1"}},
		{"session without an organization", betterauth.Decision{Method: betterauth.MethodSession, User: &betterauth.User{ID: "u1"}},
			map[string]any{"http.auth.org.id": nil, "http.auth.org.role": nil, "http.auth.user.id": "u1"}},
	} {
		f := placeholders(tc.d)
		for key, want := range tc.want {
			got, ok := f(key)
			if ok != (want != nil) || (ok && got != want) {
				t.Errorf("%s: %s = %v (%v), want %v", tc.name, key, got, ok, want)
			}
		}
	}
}
