package integration

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// oauthGateway starts Caddy in front of up with three routes on one
// Better-Auth app: /mcp accepts its OAuth tokens (unbound ones too: the
// provider's opaque tokens carry no audience), /admin needs mcp:admin, and
// /bound insists on the audience, as MCP asks.
func oauthGateway(t *testing.T, db string, f *oauthFixture, up *upstream) *testenv.Caddy {
	t.Helper()
	block := func(unbound, extra string) string {
		return fmt.Sprintf(`better_auth {
			database {env.DATABASE_URL}
			secret {env.BETTER_AUTH_SECRET}
			cache {
				ttl 1h
			}
			oauth {
				resource %s
				issuer %s
				scopes mcp:read mcp:write mcp:admin
				%s
			}
			%s
		}
		reverse_proxy %s`, f.Resource, f.Issuer, unbound, extra, up.addr())
	}
	return testenv.StartCaddy(t, "", fmt.Sprintf(`
	handle /mcp* {
		%s
	}
	handle /admin* {
		%s
	}
	handle /bound* {
		%s
	}`, block("allow_unbound_tokens", ""), block("allow_unbound_tokens", "require_scope mcp:admin"), block("", "")),
		"DATABASE_URL="+db, "BETTER_AUTH_SECRET="+testenv.Secret)
}

// Access tokens issued by real @better-auth/oauth-provider, through the
// real Caddy: accepted with the identity they carry, refused exactly when
// Better-Auth's own validation refuses them (revoked, expired, signed out,
// client disabled), at once with the revocation triggers although the
// cache keeps records for an hour; scopes step up; the audience holds.
func TestOAuthAccessTokens(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"postgres", "sqlite", "mysql"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			ba := startOAuthSeed(t, oauthSeedOptions{SQLite: backend == "sqlite", MySQL: backend == "mysql"})
			f := ba.Setup(t)
			if f.Database != backend {
				t.Fatalf("the app wrote to %q", f.Database)
			}
			// Only PostgreSQL has the revocation triggers.
			pushed := backend == "postgres"
			if pushed {
				if out, errOut, code := runCLI(t, "", []string{"DATABASE_URL=" + ba.DatabaseURL}, "install-triggers"); code != 0 {
					t.Fatalf("install-triggers: exit %d\n%s%s", code, out, errOut)
				}
			}
			up := newUpstream(t)
			gw := oauthGateway(t, ba.DatabaseURL, f, up)
			bearer := func(tok string) http.Header { return h("Authorization", "Bearer "+tok) }
			token := func(op string, kv ...any) string {
				t.Helper()
				r := ba.Do(t, op, f.Client.args(kv...))
				tok, _ := r["access_token"].(string)
				if tok == "" || strings.Count(tok, ".") != 0 {
					t.Fatalf("%s: no opaque token: %v", op, r)
				}
				return tok
			}
			wantDenied := func(t *testing.T, r result, status int, code string) {
				t.Helper()
				if r.status != status || r.body.Code != code {
					t.Fatalf("got %d %s %s, want %d %s", r.status, r.body.Code, r.raw, status, code)
				}
				if up.headers(r.id) != nil {
					t.Fatal("a denied request reached the upstream")
				}
			}

			// A machine-to-machine token: the client, its scopes, no user.
			m2m := token("token-cc", "scope", "mcp:read mcp:write")
			r := send(t, gw, "/mcp", http.Header{"Authorization": {"Bearer " + m2m}, "X-Auth-Client-Id": {"forged"},
				"X-Auth-User-Id": {"forged"}})
			got := up.headers(r.id)
			if r.status != 200 || got.Get("X-Auth-Method") != "oauth" || got.Get("X-Auth-Client-Id") != f.Client.ID ||
				got.Get("X-Auth-Scopes") != "mcp:read mcp:write" || got.Get("X-Auth-User-Id") != "" ||
				got.Get("X-Auth-Token-Id") == "" || got.Get("Authorization") != "" {
				t.Fatalf("m2m token: %d %s, upstream got %v", r.status, r.raw, got)
			}

			// A user's token from the authorization-code flow: the user too.
			user := token("token-code", "scope", "openid mcp:read mcp:admin")
			r = send(t, gw, "/admin/tools", bearer(user))
			got = up.headers(r.id)
			if r.status != 200 || got.Get("X-Auth-User-Id") != f.Users.Alice.ID || got.Get("X-Auth-User-Email") != f.Users.Alice.Email ||
				got.Get("X-Auth-Client-Id") != f.Client.ID || got.Get("X-Auth-Scopes") != "openid mcp:read mcp:admin" {
				t.Fatalf("user token: %d %s, upstream got %v", r.status, r.raw, got)
			}

			t.Run("a token short of a scope is told which to ask for", func(t *testing.T) {
				r := send(t, gw, "/admin/tools", bearer(m2m))
				wantDenied(t, r, 403, "INSUFFICIENT_SCOPE")
				challenge := r.header.Get("WWW-Authenticate")
				if !strings.Contains(challenge, `error="insufficient_scope"`) || !strings.Contains(challenge, `scope="mcp:read mcp:write mcp:admin"`) ||
					!strings.Contains(challenge, `resource_metadata="http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp"`) {
					t.Fatalf("challenge %q", challenge)
				}
			})
			t.Run("unknown tokens", func(t *testing.T) {
				r := send(t, gw, "/mcp", bearer("AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEf"))
				wantDenied(t, r, 401, "INVALID_TOKEN")
				if c := r.header.Get("WWW-Authenticate"); !strings.Contains(c, `error="invalid_token"`) || !strings.Contains(c, "resource_metadata=") {
					t.Fatalf("challenge %q", c)
				}
			})
			t.Run("an opaque token has no audience: refused where it must have one", func(t *testing.T) {
				wantDenied(t, send(t, gw, "/bound", bearer(m2m)), 401, "INVALID_AUDIENCE")
			})

			// Changes made through Better-Auth. On PostgreSQL the triggers
			// push them; SQLite and MySQL have none, and their gateway is
			// asked after the change with a cold cache (a token never seen
			// before).
			within := func(t *testing.T, tok string, status int, code string) {
				t.Helper()
				deadline := time.Now().Add(2 * time.Second)
				for {
					r := send(t, gw, "/mcp", bearer(tok))
					if r.status == status && r.body.Code == code {
						return
					}
					if time.Now().After(deadline) {
						t.Fatalf("got %d %s, want %d %s", r.status, r.body.Code, status, code)
					}
				}
			}
			warm := func(t *testing.T, tok string) {
				t.Helper()
				if r := send(t, gw, "/mcp", bearer(tok)); r.status != 200 {
					t.Fatalf("before the change: %d %s", r.status, r.raw)
				}
			}
			cases := []struct {
				name   string
				issue  func() string
				change func(tok string)
				status int
				code   string
			}{
				{"revoked (the provider deletes the row)", func() string { return token("token-cc", "scope", "mcp:read") },
					func(tok string) { ba.Do(t, "revoke", f.Client.args("token", tok)) }, 401, "INVALID_TOKEN"},
				{"expired", func() string { return token("token-cc", "scope", "mcp:read") },
					func(tok string) { ba.Do(t, "age-token", map[string]any{"token": tok}) }, 401, "TOKEN_EXPIRED"},
				{"the user signed out", func() string {
					return token("token-code", "scope", "mcp:read", "session", f.Users.Bob.Signed)
				}, func(string) { ba.Do(t, "sign-out", map[string]any{"session": f.Users.Bob.Signed}) }, 401, "TOKEN_REVOKED"},
				{"the client was disabled", func() string { return token("token-cc", "scope", "mcp:read") },
					func(string) { ba.Do(t, "disable-client", map[string]any{"client_id": f.Client.ID}) }, 401, "CLIENT_DISABLED"},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					tok := c.issue()
					if pushed {
						warm(t, tok)
					}
					c.change(tok)
					within(t, tok, c.status, c.code)
				})
			}

			t.Run("doctor checks the resource is registered", func(t *testing.T) {
				doctor := func() string {
					out, errOut, code := runCLI(t, "", []string{"DATABASE_URL=" + ba.DatabaseURL}, "doctor", "--oauth-resource", f.Resource)
					if code != 0 {
						t.Fatalf("doctor: exit %d\n%s%s", code, out, errOut)
					}
					return out
				}
				if out := doctor(); !strings.Contains(out, "oauth: resource "+f.Resource+" is registered") {
					t.Fatalf("registered:\n%s", out)
				}
				ba.Do(t, "delete-resource", map[string]any{"identifier": f.Resource})
				if out := doctor(); !strings.Contains(out, "problem: no oauthResource row for "+f.Resource) {
					t.Fatalf("deleted:\n%s", out)
				}
			})
		})
	}
}

