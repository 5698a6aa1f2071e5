package integration

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/caddy-betterauth/caddy-betterauth/demo"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// toolsServer is the demo MCP server with more to guard: a destructive
// tool and a search, a public and a secret resource, a prompt anyone may
// get and one nobody may.
func toolsServer() *mcp.Server {
	s := demo.NewMCPServer()
	type item struct {
		ID string `json:"id" jsonschema:"the item to delete"`
	}
	mcp.AddTool(s, &mcp.Tool{Name: "delete_item", Description: "Deletes an item."},
		func(_ context.Context, _ *mcp.CallToolRequest, in item) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "deleted " + in.ID}}}, nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "search", Description: "Finds things."},
		func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "found"}}}, nil, nil
		})
	for _, uri := range []string{"demo://public/readme", "demo://secret/plans"} {
		s.AddResource(&mcp.Resource{URI: uri, Name: uri[strings.LastIndex(uri, "/")+1:]},
			func(_ context.Context, r *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
				return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: r.Params.URI, Text: "contents of " + r.Params.URI}}}, nil
			})
	}
	for _, name := range []string{"review", "admin_report"} {
		s.AddPrompt(&mcp.Prompt{Name: name}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: name}}}}, nil
		})
	}
	return s
}

// bodyRecorder is an upstream that records the bodies it gets, by
// X-Test-Id, and answers 200 with an empty JSON-RPC result.
type bodyRecorder struct {
	*httptest.Server
	mu     sync.Mutex
	bodies map[string][]byte
}

func newBodyRecorder(t *testing.T) *bodyRecorder {
	b := &bodyRecorder{bodies: map[string][]byte{}}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		b.mu.Lock()
		b.bodies[r.Header.Get("X-Test-Id")] = body
		b.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *bodyRecorder) body(id string) ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	body, ok := b.bodies[id]
	return body, ok
}

// mcpRules is the mcp block of these tests.
const mcpRules = `mcp {
			max_body 64KiB
			tool whoami
			tool countdown
			tool delete_* {
				permission files write
				role admin
			}
			resource demo://secret/* {
				role admin
			}
			prompt admin_* {
				deny
			}
			default {
				permission projects list
				role user admin
			}
		}`

// rpcPost is a raw JSON-RPC POST through the gateway and what came back.
type rpcPost struct {
	id     string // X-Test-Id
	status int
	header http.Header
	raw    string
	errs   []struct {
		ID    json.RawMessage `json:"id"`
		Error struct {
			Code int `json:"code"`
			Data struct {
				Code  string `json:"code"`
				Scope string `json:"scope"`
			} `json:"data"`
		} `json:"error"`
	}
}

func postRPC(t *testing.T, url, body string, hdr http.Header) rpcPost {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	p := rpcPost{id: rand.Text()}
	req.Header.Set("X-Test-Id", p.id)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	p.status, p.header, p.raw = resp.StatusCode, resp.Header, string(raw)
	if strings.HasPrefix(p.raw, "[") {
		json.Unmarshal(raw, &p.errs)
	} else {
		p.errs = make([]struct {
			ID    json.RawMessage `json:"id"`
			Error struct {
				Code int `json:"code"`
				Data struct {
					Code  string `json:"code"`
					Scope string `json:"scope"`
				} `json:"data"`
			} `json:"error"`
		}, 1)
		json.Unmarshal(raw, &p.errs[0])
	}
	return p
}

