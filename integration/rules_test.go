package integration

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strings"
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

// require_permission decides as Better-Auth's verifyApiKey({permissions})
// does, on a key real Better-Auth created with permissions, kept in
// PostgreSQL, in a SQLite file and in secondary storage: for each
// requirement, Better-Auth's own verdict and the gateway's agree (it
// answers 403 INSUFFICIENT_PERMISSIONS where Better-Auth says
// KEY_NOT_FOUND), and a session never passes.
func TestPermissionsMatchBetterAuth(t *testing.T) {
	t.Parallel()
	redisURL := testenv.Require(t, "TEST_REDIS_URL")
	requirements := []map[string][]string{
		{"files": {"read"}},
		{"files": {"read", "write"}},
		{"files": {"read"}, "projects": {"list"}},
		{"files": {"delete"}},
		{"files": {"read"}, "billing": {"read"}},
		{"files": {"*"}},
		{"FILES": {"read"}},
		{"projects": {"list", "create"}},
	}
	appPrefix := "perm-" + strings.ToLower(rand.Text()[:8]) + ":"
	for _, tc := range []struct {
		name  string
		seed  testenv.SeedOptions
		extra string
		env   []string
	}{
		{"postgres", testenv.SeedOptions{}, "", nil},
		{"sqlite", testenv.SeedOptions{SQLite: true}, "", nil},
		{"secondary storage", testenv.SeedOptions{Redis: redisURL, RedisPrefix: appPrefix, KeysInRedis: true},
			"secondary_storage {env.APP_REDIS_URL} {\n\t\t\t\tprefix " + appPrefix + "\n\t\t\t\tapi_keys storage\n\t\t\t}",
			[]string{"APP_REDIS_URL=" + redisURL}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := testenv.Seed(t, tc.seed)
			up := newUpstream(t)
			var routes strings.Builder
			for i, req := range requirements {
				var lines []string
				for resource, actions := range req {
					lines = append(lines, "require_permission "+resource+" "+strings.Join(actions, " "))
				}
				fmt.Fprintf(&routes, `
	route /p%d/* {
		better_auth {
			database {env.DATABASE_URL}
			secret {env.BETTER_AUTH_SECRET}
			%s
			%s
		}
		reverse_proxy %s
	}`, i, strings.Join(lines, "\n\t\t\t"), tc.extra, up.addr())
			}
			gw := testenv.StartCaddy(t, "", routes.String(),
				append([]string{"DATABASE_URL=" + f.DatabaseURL, "BETTER_AUTH_SECRET=" + testenv.Secret}, tc.env...)...)
			seedEnv := []string{"REDIS_URL=" + redisURL, "REDIS_PREFIX=" + appPrefix, "KEY_STORAGE=secondary"}
			if tc.seed.Redis == "" {
				seedEnv = nil
			}
			outcomes := map[bool]int{}
			for i, req := range requirements {
				raw, _ := json.Marshal(req)
				var verdict struct {
					Valid bool `json:"valid"`
					Error *struct {
						Code string `json:"code"`
					} `json:"error"`
				}
				out := testenv.RunSeed(t, f.DatabaseURL, seedEnv, "verify-key", f.Keys.Permitted.Key, string(raw))
				if err := json.Unmarshal(out, &verdict); err != nil {
					t.Fatalf("Better-Auth's verifyApiKey: %s", out)
				}
				outcomes[verdict.Valid]++
				r := send(t, gw, fmt.Sprintf("/p%d/x", i), h("X-Api-Key", f.Keys.Permitted.Key))
				want, code := 200, ""
				if !verdict.Valid {
					want, code = 403, "INSUFFICIENT_PERMISSIONS"
					if verdict.Error == nil || verdict.Error.Code != "KEY_NOT_FOUND" {
						t.Fatalf("%s: Better-Auth refused with %s, not for the permissions", raw, out)
					}
				}
				if r.status != want || r.body.Code != code {
					t.Errorf("%s: Better-Auth valid=%v, the gateway %d %s", raw, verdict.Valid, r.status, r.raw)
				}
				if s := send(t, gw, fmt.Sprintf("/p%d/x", i), h("Authorization", "Bearer "+f.Users.Alice.Signed)); s.status != 403 {
					t.Errorf("%s: a session got %d", raw, s.status)
				}
			}
			if outcomes[true] != 3 || outcomes[false] != len(requirements)-3 {
				t.Errorf("Better-Auth granted %d requirements and refused %d; the table expects 3 and %d", outcomes[true], outcomes[false], len(requirements)-3)
			}
			// The key of another route passes none of them, but is known.
			if r := send(t, gw, "/p0/x", h("X-Api-Key", f.Keys.Valid.Key)); r.status != 403 || r.body.Code != "INSUFFICIENT_PERMISSIONS" {
				t.Errorf("a key without permissions: %d %s", r.status, r.raw)
			}
		})
	}
}

