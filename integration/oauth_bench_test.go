package integration

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// BenchmarkCaddyOAuth measures an MCP client's request through a whole
// Caddy server (in process, loopback upstream) with a token real
// @better-auth/oauth-provider issued: an opaque token and a JWT served
// from the cache, and a JWT with the cache off, which is verified
// (EdDSA) and whose client, session and resource rows are read on every
// request: the cost of a miss.
//
//	go test -run '^$' -bench CaddyOAuth -count 5 ./integration/
func BenchmarkCaddyOAuth(b *testing.B) {
	ba := startOAuthSeed(b, oauthSeedOptions{})
	f := ba.Setup(b)
	opaque, _ := ba.Do(b, "token-cc", f.Client.args("scope", "mcp:read"))["access_token"].(string)
	jwt, _ := ba.Do(b, "token-cc", f.Client.args("scope", "mcp:read", "resource", f.Resource))["access_token"].(string)
	if opaque == "" || strings.Count(jwt, ".") != 2 {
		b.Fatalf("tokens: %q %q", opaque, jwt)
	}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer upstream.Close()
	up := strings.TrimPrefix(upstream.URL, "http://")
	b.Setenv("DATABASE_URL", ba.DatabaseURL)
	b.Setenv("BETTER_AUTH_SECRET", testenv.Secret)
	site := func(cache string) string {
		return fmt.Sprintf(`
http://127.0.0.1:%d {
	better_auth {
		database {env.DATABASE_URL}
		secret {env.BETTER_AUTH_SECRET}
		no_revocation_listener
		oauth {
			resource %s
			issuer %s
			allow_unbound_tokens
		}
		cache {
			ttl %s
		}
	}
	reverse_proxy %s
}`, testenv.FreePort(b), f.Resource, f.Issuer, cache, up)
	}
	caddyfile := `{
	admin off
	auto_https off
	persist_config off
	default_bind 127.0.0.1
	log default {
		level ERROR
	}
}` + site("1h") + site("off")
	var cached, uncached *caddyhttp.Server
	for srv, raw := range loadCaddy(b, caddyfile) {
		if strings.Contains(raw, `"ttl":-1`) {
			uncached = srv
		} else {
			cached = srv
		}
	}
	if cached == nil || uncached == nil {
		b.Fatal("servers not found")
	}
	for _, bc := range []struct {
		name  string
		srv   *caddyhttp.Server
		token string
	}{{"token=opaque/cache=on", cached, opaque}, {"token=jwt/cache=on", cached, jwt}, {"token=jwt/cache=off", uncached, jwt}} {
		b.Run(bc.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1/mcp", nil)
			req.Header.Set("Authorization", "Bearer "+bc.token)
			check := httptest.NewRecorder()
			bc.srv.ServeHTTP(check, req.Clone(req.Context()))
			if check.Code != 200 || check.Body.String() != "ok" {
				b.Fatalf("%s: %d %s", bc.name, check.Code, check.Body)
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					w := httptest.NewRecorder()
					bc.srv.ServeHTTP(w, req.Clone(req.Context()))
				}
			})
		})
	}
}
