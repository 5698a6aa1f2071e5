package integration

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// exampleForwardAuthCaddyfile returns examples/forward-auth.Caddyfile with
// its three addresses replaced: the site, the gateway's HTTP mode and the
// MCP server.
func exampleForwardAuthCaddyfile(t *testing.T, site, gateway, mcp string) string {
	return exampleFile(t, "forward-auth.Caddyfile", [][2]string{
		{"mcp.example.com", site},
		{"127.0.0.1:9192", gateway},
		{"127.0.0.1:9000", mcp},
	})
}

// The shipped Caddy forward_auth example, run by the built Caddy between a
// client and the recording upstream, with the gateway's HTTP mode (the
// Caddy app, in the same process) as its auth service: the upstream gets
// the gateway's identity and never the client's forged X-Auth-* headers or
// its credential.
func TestForwardAuthCaddyExample(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{})
	u, k := f.Users, f.Keys
	up := newUpstream(t)
	gwAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	gw := testenv.StartCaddyfile(t, testenv.GlobalOptions(fmt.Sprintf(`better_auth {
		database {env.DATABASE_URL}
		secret {env.BETTER_AUTH_SECRET}
		http %s
	}`, gwAddr))+exampleForwardAuthCaddyfile(t, "http://"+addr, gwAddr, up.addr()),
		"DATABASE_URL="+f.DatabaseURL, "BETTER_AUTH_SECRET="+testenv.Secret)
	gw.WaitForLog(t, "serving ext_authz HTTP", 10*time.Second)
	enc := func(s string) string { return strings.ReplaceAll(url.QueryEscape(s), "+", "%20") }

	check := proxyCheck{up: up, gateway: gwAddr, via: "Caddy forward_auth"}
	apiKey, _ := identityWants(f)

	forged := []string{
		"X-Auth-User-Id: forged",
		"X-Auth-User-Email: evil@x",
		"X-Auth-User-Name: forged",
		"X-Auth-User-Role: admin",
		"X-Auth-Method: session",
		"X-Auth-Key-Id: forged",
		"X-Auth-Session-Id: forged",
		"x-auth-key-id: forged",
		"X-AUTH-USER-ROLE: admin",
		"x_auth_user_role: admin",
		"X_AUTH_USER_ID: forged",
		"X-Auth_User_Id: forged",
		"x_auth-user-email: evil@x",
		"X-Auth-Other: forged",
	}
	t.Run("forged identity headers and session cookies beside an API key", func(t *testing.T) {
		want := apiKey(k.Valid.ID)
		want["Cookie"] = "theme=dark"
		got := check.through(t, addr, want, append(slices.Clone(forged),
			"X-Api-Key: "+k.Valid.Key,
			"Cookie: theme=dark; better-auth.session_token="+enc(u.Alice.Signed)+"; better-auth.session_data=e30",
		)...)
		if n := got.Get("X-Auth-User-Name"); n != u.Alice.Name {
			t.Errorf("X-Auth-User-Name = %q, want %q", n, u.Alice.Name)
		}
	})
	// Caddy drops every header with "_" in its name before any handler
	// runs, unless the server allows it with expected_underscore_headers
	// (older Caddy versions did not drop them at all): the example removes
	// such spellings of X-Auth-* itself, so that they never reach the
	// upstream (whose framework might read x_auth_user_role as
	// X-Auth-User-Role) even then.
	t.Run("underscore spellings, where the server lets them in", func(t *testing.T) {
		allowAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		testenv.StartCaddyfile(t, testenv.GlobalOptions(`servers {
		expected_underscore_headers x_auth_* x-auth_* x_auth-*
	}`)+exampleForwardAuthCaddyfile(t, "http://"+allowAddr, gwAddr, up.addr()))
		check.through(t, allowAddr, apiKey(k.Valid.ID), append(slices.Clone(forged), "X-Api-Key: "+k.Valid.Key)...)
	})
	t.Run("forged session id beside an API key", func(t *testing.T) {
		// The gateway sends no X-Auth-Session-Id for a key: the client's
		// must not be left standing in its place.
		check.through(t, addr, apiKey(k.Valid.ID), "X-Api-Key: "+k.Valid.Key, "x-auth-session-id: forged")
	})
	check.everyCredential(t, addr, f)
	t.Run("Connection cannot drop identity headers", func(t *testing.T) {
		want := withValue(apiKey(k.Valid.ID), "Cookie", "theme=dark")
		want["X-Auth-User-Name"] = u.Alice.Name
		want["X-Drop-Me"] = "" // a token naming another header still works
		check.through(t, addr, want,
			"X-Api-Key: "+k.Valid.Key,
			"Connection: X-Auth-User-Id, X-Auth-User-Role",
			"Connection: keep-alive, x-auth-user-email,X-AUTH-USER-NAME , x-auth-method, X-Drop-Me",
			"Connection: x_auth_user_id, X-Auth-Key-Id",
			"X-Drop-Me: 1",
			"Cookie: theme=dark",
		)
	})

	check.denials(t, addr, f, []string{"X-Auth-User-Id: " + u.Alice.ID, "X-Auth-Method: api_key"})

	t.Run("server-sent events stream through", func(t *testing.T) { check.streamsThrough(t, addr, k.Valid.Key) })

	// A second Caddy with the example twice: once with no gateway behind
	// it, once with no MCP server. Both are 502, and Caddy's log, read in
	// full once it has stopped, holds no API key.
	t.Run("unreachable gateway or MCP server: 502, no key logged", func(t *testing.T) {
		noGateway := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		noMCP := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		dead := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		c := testenv.StartCaddyfile(t, testenv.GlobalOptions("")+
			exampleForwardAuthCaddyfile(t, "http://"+noGateway, dead, up.addr())+
			exampleForwardAuthCaddyfile(t, "http://"+noMCP, gwAddr, dead))
		for _, a := range []string{noGateway, noMCP} {
			r := rawGet(t, a, "/", "X-Api-Key: "+k.Valid.Key)
			if r.status != 502 {
				t.Errorf("%s: %d %q, want 502", a, r.status, r.body)
			}
			if up.headers(r.id) != nil {
				t.Errorf("%s: the request reached the upstream", a)
			}
		}
		c.Stop(t) // all it logged is read once it has exited
		if logs := c.Logs(); strings.Contains(logs, k.Valid.Key) {
			t.Errorf("Caddy logged the API key:\n%s", logs)
		}
	})
}
