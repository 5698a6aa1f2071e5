package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// Per-route rules through the real Caddy, on users and keys real
// Better-Auth made: a route for API keys only and one for admins. A
// refusal never reaches the upstream, and a role granted in the database
// is honoured at once through the revocation triggers, although the
// gateway caches for an hour.
func TestRouteRules(t *testing.T) {
	t.Parallel()
	f := seedWithTriggers(t, testenv.SeedOptions{})
	up := newUpstream(t)
	block := func(extra string) string {
		return fmt.Sprintf(`better_auth {
			database {env.DATABASE_URL}
			secret {env.BETTER_AUTH_SECRET}
			cache {
				ttl 1h
			}
			%s
		}
		reverse_proxy %s`, extra, up.addr())
	}
	gw := testenv.StartCaddy(t, "", fmt.Sprintf(`
	route /keys/* {
		%s
	}
	route /admin/* {
		%s
	}`, block("allow api_key"), block("require_role admin")),
		"DATABASE_URL="+f.DatabaseURL, "BETTER_AUTH_SECRET="+testenv.Secret)
	// Both routes share one gateway; its listener starts with the first
	// lookup.
	send(t, gw, "/keys/x", h("X-Api-Key", "ba_start_the_watchers"))
	gw.WaitForLog(t, "listening for revocations", 10*time.Second)

	key := h("X-Api-Key", f.Keys.Valid.Key, "X-Auth-User-Role", "admin")
	session := h("Authorization", "Bearer "+f.Users.Alice.Signed)
	for _, tc := range []struct {
		name, path string
		hdr        map[string][]string
		status     int
		code       string
	}{
		{"a key where keys are accepted", "/keys/x", key, 200, ""},
		{"a session where only keys are", "/keys/x", session, 401, "CREDENTIAL_NOT_ACCEPTED"},
		{"a user's key on the admin route (forged role header aside)", "/admin/x", key, 403, "INSUFFICIENT_ROLE"},
		{"a user's session on the admin route", "/admin/x", session, 403, "INSUFFICIENT_ROLE"},
	} {
		r := send(t, gw, tc.path, tc.hdr)
		if r.status != tc.status || r.body.Code != tc.code {
			t.Errorf("%s: %d %s, want %d %s", tc.name, r.status, r.raw, tc.status, tc.code)
		}
		if reached := up.headers(r.id) != nil; reached != (tc.status == 200) {
			t.Errorf("%s: reached the upstream: %v", tc.name, reached)
		}
		if tc.status == 401 && r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without a challenge", tc.name)
		}
	}

	// The admin plugin stores several roles comma-separated.
	testenv.Exec(t, f.DatabaseURL, `UPDATE "user" SET role = 'user,admin' WHERE id = $1`, f.Users.Alice.ID)
	since := time.Now()
	for {
		r := send(t, gw, "/admin/x", key)
		if r.status == 200 {
			if got := up.headers(r.id).Get("X-Auth-User-Role"); got != "user,admin" {
				t.Fatalf("the upstream got role %q", got)
			}
			break
		}
		if time.Since(since) > time.Second {
			t.Fatalf("still %d %s a second after the role was granted", r.status, r.raw)
		}
	}
}
