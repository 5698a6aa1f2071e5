package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/demo"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// mcpCall is one request the MCP server behind the gateway received.
type mcpCall struct {
	Path, Method string // the URL path and the JSON-RPC method ("" for a GET)
	Tool         string // the tool of a tools/call
	Header       http.Header
}

// mcpRecorder is the demo MCP server (the official Go SDK's), recording
// what reaches it.
type mcpRecorder struct {
	mu    sync.Mutex
	calls []mcpCall
}

func (m *mcpRecorder) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := mcpCall{Path: r.URL.Path, Header: r.Header.Clone()}
		if r.Method == http.MethodPost {
			b, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(b))
			var msg struct {
				Method string `json:"method"`
				Params struct {
					Name string `json:"name"`
				} `json:"params"`
			}
			json.Unmarshal(b, &msg)
			c.Method, c.Tool = msg.Method, msg.Params.Name
		}
		m.mu.Lock()
		m.calls = append(m.calls, c)
		m.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

// toolCalls returns the tools/call requests of a tool that reached the
// server on path.
func (m *mcpRecorder) toolCalls(path, tool string) []mcpCall {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []mcpCall
	for _, c := range m.calls {
		if c.Path == path && c.Method == "tools/call" && c.Tool == tool {
			out = append(out, c)
		}
	}
	return out
}

// sdkStep is one JSON line mcp-client.mjs printed.
type sdkStep map[string]any

func (s sdkStep) str(k string) string  { v, _ := s[k].(string); return v }
func (s sdkStep) num(k string) float64 { v, _ := s[k].(float64); return v }
func (s sdkStep) obj(k string) sdkStep {
	v, _ := s[k].(map[string]any)
	return v
}

// runMCPClient runs seed/mcp-client.mjs, the official MCP TypeScript SDK's
// client, until it ends, and returns the steps it printed.
func runMCPClient(t *testing.T, env ...string) (steps []sdkStep, ok bool, stderr string) {
	t.Helper()
	dir := filepath.Join(testenv.RepoRoot(), "integration", "seed")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@modelcontextprotocol", "sdk")); err != nil {
		if os.Getenv("BETTERAUTH_INTEGRATION") == "1" {
			t.Fatal("integration/seed/node_modules has no @modelcontextprotocol/sdk; run scripts/test.sh")
		}
		t.Skip("integration/seed/node_modules has no @modelcontextprotocol/sdk; run scripts/test.sh")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "mcp-client.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if line == "" {
			continue
		}
		var s sdkStep
		if json.Unmarshal([]byte(line), &s) != nil {
			t.Fatalf("mcp-client.mjs printed %q", line)
		}
		steps = append(steps, s)
	}
	return steps, err == nil, errOut.String()
}

