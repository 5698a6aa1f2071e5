package integration

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// forge re-signs a real token's claims under another header: HMAC with
// key when alg is HS256 (Better-Auth's secret, or the public key's text),
// nothing for "none".
func forge(t *testing.T, real string, header map[string]any, key []byte) string {
	t.Helper()
	parts := strings.Split(real, ".")
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	signing := base64.RawURLEncoding.EncodeToString(h) + "." + parts[1]
	if header["alg"] == "none" {
		return signing + "."
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// JWT access tokens issued by real @better-auth/oauth-provider (it issues
// them when the client names the resource), verified offline with the keys
// of Better-Auth's jwks table, then held to what Better-Auth's own
// introspection checks: the client enabled, the session alive, the
// resource registered; every change pushed by the triggers although the
// cache keeps records for an hour. Forgeries and Better-Auth's session
// JWTs, signed with the same keys, are refused. On MySQL (MariaDB) too,
// whose gateway has no triggers and is asked after each change with
// tokens it has not seen.
func TestJWTAccessTokens(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"postgres", "mysql"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			testJWTAccessTokens(t, backend)
		})
	}
}

func testJWTAccessTokens(t *testing.T, backend string) {
	ba := startOAuthSeed(t, oauthSeedOptions{MySQL: backend == "mysql"})
	f := ba.Setup(t)
	if f.Database != backend {
		t.Fatalf("the app wrote to %q", f.Database)
	}
	pushed := backend == "postgres"
	if pushed {
		if out, errOut, code := runCLI(t, "", []string{"DATABASE_URL=" + ba.DatabaseURL}, "install-triggers"); code != 0 {
			t.Fatalf("install-triggers: exit %d\n%s%s", code, out, errOut)
		}
	}
	up := newUpstream(t)
	block := func(resource, extra string) string {
		return fmt.Sprintf(`better_auth {
			database {env.DATABASE_URL}
			secret {env.BETTER_AUTH_SECRET}
			cache {
				ttl 1h
			}
			oauth {
				resource %s
				issuer %s
			}
			%s
		}
		reverse_proxy %s`, resource, f.Issuer, extra, up.addr())
	}
	gw := testenv.StartCaddy(t, "", fmt.Sprintf(`
	handle /mcp* {
		%s
	}
	handle /admin* {
		%s
	}
	handle /other* {
		%s
	}`, block(f.Resource, ""), block(f.Resource, "require_scope mcp:admin"), block("http://127.0.0.1:8080/other", "")),
		"DATABASE_URL="+ba.DatabaseURL, "BETTER_AUTH_SECRET="+testenv.Secret)
	bearer := func(tok string) http.Header { return h("Authorization", "Bearer "+tok) }
	jwt := func(op string, kv ...any) string {
		t.Helper()
		r := ba.Do(t, op, f.Client.args(append(kv, "resource", f.Resource)...))
		tok, _ := r["access_token"].(string)
		if strings.Count(tok, ".") != 2 {
			t.Fatalf("%s: no JWT: %v", op, r)
		}
		return tok
	}
	denied := func(t *testing.T, path, tok string, status int, code string) {
		t.Helper()
		r := send(t, gw, path, bearer(tok))
		if r.status != status || r.body.Code != code || up.headers(r.id) != nil {
			t.Fatalf("%s: got %d %s, want %d %s", path, r.status, r.raw, status, code)
		}
	}

	m2m := jwt("token-cc", "scope", "mcp:read")
	_, claims := jwtParts(t, m2m)
	r := send(t, gw, "/mcp", bearer(m2m))
	got := up.headers(r.id)
	if r.status != 200 || got.Get("X-Auth-Method") != "oauth" || got.Get("X-Auth-Client-Id") != f.Client.ID ||
		got.Get("X-Auth-Scopes") != "mcp:read" || got.Get("X-Auth-User-Id") != "" || got.Get("X-Auth-Token-Id") != claims["jti"] ||
		got.Get("Authorization") != "" {
		t.Fatalf("m2m JWT: %d %s, upstream got %v", r.status, r.raw, got)
	}
	// With openid, Better-Auth adds its userinfo endpoint to the audience.
	user := jwt("token-code", "scope", "openid mcp:read mcp:admin")
	if _, c := jwtParts(t, user); fmt.Sprint(c["aud"]) != fmt.Sprintf("[%s %s/oauth2/userinfo]", f.Resource, f.Issuer) {
		t.Fatalf("user JWT aud %v", c["aud"])
	}
	r = send(t, gw, "/admin", bearer(user))
	if got := up.headers(r.id); r.status != 200 || got.Get("X-Auth-User-Id") != f.Users.Alice.ID || got.Get("X-Auth-Client-Id") != f.Client.ID {
		t.Fatalf("user JWT: %d %s, upstream got %v", r.status, r.raw, got)
	}

	t.Run("issued for another resource", func(t *testing.T) { denied(t, "/other", m2m, 401, "INVALID_AUDIENCE") })
	t.Run("short of a scope", func(t *testing.T) {
		denied(t, "/admin", m2m, 403, "INSUFFICIENT_SCOPE")
	})
	t.Run("forgeries", func(t *testing.T) {
		header, _ := jwtParts(t, m2m)
		kid := header["kid"]
		sessionJWT, _ := ba.Do(t, "session-jwt", nil)["token"].(string)
		rows, _ := ba.Do(t, "jwks", nil)["rows"].([]any)
		pub, _ := json.Marshal(rows[0].(map[string]any)["publicKey"])
		for name, tok := range map[string]string{
			"Better-Auth's session JWT (same keys, no azp, no at+jwt)": sessionJWT,
			"HS256 with Better-Auth's secret":                          forge(t, m2m, map[string]any{"alg": "HS256", "typ": "at+jwt", "kid": kid}, []byte(testenv.Secret)),
			"HS256 with the public key":                                forge(t, m2m, map[string]any{"alg": "HS256", "typ": "at+jwt", "kid": kid}, pub),
			"alg none":                                                 forge(t, m2m, map[string]any{"alg": "none", "typ": "at+jwt", "kid": kid}, nil),
			"a tampered payload": strings.Split(m2m, ".")[0] + "." + base64.RawURLEncoding.EncodeToString(
				[]byte(strings.Replace(string(must(base64.RawURLEncoding.DecodeString(strings.Split(m2m, ".")[1]))), "mcp:read", "mcp:admin", 1))) +
				"." + strings.Split(m2m, ".")[2],
		} {
			t.Run(name, func(t *testing.T) { denied(t, "/mcp", tok, 401, "INVALID_TOKEN") })
		}
	})

	// Changes made through Better-Auth reach a cached JWT at once (with
	// the triggers), or one the gateway has not seen (without).
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
	// fresh returns tok where the triggers push changes, and else a new
	// token of the same kind, issued now, before the change.
	fresh := func(tok string, issue func() string) string {
		if pushed {
			return tok
		}
		return issue()
	}
	t.Run("the user signed out", func(t *testing.T) {
		issue := func() string { return jwt("token-code", "scope", "mcp:read", "session", f.Users.Bob.Signed) }
		tok := issue()
		within(t, tok, 200, "")
		tok = fresh(tok, issue)
		ba.Do(t, "sign-out", map[string]any{"session": f.Users.Bob.Signed})
		within(t, tok, 401, "TOKEN_REVOKED")
	})
	t.Run("the client was disabled, then enabled", func(t *testing.T) {
		issue := func() string { return jwt("token-cc", "scope", "mcp:read mcp:write") }
		within(t, m2m, 200, "")
		disabled, enabled := fresh(m2m, issue), fresh(m2m, issue)
		ba.Do(t, "disable-client", map[string]any{"client_id": f.Client.ID})
		within(t, disabled, 401, "CLIENT_DISABLED")
		ba.Do(t, "enable-client", map[string]any{"client_id": f.Client.ID})
		within(t, enabled, 200, "")
	})
	t.Run("the resource was deleted", func(t *testing.T) {
		tok := fresh(m2m, func() string { return jwt("token-cc", "scope", "mcp:write") })
		ba.Do(t, "delete-resource", map[string]any{"identifier": f.Resource})
		within(t, tok, 401, "INVALID_TOKEN")
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// OAuth tokens get the same answers from every front end: the Caddy
// handler, the standalone ext_authz gRPC service and its HTTP mode, from
// one block of options, challenges included (the insufficient_scope
// step-up travels as a denied response header to Envoy).
func TestOAuthFrontEndsAgree(t *testing.T) {
	t.Parallel()
	ba := startOAuthSeed(t, oauthSeedOptions{})
	f := ba.Setup(t)
	options := map[string]any{
		"database":      "{env.DATABASE_URL}",
		"secret":        "{env.BETTER_AUTH_SECRET}",
		"oauth":         map[string]any{"resource": f.Resource, "issuers": []string{f.Issuer}, "scopes": []string{"mcp:read", "mcp:admin"}},
		"require_scope": []string{"mcp:read"},
	}
	env := []string{"DATABASE_URL=" + ba.DatabaseURL, "BETTER_AUTH_SECRET=" + testenv.Secret}
	gw, _, up, grpcAddr, httpAddr := startBothGateways(t, options, env)

	jwt := func(scope string) string {
		r := ba.Do(t, "token-cc", f.Client.args("scope", scope, "resource", f.Resource))
		tok, _ := r["access_token"].(string)
		return tok
	}
	opaque, _ := ba.Do(t, "token-cc", f.Client.args("scope", "mcp:read"))["access_token"].(string)
	sessionJWT, _ := ba.Do(t, "session-jwt", nil)["token"].(string)
	metadata := `resource_metadata="http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp"`
	checkFronts(t, map[string]frontEnd{"caddy": proxiedFront(gw, up), "grpc": grpcFront(t, grpcAddr), "http": httpFront("http://" + httpAddr)},
		[]frontCase{
			{"a JWT with the scope", h("Authorization", "Bearer "+jwt("mcp:read"), "X-Auth-Client-Id", "forged"), verdict{status: 200,
				set:     map[string]string{"x-auth-method": "oauth", "x-auth-client-id": f.Client.ID, "x-auth-scopes": "mcp:read"},
				removed: []string{"authorization"}}},
			{"a JWT short of it", h("Authorization", "Bearer "+jwt("mcp:admin")), verdict{status: 403, code: "INSUFFICIENT_SCOPE",
				challenge: `Bearer realm="better-auth", error="insufficient_scope", scope="mcp:admin mcp:read", ` + metadata}},
			{"an opaque token has no audience", h("Authorization", "Bearer "+opaque), verdict{status: 401, code: "INVALID_AUDIENCE",
				challenge: `Bearer realm="better-auth", ` + metadata + `, scope="mcp:read mcp:admin", error="invalid_token"`}},
			{"a session JWT", h("Authorization", "Bearer "+sessionJWT), verdict{status: 401, code: "INVALID_TOKEN"}},
			{"no token", nil, verdict{status: 401, code: "MISSING_CREDENTIAL",
				challenge: `Bearer realm="better-auth", ` + metadata + `, scope="mcp:read mcp:admin"`}},
		})
}