// connectAs opens an MCP session with the official SDK client at a
// protocol version ("" for its newest, 2026-07-28).
func connectAs(t *testing.T, endpoint string, hdr http.Header, version string) *mcp.ClientSession {
	t.Helper()
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "1"}, nil)
	transport := &mcp.StreamableClientTransport{
		Endpoint:   endpoint,
		HTTPClient: &http.Client{Transport: headerTransport{header: hdr, base: http.DefaultTransport}},
		MaxRetries: -1,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cs, err := client.Connect(ctx, transport, &mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatalf("connect at %q: %v", version, err)
	}
	if want := cmp.Or(version, "2026-07-28"); cs.InitializeResult().ProtocolVersion != want {
		t.Fatalf("connected at %s, not %s", cs.InitializeResult().ProtocolVersion, want)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

func toolNames(t *testing.T, cs *mcp.ClientSession) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	return names
}

func callTool(cs *mcp.ClientSession, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	params := &mcp.CallToolParams{Name: name}
	switch name {
	case "delete_item":
		params.Arguments = map[string]any{"id": "7"}
	case "countdown":
		params.Arguments = map[string]any{"from": 1}
	}
	res, err := cs.CallTool(ctx, params)
	if err == nil && res.IsError {
		b, _ := json.Marshal(res.Content)
		return fmt.Errorf("tool error: %s", b)
	}
	return err
}

// Per-tool rules through the real Caddy, on keys and sessions real
// Better-Auth made, with the official Go SDK client at 2026-07-28 (the
// Mcp-Method and Mcp-Name headers beside the body) and at 2025-11-25 (the
// body alone, a session), over SSE and JSON answers; and raw requests:
// batches, lying headers, bodies too large or read differently by other
// parsers, sessions used by another principal.
func TestMCPToolRules(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{})
	// Zoe is an admin (before the gateway ever reads her).
	testenv.Exec(t, f.DatabaseURL, `UPDATE "user" SET role = 'admin' WHERE id = $1`, f.Users.Zoe.ID)
	server := toolsServer()
	// The Go SDK serves 2026-07-28 only without sessions (Stateless);
	// the 2025 revisions with them. Each answers in events or in JSON.
	mux := http.NewServeMux()
	for path, opts := range map[string]*mcp.StreamableHTTPOptions{
		"/mcp": nil, "/mcp-json": {JSONResponse: true},
		"/modern": {Stateless: true}, "/modern-json": {Stateless: true, JSONResponse: true},
	} {
		mux.Handle(path, mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, opts))
	}
	mcpServer := httptest.NewServer(mux)
	t.Cleanup(mcpServer.Close) // after the clients' own
	rec := newBodyRecorder(t)
	block := func(upstream string) string {
		return fmt.Sprintf(`better_auth {
			database {env.DATABASE_URL}
			secret {env.BETTER_AUTH_SECRET}
			%s
		}
		reverse_proxy %s`, mcpRules, strings.TrimPrefix(upstream, "http://"))
	}
	gw := testenv.StartCaddy(t, "", fmt.Sprintf(`
	route /echo* {
		%s
	}
	route {
		%s
	}`, block(rec.URL), block(mcpServer.URL)), "DATABASE_URL="+f.DatabaseURL, "BETTER_AUTH_SECRET="+testenv.Secret)

	key := http.Header{"X-Api-Key": {f.Keys.Valid.Key}}           // no permissions
	permitted := http.Header{"X-Api-Key": {f.Keys.Permitted.Key}} // files read write, projects list
	alice := http.Header{"Authorization": {"Bearer " + f.Users.Alice.Signed}}
	zoe := http.Header{"Authorization": {"Bearer " + f.Users.Zoe.Signed}}

	t.Run("the SDK client, each credential sees and calls what it may", func(t *testing.T) {
		for _, tc := range []struct {
			who             string
			hdr             http.Header
			tools, refused  []string
			endpoint, proto string
		}{
			{"a key without permissions", key, []string{"countdown", "whoami"}, []string{"delete_item", "search"}, "/modern", ""},
			{"a key with them", permitted, []string{"countdown", "delete_item", "search", "whoami"}, nil, "/modern", ""},
			{"a user's session", alice, []string{"countdown", "search", "whoami"}, []string{"delete_item"}, "/modern", ""},
			{"an admin's session", zoe, []string{"countdown", "delete_item", "search", "whoami"}, nil, "/modern", ""},
			{"a user's session, JSON answers", alice, []string{"countdown", "search", "whoami"}, []string{"delete_item"}, "/modern-json", ""},
			{"a key, 2025-11-25", key, []string{"countdown", "whoami"}, []string{"delete_item"}, "/mcp", "2025-11-25"},
			{"an admin's session, 2025-11-25", zoe, []string{"countdown", "delete_item", "search", "whoami"}, nil, "/mcp", "2025-11-25"},
			{"a user's session, JSON answers, 2025-06-18", alice, []string{"countdown", "search", "whoami"}, []string{"delete_item"}, "/mcp-json", "2025-06-18"},
			{"a key, JSON answers, 2025-03-26", key, []string{"countdown", "whoami"}, []string{"search"}, "/mcp-json", "2025-03-26"},
		} {
			cs := connectAs(t, gw.URL+tc.endpoint, tc.hdr, tc.proto)
			if got := toolNames(t, cs); !slices.Equal(got, tc.tools) {
				t.Errorf("%s: tools/list %v, want %v", tc.who, got, tc.tools)
			}
			for _, name := range tc.tools {
				if err := callTool(cs, name); err != nil {
					t.Errorf("%s: %s: %v", tc.who, name, err)
				}
			}
			for _, name := range tc.refused {
				if err := callTool(cs, name); err == nil || !strings.Contains(err.Error(), "403") && !strings.Contains(err.Error(), "Forbidden") {
					t.Errorf("%s: %s was not refused: %v", tc.who, name, err)
				}
			}
		}
	})

	t.Run("a tool's progress still streams", func(t *testing.T) {
		progress := make(chan string, 8)
		cs, err := connect(t, gw.URL+"/modern", permitted, progress)
		if err != nil {
			t.Fatal(err)
		}
		defer cs.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		params := &mcp.CallToolParams{Name: "countdown", Arguments: map[string]any{"from": 3}}
		params.SetProgressToken("p")
		if res, err := cs.CallTool(ctx, params); err != nil || res.IsError {
			t.Fatalf("countdown: %v %+v", err, res)
		}
		for _, want := range []string{"3", "2", "1"} {
			select {
			case got := <-progress:
				if got != want {
					t.Fatalf("progress %q, want %q", got, want)
				}
			case <-ctx.Done():
				t.Fatal("no progress came through")
			}
		}
	})

	t.Run("resources and prompts", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		for _, tc := range []struct {
			who       string
			hdr       http.Header
			resources []string
			secret    bool
		}{
			{"a user", alice, []string{"demo://public/readme"}, false},
			{"an admin", zoe, []string{"demo://public/readme", "demo://secret/plans"}, true},
		} {
			cs := connectAs(t, gw.URL+"/modern", tc.hdr, "")
			res, err := cs.ListResources(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			var uris []string
			for _, r := range res.Resources {
				uris = append(uris, r.URI)
			}
			slices.Sort(uris)
			if !slices.Equal(uris, tc.resources) {
				t.Errorf("%s: resources %v", tc.who, uris)
			}
			_, err = cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: "demo://secret/plans"})
			if (err == nil) != tc.secret {
				t.Errorf("%s: reading the secret: %v", tc.who, err)
			}
			prompts, err := cs.ListPrompts(ctx, nil)
			if err != nil || len(prompts.Prompts) != 1 || prompts.Prompts[0].Name != "review" {
				t.Errorf("%s: prompts %v %v", tc.who, prompts, err)
			}
			if _, err := cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: "admin_report"}); err == nil {
				t.Errorf("%s: got the denied prompt", tc.who)
			}
		}
	})

	const modern = "2026-07-28"
	call := func(name string) string {
		return `{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"` + name + `","arguments":{"id":"7"},` +
			`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`
	}
	headers := func(base http.Header, kv ...string) http.Header {
		h := base.Clone()
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}

	t.Run("a refusal is a JSON-RPC error with the request's id, and never reaches the upstream", func(t *testing.T) {
		r := postRPC(t, gw.URL+"/echo", call("delete_item"), headers(alice, "Mcp-Protocol-Version", modern, "Mcp-Method", "tools/call", "Mcp-Name", "delete_item"))
		if r.status != 403 || string(r.errs[0].ID) != "11" || r.errs[0].Error.Code != -32000 || r.errs[0].Error.Data.Code != "INSUFFICIENT_ROLE" {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		if _, reached := rec.body(r.id); reached {
			t.Fatal("reached the upstream")
		}
		// Allowed: the body arrives byte for byte.
		body := "\xef\xbb\xbf " + call("delete_item") + "\n\n"
		r = postRPC(t, gw.URL+"/echo", body, headers(zoe, "Content-Type", "text/plain"))
		if got, _ := rec.body(r.id); r.status != 200 || string(got) != body {
			t.Fatalf("%d %s: upstream got %q", r.status, r.raw, got)
		}
	})

	t.Run("headers that say another tool than the body", func(t *testing.T) {
		for _, h := range []http.Header{
			headers(alice, "Mcp-Protocol-Version", modern, "Mcp-Method", "tools/call", "Mcp-Name", "whoami"),
			headers(alice, "Mcp-Protocol-Version", modern, "Mcp-Method", "tools/call", "Mcp-Name", "=?base64?d2hvYW1p?="), // whoami
			headers(alice, "Mcp-Protocol-Version", modern, "Mcp-Method", "tools/list", "Mcp-Name", "delete_item"),
			headers(alice, "Mcp-Protocol-Version", modern), // required, missing
			headers(alice, "Mcp-Protocol-Version", "2025-11-25", "Mcp-Method", "tools/call", "Mcp-Name", "whoami"),
		} {
			r := postRPC(t, gw.URL+"/echo", call("delete_item"), h)
			if r.status != 400 || r.errs[0].Error.Code != -32020 || string(r.errs[0].ID) != "11" {
				t.Errorf("%v: %d %s", h, r.status, r.raw)
			}
			if _, reached := rec.body(r.id); reached {
				t.Error("reached the upstream")
			}
		}
		r := postRPC(t, gw.URL+"/echo", call("whoami"), headers(alice, "Mcp-Protocol-Version", modern, "Mcp-Method", "tools/call", "Mcp-Name", "=?base64?d2hvYW1p?="))
		if r.status != 200 {
			t.Fatalf("matching encoded name: %d %s", r.status, r.raw)
		}
	})

	t.Run("bodies other parsers could read another way", func(t *testing.T) {
		for _, body := range []string{
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami"},"Method":"tools/call","params":{"name":"delete_item"}}`,
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","Name":"delete_item"}}`,
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","name":"delete_item"}}`,
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_item\ud800"}}`,
			"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"delete_item\xff\"}}",
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami"}} {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_item"}}`,
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["delete_item"]}}`,
			`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"demo://public/../secret/plans"}}`,
		} {
			r := postRPC(t, gw.URL+"/echo", body, key)
			if r.status != 400 {
				t.Errorf("%s: %d %s", body, r.status, r.raw)
			}
			if _, reached := rec.body(r.id); reached {
				t.Errorf("%s reached the upstream", body)
			}
		}
		// A server decoding the charset named reads "+AGQ-elete_item" in
		// UTF-7 as "delete_item".
		r := postRPC(t, gw.URL+"/echo", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"+AGQ-elete_item"}}`,
			headers(key, "Content-Type", "application/json; charset=utf-7"))
		if _, reached := rec.body(r.id); r.status != 400 || reached {
			t.Errorf("UTF-7: %d %s, reached the upstream: %v", r.status, r.raw, reached)
		}
	})

	t.Run("a batch passes whole or not at all", func(t *testing.T) {
		batch := `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami"}},` +
			`{"jsonrpc":"2.0","method":"notifications/progress","params":{}},` +
			`{"jsonrpc":"2.0","id":"b","method":"tools/call","params":{"name":"delete_item","arguments":{"id":"7"}}}]`
		r := postRPC(t, gw.URL+"/echo", batch, headers(alice, "Mcp-Protocol-Version", "2025-03-26"))
		if r.status != 403 || len(r.errs) != 2 || string(r.errs[0].ID) != "1" || string(r.errs[1].ID) != `"b"` {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		if _, reached := rec.body(r.id); reached {
			t.Fatal("reached the upstream")
		}
		r = postRPC(t, gw.URL+"/echo", batch, headers(zoe, "Mcp-Protocol-Version", "2025-03-26"))
		if got, _ := rec.body(r.id); r.status != 200 || string(got) != batch {
			t.Fatalf("%d %s", r.status, r.raw)
		}
	})

	t.Run("a body larger than max_body", func(t *testing.T) {
		big := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{"x":"` + strings.Repeat("a", 64<<10) + `"}}}`
		r := postRPC(t, gw.URL+"/echo", big, zoe)
		if r.status != 413 || r.errs[0].Error.Data.Code != "BODY_TOO_LARGE" {
			t.Fatalf("%d %.200s", r.status, r.raw)
		}
		if _, reached := rec.body(r.id); reached {
			t.Fatal("reached the upstream")
		}
	})

	t.Run("a session belongs to whoever opened it", func(t *testing.T) {
		cs := connectAs(t, gw.URL+"/mcp", alice, "2025-11-25")
		session := cs.ID()
		if session == "" {
			t.Fatal("no session id")
		}
		list := `{"jsonrpc":"2.0","id":5,"method":"tools/list"}`
		as := func(h http.Header) rpcPost {
			return postRPC(t, gw.URL+"/mcp", list, headers(h, "Mcp-Session-Id", session, "Mcp-Protocol-Version", "2025-11-25"))
		}
		// Alice by another credential (a second session of hers, then her
		// key): still her session.
		if r := as(http.Header{"Authorization": {"Bearer " + f.AliceSession2.Signed}}); r.status != 200 {
			t.Fatalf("alice's second session: %d %s", r.status, r.raw)
		}
		if r := as(key); r.status != 200 {
			t.Fatalf("alice's key: %d %s", r.status, r.raw)
		}
		// Zoe, an admin, with Alice's session id: as if it did not exist.
		r := as(zoe)
		if r.status != 404 || r.errs[0].Error.Data.Code != "MCP_SESSION_NOT_FOUND" || string(r.errs[0].ID) != "5" {
			t.Fatalf("zoe: %d %s", r.status, r.raw)
		}
		// One the gateway never saw opened.
		req, _ := http.NewRequest(http.MethodGet, gw.URL+"/mcp", nil)
		req.Header = headers(zoe, "Mcp-Session-Id", "made-up", "Accept", "text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Fatalf("a made-up session: %d", resp.StatusCode)
		}
		// The owner's client goes on.
		if got := toolNames(t, cs); !slices.Equal(got, []string{"countdown", "search", "whoami"}) {
			t.Fatalf("alice's own session: %v", got)
		}
	})
}

// An OAuth token short of a tool's scope is told, in the challenge, to
// step up to the tool's and the route's scopes; with them it sees and
// calls the tool. Tokens issued by real @better-auth/oauth-provider.
func TestMCPToolStepUp(t *testing.T) {
	t.Parallel()
	ba := startOAuthSeed(t, oauthSeedOptions{})
	f := ba.Setup(t)
	server := toolsServer()
	mcpServer := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server },
		&mcp.StreamableHTTPOptions{Stateless: true}))
	t.Cleanup(mcpServer.Close) // after the clients' own
	gw := testenv.StartCaddy(t, "", fmt.Sprintf(`
	better_auth {
		database {env.DATABASE_URL}
		secret {env.BETTER_AUTH_SECRET}
		oauth {
			resource %s
			issuer %s
			scopes mcp:read mcp:write mcp:admin
			allow_unbound_tokens
		}
		require_scope mcp:read
		mcp {
			tool delete_* {
				scope mcp:admin
			}
			prompt review {
				scope mcp:write
			}
		}
	}
	reverse_proxy %s`, f.Resource, f.Issuer, strings.TrimPrefix(mcpServer.URL, "http://")),
		"DATABASE_URL="+ba.DatabaseURL, "BETTER_AUTH_SECRET="+testenv.Secret)
	token := func(scope string) http.Header {
		t.Helper()
		tok, _ := ba.Do(t, "token-cc", f.Client.args("scope", scope))["access_token"].(string)
		if tok == "" {
			t.Fatal("no token")
		}
		return http.Header{"Authorization": {"Bearer " + tok}}
	}
	metadata := `resource_metadata="http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp"`
	deleteItem := `{"jsonrpc":"2.0","id":"d1","method":"tools/call","params":{"name":"delete_item","arguments":{"id":"7"}}}`
	modern := func(h http.Header) http.Header {
		h = h.Clone()
		h.Set("Mcp-Protocol-Version", "2026-07-28")
		h.Set("Mcp-Method", "tools/call")
		h.Set("Mcp-Name", "delete_item")
		return h
	}

	low := token("mcp:read mcp:write")
	r := postRPC(t, gw.URL+"/mcp", deleteItem, modern(low))
	challenge := r.header.Get("WWW-Authenticate")
	// The scopes it holds, the route's, the tool's.
	if r.status != 403 || !strings.Contains(challenge, `error="insufficient_scope"`) || !strings.Contains(challenge, `scope="mcp:read mcp:write mcp:admin"`) ||
		!strings.Contains(challenge, metadata) {
		t.Fatalf("%d %q %s", r.status, challenge, r.raw)
	}
	if e := r.errs[0]; string(e.ID) != `"d1"` || e.Error.Data.Code != "INSUFFICIENT_SCOPE" || e.Error.Data.Scope != "mcp:read mcp:write mcp:admin" {
		t.Fatalf("%s", r.raw)
	}
	cs := connectAs(t, gw.URL+"/mcp", low, "")
	if got := toolNames(t, cs); slices.Contains(got, "delete_item") || !slices.Contains(got, "search") {
		t.Fatalf("tools for mcp:read mcp:write: %v", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: "review"}); err != nil {
		t.Fatalf("review with mcp:write: %v", err)
	}

	// The token the client steps up to.
	high := token("mcp:read mcp:admin")
	cs = connectAs(t, gw.URL+"/mcp", high, "")
	if got := toolNames(t, cs); !slices.Contains(got, "delete_item") {
		t.Fatalf("tools for mcp:read mcp:admin: %v", got)
	}
	if err := callTool(cs, "delete_item"); err != nil {
		t.Fatalf("delete_item with mcp:admin: %v", err)
	}
	if _, err := cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: "review"}); err == nil {
		t.Fatal("review without mcp:write")
	}

	// Short of the route's own scope: the route's step-up, before any body
	// is read (the id is unknown).
	r = postRPC(t, gw.URL+"/mcp", deleteItem, modern(token("mcp:admin")))
	if challenge := r.header.Get("WWW-Authenticate"); r.status != 403 || !strings.Contains(challenge, `scope="mcp:admin mcp:read"`) ||
		string(r.errs[0].ID) != "null" {
		t.Fatalf("%d %q %s", r.status, challenge, r.raw)
	}
}
