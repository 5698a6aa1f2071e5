package caddyauth

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/cache"
	"github.com/caddy-betterauth/caddy-betterauth/gateway"
)

func TestUnmarshalMCP(t *testing.T) {
	t.Parallel()
	d := caddyfile.NewTestDispenser(`better_auth {
		database {env.DATABASE_URL}
		mcp {
			max_body 64KiB
			bind_sessions first_use
			session_ttl 2h
			tool whoami
			tool delete_* {
				scope mcp:admin
				permission tools delete
				permission items write
				role admin owner
			}
			resource file:///secret/* {
				role admin
			}
			prompt hidden {
				deny
			}
			default {
				scope mcp:read
				permission tools call
				role user
			}
		}
	}`)
	var h Handler
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	want := &gateway.MCP{MaxBody: 64 << 10, BindSessions: "first_use", SessionTTL: gateway.Duration(7200e9),
		Rules: []gateway.MCPRule{
			{Tool: "whoami"},
			{Tool: "delete_*", MCPRequirement: gateway.MCPRequirement{Scopes: []string{"mcp:admin"},
				Permissions: map[string][]string{"tools": {"delete"}, "items": {"write"}}, Roles: []string{"admin", "owner"}}},
			{Resource: "file:///secret/*", MCPRequirement: gateway.MCPRequirement{Roles: []string{"admin"}}},
			{Prompt: "hidden", MCPRequirement: gateway.MCPRequirement{Deny: true}},
		},
		Default: &gateway.MCPRequirement{Scopes: []string{"mcp:read"}, Permissions: map[string][]string{"tools": {"call"}}, Roles: []string{"user"}},
	}
	got, _ := json.Marshal(h.MCP)
	exp, _ := json.Marshal(want)
	if string(got) != string(exp) {
		t.Fatalf("got  %s\nwant %s", got, exp)
	}
	// The JSON is what the docs say.
	if !strings.Contains(string(got), `{"tool":"delete_*","scopes":["mcp:admin"],"permissions":{"items":["write"],"tools":["delete"]},"roles":["admin","owner"]}`) {
		t.Fatalf("JSON %s", got)
	}
}

func TestUnmarshalMCPErrors(t *testing.T) {
	t.Parallel()
	for input, want := range map[string]string{
		`better_auth { mcp x { } }`:                                          "wrong argument count",
		`better_auth { mcp { colour red } }`:                                 "unrecognized mcp subdirective",
		`better_auth { mcp { max_body lots } }`:                              "not a positive size",
		`better_auth { mcp { max_body 1TB } }`:                               "unknown unit",
		`better_auth { mcp { max_body 0 } }`:                                 "not a positive size",
		`better_auth { mcp { max_body 1MiB ; max_body 2MiB } }`:              "max_body already specified",
		`better_auth { mcp { tool } }`:                                       "wrong argument count",
		`better_auth { mcp { tool a b } }`:                                   "wrong argument count",
		`better_auth { mcp { tool a { colour red } } }`:                      "unrecognized rule subdirective",
		`better_auth { mcp { tool a { scope x ; scope y } } }`:               "scope already specified",
		`better_auth { mcp { tool a { permission tools } } }`:                "permission takes <resource> <action...>",
		`better_auth { mcp { tool a { permission t x ; permission t y } } }`: "permission t already specified",
		`better_auth { mcp { tool a { deny x } } }`:                          "wrong argument count",
		`better_auth { mcp { default x { } } }`:                              "wrong argument count",
		`better_auth { mcp { default { role a } ; default { role b } } }`:    "default already specified",
		`better_auth { mcp { session_ttl soon } }`:                           "bad duration",
		`better_auth { mcp { tool a } ; mcp { tool b } }`:                    "mcp already specified",
		`better_auth { mcp { bind_sessions a b } }`:                          "wrong argument count",
	} {
		var h Handler
		opened := strings.NewReplacer("{ ", "{\n", " }", "\n}", " ; ", "\n").Replace(input)
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(opened))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", input, err, want)
		}
	}
	for input, want := range map[string]string{
		`better_auth { mcp { bind_sessions always } }`:                                                                         "bind_sessions is strict, first_use or off",
		`better_auth { mcp { tool a { scope mcp:admin } } }`:                                                                   "only with an oauth block",
		`better_auth { mcp { default { scope mcp:admin } } }`:                                                                  "only with an oauth block",
		`better_auth { mcp { tool a { role a,b } } }`:                                                                          "is not a role name",
		`better_auth { mcp { tool a { deny ; role admin } } }`:                                                                 "deny refuses everyone",
		`better_auth { oauth { resource https://x.example/mcp ; issuer https://i.example } ; mcp { tool a { scope "a b" } } }`: "is not a scope",
	} {
		var h Handler
		opened := strings.NewReplacer("{ ", "{\n", " }", "\n}", " ; ", "\n").Replace(input)
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(opened)); err != nil {
			t.Fatalf("%q: %v", input, err)
		}
		if err := h.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: Validate said %v, want %q", input, err, want)
		}
	}
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{"1": 1, "1024": 1024, "1KiB": 1024, "1MiB": 1 << 20, "2mb": 2e6, "10 KB": 1e4, "1GiB": 1 << 30, "5B": 5} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("%q: %d %v", in, got, err)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1.5MiB", "1 parsec", "99999999999999999999"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

