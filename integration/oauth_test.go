package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// The MCP resource-server contract, first part, through the real Caddy: a
// client without a token gets a challenge naming the protected resource's
// metadata, which the handler serves itself (no credential needed, for
// browsers too), and which names Better-Auth as the authorization server.
// API-key clients are answered as before.
func TestProtectedResourceMetadata(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{})
	up := newUpstream(t)
	gw := startGateway(t, f.DatabaseURL, up, `oauth {
			resource http://localhost:8080/mcp
			issuer http://localhost:3000/api/auth
			scopes openid tools:read offline_access
		}`)
	r := send(t, gw, "/mcp", nil)
	want := `Bearer realm="better-auth", resource_metadata="http://localhost:8080/.well-known/oauth-protected-resource/mcp", scope="openid tools:read"`
	if r.status != 401 || r.header.Get("WWW-Authenticate") != want {
		t.Fatalf("no token: %d %q", r.status, r.header.Get("WWW-Authenticate"))
	}
	for _, path := range []string{"/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"} {
		resp, err := http.Get(gw.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var m struct {
			Resource             string   `json:"resource"`
			AuthorizationServers []string `json:"authorization_servers"`
			Scopes               []string `json:"scopes_supported"`
		}
		if resp.StatusCode != 200 || json.Unmarshal(body, &m) != nil || m.Resource != "http://localhost:8080/mcp" ||
			fmt.Sprint(m.AuthorizationServers) != "[http://localhost:3000/api/auth]" || fmt.Sprint(m.Scopes) != "[openid tools:read]" ||
			resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Fatalf("%s: %d %v %s", path, resp.StatusCode, resp.Header, body)
		}
	}
	if up.headers(send(t, gw, "/.well-known/oauth-protected-resource/mcp", nil).id) != nil {
		t.Error("the metadata request reached the upstream")
	}
	if r := send(t, gw, "/mcp", h("X-Api-Key", f.Keys.Valid.Key)); r.status != 200 {
		t.Errorf("an API key: %d %s", r.status, r.raw)
	}
	r = send(t, gw, "/mcp", h("X-Api-Key", "ba_unknown"))
	if r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), `resource_metadata="http://localhost:8080/`) ||
		!strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("a bad key: %d %q", r.status, r.header.Get("WWW-Authenticate"))
	}
}
