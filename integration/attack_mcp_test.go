// The TestAttack* tests here reproduce attacks a review of the change
// found, each through what it attacked. Each failed before its fix and
// guards it now; their comments describe the attack and the flaw as they
// were found (the commits starting "attack:" hold them as they failed).

package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// attackMCP is a gateway with the mcp block of mcpRules in front of the
// tools server, stateful (the Go SDK's default, and the demo's) at /mcp
// and stateless at /modern, plus a tool that asks its caller to confirm
// (elicitation/create) and reports the answer.
type attackMCP struct {
	gw     *testenv.Caddy
	f      *testenv.Fixture
	server *mcp.Server
	alice  http.Header
	zoe    http.Header
}

func startAttackMCP(t *testing.T) *attackMCP {
	t.Helper()
	f := testenv.Seed(t, testenv.SeedOptions{})
	testenv.Exec(t, f.DatabaseURL, `UPDATE "user" SET role = 'admin' WHERE id = $1`, f.Users.Zoe.ID)
	server := toolsServer()
	mcp.AddTool(server, &mcp.Tool{Name: "transfer", Description: "Moves money once the user confirms."},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			res, err := req.Session.Elicit(ctx, &mcp.ElicitParams{
				Message: "Transfer 1000 EUR to account 42?",
				RequestedSchema: map[string]any{"type": "object",
					"properties": map[string]any{"confirm": map[string]any{"type": "boolean"}}},
			})
			if err != nil {
				return nil, nil, err
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{
				Text: fmt.Sprintf("action=%s content=%v", res.Action, res.Content)}}}, nil, nil
		})
	mux := http.NewServeMux()
	mux.Handle("/mcp", mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil))
	mux.Handle("/modern", mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server },
		&mcp.StreamableHTTPOptions{Stateless: true}))
	mcpServer := httptest.NewServer(mux)
	t.Cleanup(mcpServer.Close)
	gw := testenv.StartCaddy(t, "", fmt.Sprintf(`
	route {
		better_auth {
			database {env.DATABASE_URL}
			secret {env.BETTER_AUTH_SECRET}
			%s
		}
		reverse_proxy %s
	}`, mcpRules, strings.TrimPrefix(mcpServer.URL, "http://")), "DATABASE_URL="+f.DatabaseURL, "BETTER_AUTH_SECRET="+testenv.Secret)
	return &attackMCP{gw: gw, f: f, server: server,
		alice: http.Header{"Authorization": {"Bearer " + f.Users.Alice.Signed}},
		zoe:   http.Header{"Authorization": {"Bearer " + f.Users.Zoe.Signed}}}
}