// Address rules through the real Caddy: the client address is Caddy's
// client_ip, so X-Forwarded-For counts only from a trusted proxy; a refused
// client never reaches the upstream, whatever its credential.
func TestAddressRules(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{})
	up := newUpstream(t)
	body := fmt.Sprintf(`
	route /internal/* {
		better_auth {
			database {env.DATABASE_URL}
			allow_ip 10.0.0.0/8
		}
		reverse_proxy %[1]s
	}
	route /public/* {
		better_auth {
			database {env.DATABASE_URL}
			deny_ip 127.0.0.1 10.66.0.0/16
		}
		reverse_proxy %[1]s
	}`, up.addr())
	env := "DATABASE_URL=" + f.DatabaseURL
	behindProxy := testenv.StartCaddy(t, "servers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}", body, env)
	direct := testenv.StartCaddy(t, "", body, env)
	key := f.Keys.Valid.Key
	for _, tc := range []struct {
		name   string
		gw     *testenv.Caddy
		path   string
		xff    string
		status int
	}{
		{"a client the trusted proxy names, inside the prefix", behindProxy, "/internal/x", "10.1.2.3", 200},
		{"the proxy itself, outside it", behindProxy, "/internal/x", "", 403},
		{"a client the trusted proxy names, outside it", behindProxy, "/internal/x", "192.168.1.1", 403},
		{"X-Forwarded-For from an untrusted peer is ignored", direct, "/internal/x", "10.1.2.3", 403},
		{"a denied client named by the trusted proxy", behindProxy, "/public/x", "10.66.1.1", 403},
		{"another client named by it", behindProxy, "/public/x", "10.1.2.3", 200},
		{"a denied peer claiming another address", direct, "/public/x", "10.1.2.3", 403},
	} {
		hdr := h("X-Api-Key", key)
		if tc.xff != "" {
			hdr.Set("X-Forwarded-For", tc.xff)
		}
		r := send(t, tc.gw, tc.path, hdr)
		if r.status != tc.status || (tc.status == 403 && r.body.Code != "IP_NOT_ALLOWED") {
			t.Errorf("%s: %d %s, want %d", tc.name, r.status, r.raw, tc.status)
		}
		if reached := up.headers(r.id) != nil; reached != (tc.status == 200) {
			t.Errorf("%s: reached the upstream: %v", tc.name, reached)
		}
	}
}

// The brute-force shield through the real Caddy, behind a trusted proxy
// that names the clients: a client trying 10 000 distinct unknown keys gets
// exactly the configured number of lookups (401) and 429s without any
// after that, even for a valid key, while another client's valid key
// keeps working.
func TestBruteForceShield(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{})
	up := newUpstream(t)
	gw := testenv.StartCaddy(t, "servers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}", fmt.Sprintf(`
	better_auth {
		database {env.DATABASE_URL}
		brute_force {
			failures 20
			window 1h
		}
	}
	reverse_proxy %s`, up.addr()), "DATABASE_URL="+f.DatabaseURL)
	from := func(client string, kv ...string) map[string][]string {
		hdr := h(kv...)
		hdr.Set("X-Forwarded-For", client)
		return hdr
	}
	const guesser, user = "203.0.113.5", "203.0.113.6"
	counts := map[int]int{}
	for i := range 10000 {
		r := send(t, gw, "/", from(guesser, "X-Api-Key", fmt.Sprintf("ba_guess_%d_%s", i, strings.ToLower(rand.Text()))))
		counts[r.status]++
		if r.status == 429 && (r.body.Code != "TOO_MANY_FAILURES" || r.header.Get("Retry-After") == "") {
			t.Fatalf("429 %v %s", r.header, r.raw)
		}
		if i%2000 == 0 {
			if r := send(t, gw, "/", from(user, "X-Api-Key", f.Keys.Valid.Key)); r.status != 200 {
				t.Fatalf("another client's valid key during the guessing: %d %s", r.status, r.raw)
			}
		}
	}
	if counts[401] != 20 || counts[429] != 9980 {
		t.Fatalf("answers to the guesser: %v; want 20 lookups (401) and 9980 refusals (429)", counts)
	}
	if r := send(t, gw, "/", from(guesser, "X-Api-Key", f.Keys.Valid.Key)); r.status != 429 {
		t.Fatalf("the guesser's valid key: %d, want 429", r.status)
	}
}
