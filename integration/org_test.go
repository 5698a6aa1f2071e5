package integration

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// Organizations through the real Caddy, on rows real Better-Auth's
// organization plugin made: an organization's key (api-key configuration
// "org", references: "organization") is its organization, with no user;
// a session carries its active organization and the user's role there;
// require_org_role decides on that role; forged X-Auth-Org-* headers never
// reach the upstream; a role changed and an organization deleted through
// Better-Auth are honoured at once through the triggers, although the
// gateway caches for an hour.
func TestOrganizations(t *testing.T) {
	t.Parallel()
	f := seedWithTriggers(t, testenv.SeedOptions{Org: true})
	up := newUpstream(t)
	block := func(extra string) string {
		return fmt.Sprintf(`better_auth {
			database {env.DATABASE_URL}
			secret {env.BETTER_AUTH_SECRET}
			api_key_config_id default org
			api_key_config org {
				references organization
			}
			cache {
				ttl 1h
			}
			%s
		}
		reverse_proxy %s`, extra, up.addr())
	}
	gw := testenv.StartCaddy(t, "", fmt.Sprintf(`
	route /any/* {
		%s
	}
	route /orgadmin/* {
		%s
	}
	route /admin/* {
		%s
	}
	route /users/* {
		better_auth {
			database {env.DATABASE_URL}
			api_key_config_id default org
		}
		reverse_proxy %s
	}`, block(""), block("require_org_role owner admin"), block("require_role user admin"), up.addr()),
		"DATABASE_URL="+f.DatabaseURL, "BETTER_AUTH_SECRET="+testenv.Secret)
	send(t, gw, "/any/x", h("X-Api-Key", "ba_start_the_watchers"))
	gw.WaitForLog(t, "listening for revocations", 10*time.Second)

	o, u := f.Org, f.Users
	forged := func(kv ...string) http.Header {
		return h(append(kv, "X-Auth-Org-Id", "forged", "X-Auth-Org-Role", "owner", "x_auth_org_slug", "forged", "X-Auth-User-Id", "forged")...)
	}
	orgKey := forged("X-Api-Key", o.Keys.Acme.Key)
	alice := forged("Authorization", "Bearer "+u.Alice.Signed)
	zoe := forged("Authorization", "Bearer "+u.Zoe.Signed)
	eve := forged("Authorization", "Bearer "+u.Eve.Signed)
	userKey := forged("X-Api-Key", f.Keys.Valid.Key)
	owned := []string{"X-Auth-Org-Id", "X-Auth-Org-Slug", "X-Auth-Org-Name", "X-Auth-Org-Role", "X-Auth-User-Id",
		"X-Auth-User-Email", "X-Auth-User-Name", "X-Auth-User-Role", "X-Auth-Method", "X-Auth-Key-Id", "X-Auth-Session-Id", "X_auth_org_slug"}
	for _, tc := range []struct {
		name, path string
		hdr        http.Header
		status     int
		code       string
		want       map[string]string // every owned header the upstream gets
	}{
		{"an organization's key", "/any/x", orgKey, 200, "", map[string]string{
			"X-Auth-Org-Id": o.Acme.ID, "X-Auth-Org-Slug": "acme", "X-Auth-Org-Name": "Acm%C3%A9 Corp%0D%0AX-Auth-Org-Id: forged",
			"X-Auth-Method": "api_key", "X-Auth-Key-Id": o.Keys.Acme.ID}},
		{"the owner's session in its active organization", "/any/x", alice, 200, "", map[string]string{
			"X-Auth-User-Id": u.Alice.ID, "X-Auth-User-Email": u.Alice.Email, "X-Auth-User-Name": "Alice", "X-Auth-User-Role": "user",
			"X-Auth-Org-Id": o.Acme.ID, "X-Auth-Org-Role": "owner", "X-Auth-Method": "session", "X-Auth-Session-Id": f.SessionIDs["alice"]}},
		{"a session without an active organization", "/any/x", eve, 200, "", map[string]string{
			"X-Auth-User-Id": u.Eve.ID, "X-Auth-User-Email": u.Eve.Email, "X-Auth-User-Name": "Eve%0D%0AX-Auth-User-Role: admin",
			"X-Auth-User-Role": "user", "X-Auth-Method": "session", "X-Auth-Session-Id": f.SessionIDs["eve"]}},
		{"the owner on the organization admins' route", "/orgadmin/x", alice, 200, "", nil},
		{"a plain member there", "/orgadmin/x", zoe, 403, "INSUFFICIENT_ORG_ROLE", nil},
		{"no active organization there", "/orgadmin/x", eve, 403, "INSUFFICIENT_ORG_ROLE", nil},
		{"an organization's key there", "/orgadmin/x", orgKey, 403, "INSUFFICIENT_ORG_ROLE", nil},
		{"a user's key there", "/orgadmin/x", userKey, 403, "INSUFFICIENT_ORG_ROLE", nil},
		{"an organization's key where a user role is required", "/admin/x", orgKey, 403, "INSUFFICIENT_ROLE", nil},
		{"a user's key there", "/admin/x", userKey, 200, "", nil},
		{"an organization's key where the configuration is not known to reference organizations", "/users/x", orgKey, 401, "INVALID_API_KEY", nil},
	} {
		r := send(t, gw, tc.path, tc.hdr)
		if r.status != tc.status || r.body.Code != tc.code {
			t.Errorf("%s: %d %s, want %d %s", tc.name, r.status, r.raw, tc.status, tc.code)
			continue
		}
		got := up.headers(r.id)
		if reached := got != nil; reached != (tc.status == 200) {
			t.Errorf("%s: reached the upstream: %v", tc.name, reached)
		}
		if tc.want == nil || got == nil {
			continue
		}
		for _, name := range owned {
			if v, ok := got[http.CanonicalHeaderKey(name)]; fmt.Sprint(v) != fmt.Sprint(optional(tc.want[name])) {
				t.Errorf("%s: the upstream got %s %q (%v), want %q", tc.name, name, v, ok, tc.want[name])
			}
		}
	}

	// Zoe is made an admin through Better-Auth: the member trigger revokes
	// her sessions.
	testenv.RunSeed(t, f.DatabaseURL, []string{"ORG=1"}, "update-member-role", o.Acme.ID, o.Members.Zoe.ID, "admin", u.Alice.Signed)
	since := time.Now()
	for {
		r := send(t, gw, "/orgadmin/x", zoe)
		if r.status == 200 {
			if got := up.headers(r.id).Get("X-Auth-Org-Role"); got != "admin" {
				t.Fatalf("the upstream got role %q", got)
			}
			break
		}
		if time.Since(since) > time.Second {
			t.Fatalf("still %d %s a second after the role was granted", r.status, r.raw)
		}
	}

	// An organization deleted through Better-Auth takes its key along.
	doomed := h("X-Api-Key", o.Keys.Doomed.Key)
	if r := send(t, gw, "/any/x", doomed); r.status != 200 || up.headers(r.id).Get("X-Auth-Org-Slug") != "doomed" {
		t.Fatalf("before the deletion: %d %s", r.status, r.raw)
	}
	testenv.RunSeed(t, f.DatabaseURL, []string{"ORG=1"}, "delete-org", o.Doomed.ID, u.Alice.Signed)
	since = time.Now()
	for {
		r := send(t, gw, "/any/x", doomed)
		if r.status == 401 && r.body.Code == "INVALID_API_KEY" {
			break
		}
		if time.Since(since) > time.Second {
			t.Fatalf("still %d %s a second after the organization was deleted", r.status, r.raw)
		}
	}
}

// optional is a header's values as the upstream gets them: none for "".
func optional(v string) []string {
	if v == "" {
		return nil
	}
	return []string{v}
}