// do sends a raw request through the gateway.
func (a *attackMCP) do(t *testing.T, method, path, body string, hdr http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, a.gw.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func with(base http.Header, kv ...string) http.Header {
	h := base.Clone()
	for i := 0; i < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

// A session is bound to Alice, and Zoe is turned away with her session id
// (404)... unless Zoe also says MCP-Protocol-Version: 2026-07-28. The
// gateway then skips the binding (caddyauth → mcp.Call.session: "2026-07-28
// has no sessions: servers ignore the header"), but the stateful Go SDK
// server (the Go SDK's default, and `better-auth demo`'s) accepts any
// version from 2026-07-28 on, refuses only *calls* at it, and serves the
// rest on the session the id names: Zoe answers the elicitation Alice's
// tool is waiting for (accepting a transfer Alice never confirmed), opens
// Alice's standalone event stream, and ends Alice's session.
func TestAttackMCPSessionBindingSkippedForNewVersion(t *testing.T) {
	t.Parallel()
	a := startAttackMCP(t)
	const legacy, modern = "2025-11-25", "2026-07-28"

	// openAlice opens a session as Alice; her client's elicitation
	// handler reports each question on asked and answers "decline" once
	// release is closed.
	openAlice := func(asked chan<- string, release <-chan struct{}, noStream bool) *mcp.ClientSession {
		client := mcp.NewClient(&mcp.Implementation{Name: "alice", Version: "1"}, &mcp.ClientOptions{
			ElicitationHandler: func(_ context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
				asked <- req.Params.Message
				<-release
				return &mcp.ElicitResult{Action: "decline"}, nil
			},
		})
		transport := &mcp.StreamableClientTransport{
			Endpoint:   a.gw.URL + "/mcp",
			HTTPClient: &http.Client{Transport: headerTransport{header: a.alice, base: http.DefaultTransport}},
			MaxRetries: -1,
			// A client that never listens on its own (the standalone
			// stream is optional for clients).
			DisableStandaloneSSE: noStream,
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		cs, err := client.Connect(ctx, transport, &mcp.ClientSessionOptions{ProtocolVersion: legacy})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cs.Close() })
		return cs
	}

	t.Run("Zoe answers Alice's elicitation", func(t *testing.T) {
		asked, release := make(chan string, 1), make(chan struct{})
		cs := openAlice(asked, release, false)
		result := make(chan string, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "transfer"})
			if err != nil {
				result <- "error: " + err.Error()
				return
			}
			result <- res.Content[0].(*mcp.TextContent).Text
		}()
		select {
		case <-asked:
		case <-time.After(15 * time.Second):
			t.Fatal("the tool never asked Alice")
		}
		answer := func(id int, version string) int {
			resp := a.do(t, http.MethodPost, "/mcp",
				fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"result":{"action":"accept","content":{"confirm":true}}}`, id),
				with(a.zoe, "Mcp-Session-Id", cs.ID(), "Mcp-Protocol-Version", version))
			resp.Body.Close()
			return resp.StatusCode
		}
		// The control: Zoe with Alice's session at Alice's version.
		if status := answer(1, legacy); status != http.StatusNotFound {
			t.Errorf("Zoe's answer in Alice's session at %s: %d, want 404", legacy, status)
		}
		// The attack: the same, saying 2026-07-28.
		for id := 1; id <= 3; id++ {
			if status := answer(id, modern); status != http.StatusNotFound {
				t.Errorf("Zoe's answer (id %d) in Alice's session at %s: %d, want 404", id, modern, status)
			}
		}
		close(release)
		select {
		case got := <-result:
			if strings.Contains(got, "accept") {
				t.Errorf("Alice declined, yet her tool ran with Zoe's answer: %q", got)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("no result")
		}
	})

	t.Run("Zoe opens Alice's event stream", func(t *testing.T) {
		cs := openAlice(make(chan string, 1), nil, true)
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.gw.URL+"/mcp", nil)
		req.Header = with(a.zoe, "Mcp-Session-Id", cs.ID(), "Mcp-Protocol-Version", modern, "Accept", "text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			return
		}
		t.Errorf("Zoe's GET of Alice's stream: %d %s, want 404", resp.StatusCode, resp.Header.Get("Content-Type"))
		if resp.StatusCode != http.StatusOK {
			return
		}
		// What the server sends Alice's session on its own now reaches Zoe.
		mcp.AddTool(a.server, &mcp.Tool{Name: "late"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{}, nil, nil
		})
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "notifications/tools/list_changed") {
				t.Errorf("Zoe reads Alice's session's notifications: %s", sc.Text())
				return
			}
		}
	})

	t.Run("Zoe ends Alice's session", func(t *testing.T) {
		cs := openAlice(make(chan string, 1), nil, false)
		del := func(version string) int {
			resp := a.do(t, http.MethodDelete, "/mcp", "", with(a.zoe, "Mcp-Session-Id", cs.ID(), "Mcp-Protocol-Version", version))
			resp.Body.Close()
			return resp.StatusCode
		}
		if status := del(legacy); status != http.StatusNotFound {
			t.Errorf("Zoe's DELETE at %s: %d, want 404", legacy, status)
		}
		if status := del(modern); status != http.StatusNotFound {
			t.Errorf("Zoe's DELETE at %s: %d, want 404", modern, status)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := cs.ListTools(ctx, nil); err != nil {
			t.Errorf("Alice's session is gone: %v", err)
		}
	})
}

// startTSServer runs seed/attack-mcp-server.mjs, an MCP server on the
// official TypeScript SDK (McpServer, stateless, JSON answers), and returns
// its address.
func startTSServer(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(testenv.RepoRoot(), "integration", "seed")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@modelcontextprotocol", "sdk")); err != nil {
		t.Fatal("integration/seed/node_modules has no @modelcontextprotocol/sdk; run scripts/test.sh")
	}
	cmd := exec.Command("node", "attack-mcp-server.mjs")
	cmd.Dir, cmd.Env, cmd.Stderr = dir, append(os.Environ(), "PORT=0"), os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	var ready struct{ Listening int }
	if err != nil || json.Unmarshal([]byte(line), &ready) != nil || ready.Listening == 0 {
		t.Fatalf("attack-mcp-server.mjs: %q %v", line, err)
	}
	return fmt.Sprintf("127.0.0.1:%d", ready.Listening)
}

// A resource rule matches the URI as the client spelled it; the
// TypeScript SDK's McpServer looks a resource up by new URL(uri).toString()
// (WHATWG): the scheme and a special scheme's host in lower case, the
// default port dropped, tabs and newlines anywhere and spaces around
// removed, "https:host" given its slashes. Every such spelling of a
// guarded URI misses its rule (mcp/policy.go match, byte for byte; plainURI
// looks for none of these), falls to the default, and reads the secret.
func TestAttackMCPResourceURISpellingsTSSDK(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{})
	upstream := startTSServer(t)
	gw := testenv.StartCaddy(t, "", fmt.Sprintf(`
	route {
		better_auth {
			database {env.DATABASE_URL}
			secret {env.BETTER_AUTH_SECRET}
			mcp {
				resource demo://secret/* {
					role admin
				}
				resource https://docs.example.com/secret/* {
					role admin
				}
				default {
					role user admin
				}
			}
		}
		reverse_proxy %s
	}`, upstream), "DATABASE_URL="+f.DatabaseURL, "BETTER_AUTH_SECRET="+testenv.Secret)
	alice := http.Header{"Authorization": {"Bearer " + f.Users.Alice.Signed}, "Mcp-Protocol-Version": {"2025-11-25"}}
	read := func(uri string) rpcPost {
		b, _ := json.Marshal(uri)
		return postRPC(t, gw.URL+"/mcp", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":`+string(b)+`}}`, alice)
	}
	// The control: the URI as registered is refused, a public one read.
	if r := read("demo://secret/plans"); r.status != http.StatusForbidden {
		t.Fatalf("the secret as registered: %d %s", r.status, r.raw)
	}
	if r := read("demo://public/readme"); r.status != http.StatusOK || !strings.Contains(r.raw, "contents of demo://public/readme") {
		t.Fatalf("the public resource: %d %s", r.status, r.raw)
	}
	for _, uri := range []string{
		"DEMO://secret/plans",
		"Demo://secret/plans",
		"demo://se\tcret/plans",
		"demo://secret/pla\nns",
		" demo://secret/plans",
		"HTTPS://docs.example.com/secret/plans",
		"https://DOCS.example.com/secret/plans",
		"https://docs.example.com:443/secret/plans",
		"https:docs.example.com/secret/plans",
		"https:/docs.example.com/secret/plans",
	} {
		r := read(uri)
		if r.status == http.StatusOK && strings.Contains(r.raw, "/secret/plans") && strings.Contains(r.raw, "contents of") {
			t.Errorf("Alice (no admin) read the secret as %q: %d %s", uri, r.status, r.raw)
		} else if r.status != http.StatusForbidden && r.status != http.StatusBadRequest {
			t.Errorf("%q: %d %s", uri, r.status, r.raw)
		}
	}
}