// The official MCP TypeScript SDK's client, given nothing but the gateway's
// MCP URL, authorizes itself as Claude, VS Code or Cursor do, against real
// Better-Auth (@better-auth/oauth-provider) served over HTTP, and reaches
// the real MCP server (the demo's, official Go SDK) through the real Caddy:
// the 401's challenge names the metadata the gateway serves, which names
// Better-Auth, whose metadata leads to dynamic registration, the
// authorization code with PKCE and a JWT for the resource. Then a route
// needing mcp:admin answers 403 insufficient_scope, and the SDK asks the
// user again for the scope the challenge names (step-up), and passes. The
// SDK (1.32.2) asks for the challenge's scope alone, not added to those it
// held: the new token holds mcp:admin only, which the first route, needing
// no scope, still takes.
func TestMCPClientOAuthDiscovery(t *testing.T) {
	t.Parallel()
	asPort, gwPort := testenv.FreePort(t), testenv.FreePort(t)
	gwURL := fmt.Sprintf("http://127.0.0.1:%d", gwPort)
	resource := gwURL + "/mcp"
	ba := startOAuthSeed(t, oauthSeedOptions{BaseURL: fmt.Sprintf("http://127.0.0.1:%d", asPort), Resource: resource})
	f := ba.Setup(t)
	alice := f.Users.Alice
	// Alice's browser: signed in, and on the first consent page she grants
	// mcp:read and mcp:write only; later she accepts what is asked.
	srv := ba.Do(t, "serve", map[string]any{"session": alice.Signed, "grants": []string{"mcp:read mcp:write"}})
	if srv["issuerMatches"] != true || srv["issuer"] != f.Issuer || f.Resource != resource {
		t.Fatalf("serve: %v (setup %+v)", srv, f)
	}

	rec := &mcpRecorder{}
	mcpServer := httptest.NewServer(rec.wrap(demo.MCPHandler()))
	defer mcpServer.Close()
	block := func(extra string) string {
		return fmt.Sprintf(`better_auth {
			database {env.DATABASE_URL}
			secret {env.BETTER_AUTH_SECRET}
			oauth {
				resource %s
				issuer %s
				scopes mcp:read mcp:write mcp:admin
			}
			%s
		}
		reverse_proxy %s`, resource, f.Issuer, extra, strings.TrimPrefix(mcpServer.URL, "http://"))
	}
	testenv.StartCaddyfile(t, testenv.GlobalOptions("")+fmt.Sprintf(`%s {
	handle /mcp/admin* {
		%s
	}
	handle {
		%s
	}
}
`, gwURL, block("require_scope mcp:admin"), block("")), "DATABASE_URL="+ba.DatabaseURL, "BETTER_AUTH_SECRET="+testenv.Secret)

	// The client's redirect URI: nobody listens there, the headless browser
	// stops at it.
	redirectURI := fmt.Sprintf("http://127.0.0.1:%d/callback", testenv.FreePort(t))
	steps, ok, stderr := runMCPClient(t, "MCP_URL="+resource, "MCP_STEP_UP_URL="+resource+"/admin", "REDIRECT_URI="+redirectURI)
	for _, s := range steps {
		b, _ := json.Marshal(s)
		t.Logf("%s", b)
	}
	if !ok {
		var last sdkStep
		if len(steps) > 0 {
			last = steps[len(steps)-1]
		}
		t.Fatalf("mcp-client.mjs failed: %s: %s\n%s", last.str("name"), last.str("message"), stderr)
	}
	c := &stepCursor{t: t, steps: steps}
	metadataURL := gwURL + "/.well-known/oauth-protected-resource/mcp"
	asOrigin := fmt.Sprintf("http://127.0.0.1:%d", asPort)

	// 1. initialize without a token: 401, whose challenge names the
	// metadata's URL (RFC 9728: the well-known segment before the path).
	challenge := fmt.Sprintf(`Bearer realm="better-auth", resource_metadata="%s", scope="mcp:read mcp:write mcp:admin"`, metadataURL)
	if s := c.http("POST", resource); s.num("status") != 401 || s.str("www_authenticate") != challenge {
		t.Fatalf("initialize without a token: %v, want 401 %s", s, challenge)
	}
	// 2. The protected resource's metadata, from that URL, served by the
	// gateway itself: it names Better-Auth as the authorization server.
	prm := c.http("GET", metadataURL)
	if body := prm.obj("body"); prm.num("status") != 200 || body.str("resource") != resource ||
		fmt.Sprint(body["authorization_servers"]) != fmt.Sprintf("[%s]", f.Issuer) ||
		fmt.Sprint(body["scopes_supported"]) != "[mcp:read mcp:write mcp:admin]" {
		t.Fatalf("protected resource metadata: %v", prm)
	}
	// 3. Better-Auth's authorization server metadata, found where RFC 8414
	// puts it for an issuer with a path (the SDK's first try).
	asm := c.http("GET", asOrigin+"/.well-known/oauth-authorization-server/api/auth")
	if body := asm.obj("body"); asm.num("status") != 200 || body.str("issuer") != f.Issuer ||
		body.str("authorization_endpoint") != f.Issuer+"/oauth2/authorize" || body.str("token_endpoint") != f.Issuer+"/oauth2/token" ||
		body.str("registration_endpoint") != f.Issuer+"/oauth2/register" || !strings.Contains(fmt.Sprint(body["code_challenge_methods_supported"]), "S256") {
		t.Fatalf("authorization server metadata: %v", asm)
	}
	// 4. Dynamic client registration: a native public client asking for
	// the challenge's scopes, linked by Better-Auth to the resource.
	reg := c.http("POST", f.Issuer+"/oauth2/register")
	sent, got := reg.obj("sent"), reg.obj("body")
	clientID := got.str("client_id")
	if reg.num("status") != 201 || !opaqueToken.MatchString(clientID) || sent.str("application_type") != "native" ||
		sent.str("token_endpoint_auth_method") != "none" || fmt.Sprint(sent["redirect_uris"]) != fmt.Sprintf("[%s]", redirectURI) ||
		sent.str("scope") != "mcp:read mcp:write mcp:admin" || got.str("token_endpoint_auth_method") != "none" ||
		fmt.Sprint(got["resources"]) != fmt.Sprintf("[%s]", resource) || got["client_secret"] != nil {
		t.Fatalf("registration: %v", reg)
	}
	if s := c.next("registered", nil); s.str("client_id") != clientID || s.str("issuer") != f.Issuer || s["secret"] != false {
		t.Fatalf("the client information the SDK saved: %v", s)
	}
	// Better-Auth stores a dynamically registered client with every scope
	// registration allows, whatever it asked for: so the step-up below may
	// ask for a scope the first challenge did not name.
	row := ba.Do(t, "client-row", map[string]any{"client_id": clientID})["row"].(map[string]any)
	if row["applicationType"] != "native" || row["tokenEndpointAuthMethod"] != "none" || row["clientSecret"] != nil ||
		fmt.Sprint(jsonStrings(t, row["redirectUris"])) != fmt.Sprintf("[%s]", redirectURI) ||
		!slices.Contains(jsonStrings(t, row["scopes"]), "mcp:admin") {
		t.Fatalf("the registered client's row: %v", row)
	}
	if links := ba.Do(t, "sql", map[string]any{"query": `SELECT "resourceId" FROM "oauthClientResource" WHERE "clientId" = ?`, "params": []string{clientID}}); fmt.Sprint(links["rows"]) != fmt.Sprintf("[map[resourceId:%s]]", resource) {
		t.Fatalf("the registered client's resources: %v", links)
	}
	// 5. The authorization request: PKCE (S256), the resource (RFC 8707),
	// the challenge's scopes; Alice grants mcp:read and mcp:write only.
	authorize := func(scope string) {
		t.Helper()
		s := c.next("authorize", nil)
		p := s.obj("params")
		if s.str("endpoint") != f.Issuer+"/oauth2/authorize" || p.str("response_type") != "code" || p.str("client_id") != clientID ||
			p.str("code_challenge_method") != "S256" || p.obj("code_challenge")["present"] != true || p.str("redirect_uri") != redirectURI ||
			p.str("resource") != resource || p.str("scope") != scope || p.str("state") == "" {
			t.Fatalf("authorization request: %v, want scope %q", s, scope)
		}
		if s := c.next("code", nil); s["code"] != true || s["state_matches"] != true || s.str("iss") != f.Issuer || s["error"] != nil {
			t.Fatalf("the redirect back to the client: %v", s)
		}
	}
	authorize("mcp:read mcp:write mcp:admin")
	// 6. transport.finishAuth(code): the token request, with the verifier
	// and the resource, for a public client; a JWT for the resource.
	token := func(label, scope string) (claims sdkStep) {
		t.Helper()
		if s := c.next("unauthorized", nil); s.str("label") != label {
			t.Fatalf("the SDK stopped for the user's authorization: %v", s)
		}
		req := c.http("POST", f.Issuer+"/oauth2/token")
		form := req.obj("form")
		if req.num("status") != 200 || form.str("grant_type") != "authorization_code" || form.obj("code")["present"] != true ||
			form.obj("code_verifier")["present"] != true || form.str("redirect_uri") != redirectURI || form.str("resource") != resource ||
			form.str("client_id") != clientID || form["client_secret"] != nil {
			t.Fatalf("token request: %v", req)
		}
		s := c.next("tokens", nil)
		claims = s.obj("claims")
		if s.str("kind") != "jwt" || s.obj("header").str("typ") != "at+jwt" || s.str("scope") != scope || s["refresh_token"] != false ||
			claims.str("aud") != resource || claims.str("iss") != f.Issuer || claims.str("azp") != clientID || claims.str("client_id") != clientID ||
			claims.str("sub") != alice.ID || claims.str("sid") != alice.SessionID || claims.str("scope") != scope || claims.str("jti") == "" {
			t.Fatalf("tokens: %v, want a JWT for %s with scope %q", s, resource, scope)
		}
		return claims
	}
	first := token("main", "mcp:read mcp:write")
	// 7. Connected with it: tools/list and tools/call answered by the MCP
	// server, which saw Alice.
	connected := func(label, url string) {
		t.Helper()
		if s := c.http("POST", url); s.num("status") != 200 {
			t.Fatalf("initialize with the token: %v", s)
		}
		if s := c.next("connected", nil); s.str("label") != label || s.obj("server").str("name") != "better-auth-demo" {
			t.Fatalf("connected: %v", s)
		}
	}
	exercised := func(label string) {
		t.Helper()
		if s := c.next("tools", nil); s.str("label") != label || fmt.Sprint(s["names"]) != "[countdown whoami]" {
			t.Fatalf("tools/list: %v", s)
		}
		who := c.next("call", nil)
		if st := who.obj("structured"); who.str("label") != label || who["isError"] != false || st.str("userId") != alice.ID ||
			st.str("email") != alice.Email || st.str("method") != "oauth" {
			t.Fatalf("tools/call whoami: %v", who)
		}
	}
	connected("main", resource)
	exercised("main")

	// 8. The admin route: 403 insufficient_scope naming the scopes the
	// token holds and mcp:admin, and the metadata; the SDK asks for those
	// for the same client (no new registration), Alice accepts, and the
	// new token passes, keeping what the first one had.
	stepUp := fmt.Sprintf(`Bearer realm="better-auth", error="insufficient_scope", scope="mcp:read mcp:write mcp:admin", resource_metadata="%s", error_description="The credential lacks a scope this request needs."`, metadataURL)
	if s := c.http("POST", resource+"/admin"); s.num("status") != 403 || s.str("www_authenticate") != stepUp {
		t.Fatalf("the admin route with a token without mcp:admin: %v, want 403 %s", s, stepUp)
	}
	authorize("mcp:read mcp:write mcp:admin")
	second := token("step-up", "mcp:read mcp:write mcp:admin")
	connected("step-up", resource+"/admin")
	exercised("step-up")
	if s := c.next("call", nil); s.str("label") != "main-after-step-up" || s["isError"] != false || s.obj("structured").str("userId") != alice.ID {
		t.Fatalf("the first session with the new token: %v", s)
	}
	c.next("done", nil)
	if n := c.count("registered"); n != 1 {
		t.Errorf("the SDK registered %d clients, want 1", n)
	}
	if n := c.count("authorize"); n != 2 {
		t.Errorf("%d authorizations, want 2", n)
	}

	// What Alice's browser was asked, and granted.
	var consents []struct{ ClientID, Requested, Granted string }
	for _, x := range ba.Do(t, "consents", nil)["consents"].([]any) {
		x := x.(map[string]any)
		consents = append(consents, struct{ ClientID, Requested, Granted string }{fmt.Sprint(x["client_id"]), fmt.Sprint(x["requested"]), fmt.Sprint(x["granted"])})
	}
	if fmt.Sprint(consents) != fmt.Sprintf("[{%[1]s mcp:read mcp:write mcp:admin mcp:read mcp:write} {%[1]s mcp:read mcp:write mcp:admin mcp:read mcp:write mcp:admin}]", clientID) {
		t.Errorf("consent pages: %v", consents)
	}

	// What reached the MCP server: the gateway's identity headers, never the
	// token; the discovery never reached it.
	rec.mu.Lock()
	calls := slices.Clone(rec.calls)
	rec.mu.Unlock()
	for _, call := range calls {
		if strings.HasPrefix(call.Path, "/.well-known/") || call.Header.Get("X-Auth-Method") != "oauth" || call.Header.Get("Authorization") != "" ||
			call.Path == "/mcp/admin" && call.Header.Get("X-Auth-Scopes") != "mcp:read mcp:write mcp:admin" {
			t.Errorf("the MCP server got %s %s %s with %v", call.Path, call.Method, call.Tool, call.Header)
		}
	}
	want := func(path string, jtis ...sdkStep) {
		t.Helper()
		got := rec.toolCalls(path, "whoami")
		if len(got) != len(jtis) {
			t.Fatalf("%s: %d whoami calls reached the MCP server, want %d", path, len(got), len(jtis))
		}
		for i, call := range got {
			h, tok := call.Header, jtis[i]
			if h.Get("X-Auth-User-Id") != alice.ID || h.Get("X-Auth-User-Email") != alice.Email || h.Get("X-Auth-Client-Id") != clientID ||
				h.Get("X-Auth-Token-Id") != tok.str("jti") || h.Get("X-Auth-Scopes") != tok.str("scope") {
				t.Errorf("%s: whoami %d reached the MCP server with %v, want the token %v", path, i, h, tok)
			}
		}
	}
	want("/mcp", first, second)
	want("/mcp/admin", second)
}

// stepCursor reads mcp-client.mjs's steps in order.
type stepCursor struct {
	t     *testing.T
	steps []sdkStep
	i     int
}

// next returns the next step named step (and matching match, if given)
// after the last one returned.
func (c *stepCursor) next(step string, match func(sdkStep) bool) sdkStep {
	c.t.Helper()
	for j := c.i; j < len(c.steps); j++ {
		if s := c.steps[j]; s.str("step") == step && (match == nil || match(s)) {
			c.i = j + 1
			return s
		}
	}
	c.t.Fatalf("no %s step after step %d", step, c.i)
	return nil
}

// http returns the next HTTP request to url with method.
func (c *stepCursor) http(method, url string) sdkStep {
	c.t.Helper()
	return c.next("http", func(s sdkStep) bool { return s.str("method") == method && s.str("url") == url })
}

// count counts the steps named step.
func (c *stepCursor) count(step string) int {
	n := 0
	for _, s := range c.steps {
		if s.str("step") == step {
			n++
		}
	}
	return n
}