// mcpHandler is a handler with an mcp block over the fake store, whose
// user "u1" is an admin and whose key may call tools.
func mcpHandler(t testing.TB, block *gateway.MCP) *Handler {
	t.Helper()
	store := newFakeStore()
	store.key.Permissions = betterauth.Permissions{"tools": {"call"}}
	h := newHandler(t, &Handler{Options: gateway.Options{MCP: block}}, cache.New(store, cache.Options{}))
	var err error
	if h.guard, err = h.Options.Guard(h.gate, true); err != nil {
		t.Fatal(err)
	}
	return h
}

var testMCP = &gateway.MCP{
	Rules: []gateway.MCPRule{
		{Tool: "whoami"},
		{Tool: "delete_*", MCPRequirement: gateway.MCPRequirement{Permissions: map[string][]string{"tools": {"delete"}}, Roles: []string{"admin"}}},
	},
	Default: &gateway.MCPRequirement{Permissions: map[string][]string{"tools": {"call"}}, Roles: []string{"user"}},
}

func mcpPost(body string, hdr http.Header) *http.Request {
	req, _ := newRequest(hdr)
	req.Method = http.MethodPost
	req.Body = io.NopCloser(strings.NewReader(body))
	req.ContentLength = int64(len(body))
	req.Header.Set("Content-Type", "application/json")
	return req
}

// upstream is an MCP server's stand-in: it records the body it got and
// answers with answer.
type mcpUpstream struct {
	got    string
	called bool
	ct     string
	answer string
}

func (u *mcpUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	u.called = true
	b, _ := io.ReadAll(r.Body)
	u.got = string(b)
	if u.ct != "" {
		w.Header().Set("Content-Type", u.ct)
		w.Header().Set("Content-Length", "12345")
	}
	w.WriteHeader(200)
	w.Write([]byte(u.answer))
	return nil
}