// The list filter reads the answer to a POST (or a GET resuming a stream);
// over MCP's HTTP+SSE transport (2024-11-05, which the Go and TypeScript
// SDKs still serve: mcp.NewSSEHandler) every answer, tools/list's too,
// comes on the GET event stream, which the gateway passes unread
// (mcp.Call.Wrap filters a GET only with Last-Event-ID). A user sees the
// tools, resources and prompts the rules hide from her; the calls
// themselves are still judged (the POST bodies are read).
func TestAttackMCPListsUnfilteredOverHTTPSSE(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{})
	server := toolsServer()
	mcpServer := httptest.NewServer(mcp.NewSSEHandler(func(*http.Request) *mcp.Server { return server }, nil))
	t.Cleanup(mcpServer.Close)
	gw := testenv.StartCaddy(t, "", fmt.Sprintf(`
	route {
		better_auth {
			database {env.DATABASE_URL}
			secret {env.BETTER_AUTH_SECRET}
			%s
		}
		reverse_proxy %s
	}`, mcpRules, strings.TrimPrefix(mcpServer.URL, "http://")), "DATABASE_URL="+f.DatabaseURL, "BETTER_AUTH_SECRET="+testenv.Secret)
	alice := http.Header{"Authorization": {"Bearer " + f.Users.Alice.Signed}}
	client := mcp.NewClient(&mcp.Implementation{Name: "alice", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cs, err := client.Connect(ctx, &mcp.SSEClientTransport{Endpoint: gw.URL + "/sse",
		HTTPClient: &http.Client{Transport: headerTransport{header: alice, base: http.DefaultTransport}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range tools.Tools {
		if tool.Name == "delete_item" {
			t.Errorf("tools/list shows Alice delete_item, which the rules hide from her")
		}
	}
	resources, err := cs.ListResources(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resources.Resources {
		if strings.HasPrefix(r.URI, "demo://secret/") {
			t.Errorf("resources/list shows Alice %s", r.URI)
		}
	}
	prompts, err := cs.ListPrompts(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range prompts.Prompts {
		if p.Name == "admin_report" {
			t.Errorf("prompts/list shows Alice the denied prompt %s", p.Name)
		}
	}
	// The calls themselves are judged: Alice (a user) may not delete.
	if err := callTool(cs, "delete_item"); err == nil {
		t.Error("delete_item passed")
	}
}