// The legacy mcp() plugin of better-auth ≤1.5 stored tokens in plain text
// and never checked their expiry; the gateway reads them, and does.
func TestLegacyOAuthTokens(t *testing.T) {
	t.Parallel()
	ba := startOAuthSeed(t, oauthSeedOptions{Legacy: true})
	fx := ba.Do(t, "setup", nil)
	var c oauthClient
	remarshal(t, fx["client"], &c)
	alice := fx["users"].(map[string]any)["alice"].(map[string]any)
	up := newUpstream(t)
	gw := startGateway(t, ba.DatabaseURL, up, `oauth {
			resource http://127.0.0.1:8080/mcp
			issuer http://localhost:3000/api/auth
			allow_unbound_tokens
		}`)
	tok, _ := ba.Do(t, "token-code", c.args("scope", "openid"))["access_token"].(string)
	r := send(t, gw, "/mcp", h("Authorization", "Bearer "+tok))
	got := up.headers(r.id)
	if r.status != 200 || got.Get("X-Auth-User-Id") != alice["id"] || got.Get("X-Auth-Client-Id") != c.ID || got.Get("X-Auth-Scopes") != "openid" {
		t.Fatalf("legacy token: %d %s, upstream got %v", r.status, r.raw, got)
	}
	// Expired: the plugin would still accept it; the gateway does not. A
	// fresh token, so that no cache holds it.
	old, _ := ba.Do(t, "token-code", c.args("scope", "openid"))["access_token"].(string)
	ba.Do(t, "age-token", map[string]any{"token": old})
	if s := ba.Do(t, "mcp-session", map[string]any{"token": old})["session"]; s == nil {
		t.Fatal("the legacy plugin refused the expired token itself; this test no longer shows the difference")
	}
	if r := send(t, gw, "/mcp", h("Authorization", "Bearer "+old)); r.status != 401 || r.body.Code != "TOKEN_EXPIRED" {
		t.Fatalf("expired legacy token: %d %s", r.status, r.raw)
	}
	other, _ := ba.Do(t, "token-code", c.args("scope", "openid"))["access_token"].(string)
	ba.Do(t, "disable-client", map[string]any{"client_id": c.ID})
	if r := send(t, gw, "/mcp", h("Authorization", "Bearer "+other)); r.status != 401 || r.body.Code != "CLIENT_DISABLED" {
		t.Fatalf("disabled client's legacy token: %d %s", r.status, r.raw)
	}
}