func TestHandlerJudgesTools(t *testing.T) {
	t.Parallel()
	h := mcpHandler(t, testMCP)
	key := http.Header{"X-Api-Key": {testKey}}
	call := func(name string) string {
		return `{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"` + name + `","arguments":{}}}`
	}
	// Allowed: the upstream gets the body byte for byte.
	up := &mcpUpstream{}
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, mcpPost(call("whoami"), key), up); err != nil || !up.called || up.got != call("whoami") {
		t.Fatalf("%v %v %q", err, up.called, up.got)
	}
	// Refused: a JSON-RPC error with the request's id, never upstream.
	up = &mcpUpstream{}
	w = httptest.NewRecorder()
	req := mcpPost(call("delete_all"), key)
	if err := h.ServeHTTP(w, req, up); err != nil || up.called {
		t.Fatalf("%v, upstream called %v", err, up.called)
	}
	var e struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   struct {
			Code int                   `json:"code"`
			Data struct{ Code string } `json:"data"`
		} `json:"error"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || w.Code != 403 || string(e.ID) != "42" || e.Error.Code != -32000 ||
		e.Error.Data.Code != "INSUFFICIENT_PERMISSIONS" || w.Header().Get("Content-Length") != itoa(w.Body.Len()) {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	// The same for the admin's session: its role is enough.
	up = &mcpUpstream{}
	if err := h.ServeHTTP(httptest.NewRecorder(), mcpPost(call("delete_all"), http.Header{"Authorization": {"Bearer " + testToken}}), up); err != nil || !up.called {
		t.Fatal("the admin's session was refused")
	}
	// No credential: 401 with the challenge, a JSON-RPC error with a null
	// id, the body unread.
	w = httptest.NewRecorder()
	if err := h.ServeHTTP(w, mcpPost(call("whoami"), nil), up); err != nil || w.Code != 401 ||
		!strings.Contains(w.Body.String(), `"id":null`) || w.Header().Get("WWW-Authenticate") == "" {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	// Not JSON-RPC: 400.
	w = httptest.NewRecorder()
	if err := h.ServeHTTP(w, mcpPost(`delete_all please`, key), up); err != nil || w.Code != 400 || !strings.Contains(w.Body.String(), "-32700") {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestHandlerFiltersLists(t *testing.T) {
	t.Parallel()
	h := mcpHandler(t, testMCP)
	up := &mcpUpstream{ct: "application/json",
		answer: `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"whoami"},{"name":"delete_all"},{"name":"search"}]}}`}
	w := httptest.NewRecorder()
	req := mcpPost(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, http.Header{"X-Api-Key": {testKey}})
	if err := h.ServeHTTP(w, req, up); err != nil {
		t.Fatal(err)
	}
	want := `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"whoami"},{"name":"search"}]}}`
	if w.Body.String() != want || w.Header().Get("Content-Length") != itoa(len(want)) {
		t.Fatalf("%s %s", w.Header().Get("Content-Length"), w.Body)
	}
}

func TestHandlerBindsSessions(t *testing.T) {
	t.Parallel()
	h := mcpHandler(t, &gateway.MCP{})
	init := mcpPost(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}`, http.Header{"X-Api-Key": {testKey}, "Mcp-Protocol-Version": {"2025-06-18"}})
	opens := nextFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Mcp-Session-Id", "abc")
		w.WriteHeader(200)
		return nil
	})
	if err := h.ServeHTTP(httptest.NewRecorder(), init, opens); err != nil {
		t.Fatal(err)
	}
	use := func(hdr http.Header) int {
		req := mcpPost(`{"jsonrpc":"2.0","id":1,"method":"ping"}`, hdr)
		req.Header.Set("Mcp-Session-Id", "abc")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req, &mcpUpstream{})
		return w.Code
	}
	// The same user by another credential: its session. (Both are u1's.)
	if use(http.Header{"Authorization": {"Bearer " + testToken}}) != 200 || use(http.Header{"X-Api-Key": {testKey}}) != 200 {
		t.Fatal("the user's own session was refused")
	}
	// Another principal gets 404 (here, a gateway that never saw the
	// session opened: every principal is another).
	other := mcpHandler(t, &gateway.MCP{})
	req := mcpPost(`{"jsonrpc":"2.0","id":1,"method":"ping"}`, http.Header{"X-Api-Key": {testKey}})
	req.Header.Set("Mcp-Session-Id", "abc")
	w := httptest.NewRecorder()
	other.ServeHTTP(w, req, &mcpUpstream{})
	if w.Code != 404 || !strings.Contains(w.Body.String(), "MCP_SESSION_NOT_FOUND") {
		t.Fatalf("a session this gateway did not see opened: %d %s", w.Code, w.Body)
	}
}

type nextFunc func(http.ResponseWriter, *http.Request) error

func (f nextFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) error { return f(w, r) }
