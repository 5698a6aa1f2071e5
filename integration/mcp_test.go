package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/demo"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// headerTransport adds headers to every request of an MCP client.
type headerTransport struct {
	header http.Header
	base   http.RoundTripper
}

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, vs := range h.header {
		r.Header[k] = vs
	}
	return h.base.RoundTrip(r)
}

// connect opens an MCP session through the gateway with the official Go SDK
// client, sending hdr on every request; progress collects the progress
// notifications the server streams.
func connect(t *testing.T, endpoint string, hdr http.Header, progress chan<- string) (*mcp.ClientSession, error) {
	t.Helper()
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "1"}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			if progress != nil {
				progress <- req.Params.Message
			}
		},
	})
	transport := &mcp.StreamableClientTransport{
		Endpoint:   endpoint,
		HTTPClient: &http.Client{Transport: headerTransport{header: hdr, base: http.DefaultTransport}},
		MaxRetries: -1,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return client.Connect(ctx, transport, nil)
}

// exerciseMCP runs initialize (in connect), tools/list and tools/call
// through the gateway and checks that the server saw the right user.
func exerciseMCP(t *testing.T, endpoint string, hdr http.Header, wantUser, wantMethod string) {
	t.Helper()
	progress := make(chan string, 16)
	cs, err := connect(t, endpoint, hdr, progress)
	if err != nil {
		t.Fatalf("initialize through the gateway: %v", err)
	}
	defer cs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
	}
	if strings.Join(names, ",") != "countdown,whoami" && strings.Join(names, ",") != "whoami,countdown" {
		t.Fatalf("tools = %v", names)
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "whoami"})
	if err != nil || res.IsError {
		t.Fatalf("tools/call whoami: %v %+v", err, res)
	}
	var who demo.Whoami
	raw, _ := json.Marshal(res.StructuredContent)
	if err := json.Unmarshal(raw, &who); err != nil || who.UserID != wantUser || who.Method != wantMethod {
		t.Fatalf("whoami = %s, want user %s by %s", raw, wantUser, wantMethod)
	}
	// A tool that streams progress notifications before its result: they
	// arrive through the gateway as server-sent events.
	params := &mcp.CallToolParams{Name: "countdown", Arguments: map[string]any{"from": 3}}
	params.SetProgressToken("t1")
	if res, err := cs.CallTool(ctx, params); err != nil || res.IsError {
		t.Fatalf("tools/call countdown: %v %+v", err, res)
	}
	for _, want := range []string{"3", "2", "1"} {
		select {
		case got := <-progress:
			if got != want {
				t.Fatalf("progress %q, want %q", got, want)
			}
		case <-ctx.Done():
			t.Fatal("no progress notification came through")
		}
	}
}

func TestMCPThroughTheGateway(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{})
	mcpServer := httptest.NewServer(demo.MCPHandler())
	defer mcpServer.Close()
	gw := testenv.StartCaddy(t, "", fmt.Sprintf(`
	better_auth {
		database {env.DATABASE_URL}
		secret {env.BETTER_AUTH_SECRET}
	}
	reverse_proxy %s`, strings.TrimPrefix(mcpServer.URL, "http://")),
		"DATABASE_URL="+f.DatabaseURL, "BETTER_AUTH_SECRET="+testenv.Secret)
	endpoint := gw.URL + "/mcp"

	t.Run("x-api-key", func(t *testing.T) {
		exerciseMCP(t, endpoint, http.Header{"X-Api-Key": {f.Keys.Valid.Key}}, f.Users.Alice.ID, "api_key")
	})
	t.Run("api key as bearer", func(t *testing.T) {
		exerciseMCP(t, endpoint, http.Header{"Authorization": {"Bearer " + f.Keys.Valid2.Key}}, f.Users.Alice.ID, "api_key")
	})
	t.Run("session as bearer", func(t *testing.T) {
		exerciseMCP(t, endpoint, http.Header{"Authorization": {"Bearer " + f.Users.Zoe.Signed}}, f.Users.Zoe.ID, "session")
	})
	t.Run("no key", func(t *testing.T) {
		if _, err := connect(t, endpoint, nil, nil); err == nil {
			t.Fatal("initialize without a key succeeded")
		}
		req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer ") {
			t.Fatalf("status %d, WWW-Authenticate %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	})
}

// The embedded schema is still the one Better-Auth's migrations create.
func TestDemoSchemaMatchesBetterAuth(t *testing.T) {
	t.Parallel()
	out := testenv.RunSeed(t, "sqlite::memory:", nil, "ddl")
	var body []string
	for _, line := range strings.Split(demo.SchemaSQL(), "\n") {
		if !strings.HasPrefix(line, "--") {
			body = append(body, line)
		}
	}
	if strings.TrimSpace(strings.Join(body, "\n")) != strings.TrimSpace(string(out)) {
		t.Fatalf("demo/schema.sql differs from Better-Auth's migrations:\n%s", out)
	}
}

// Real Better-Auth accepts the key and session the demo writes.
func TestDemoDatabaseIsBetterAuths(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "demo.db")
	creds, err := demo.Create(context.Background(), path, time.Now())
	if err != nil || !creds.Created {
		t.Fatalf("Create: %+v %v", creds, err)
	}
	again, err := demo.Create(context.Background(), path, time.Now())
	if err != nil || again.Created || again.UserID != creds.UserID || again.APIKey == creds.APIKey {
		t.Fatalf("second Create: %+v %v", again, err)
	}
	var verified struct {
		Valid bool `json:"valid"`
		Key   struct {
			ID          string `json:"id"`
			ReferenceID string `json:"referenceId"`
		} `json:"key"`
	}
	out := testenv.RunSeed(t, "sqlite:"+path, nil, "verify-key", creds.APIKey)
	if err := json.Unmarshal(out, &verified); err != nil || !verified.Valid || verified.Key.ID != creds.KeyID || verified.Key.ReferenceID != creds.UserID {
		t.Fatalf("Better-Auth's verifyApiKey: %s", out)
	}
	var session struct {
		Session struct{ ID string }    `json:"session"`
		User    struct{ Email string } `json:"user"`
	}
	signed := betterauth.NewSigner(testenv.Secret).Sign(again.SessionToken)
	out = testenv.RunSeed(t, "sqlite:"+path, nil, "get-session", signed)
	if err := json.Unmarshal(out, &session); err != nil || session.Session.ID != again.SessionID || session.User.Email != demo.UserEmail {
		t.Fatalf("Better-Auth's getSession: %s", out)
	}
}

// `caddy better-auth demo` on a free port: driven with the key it prints,
// then stopped with Ctrl-C, leaving no process and no listener behind.
func TestDemoCommand(t *testing.T) {
	t.Parallel()
	port := testenv.FreePort(t)
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "demo.db")
	cmd := exec.Command(testenv.CaddyBinary(t), "better-auth", "demo", "--listen", listen, "--db", dbPath)
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir)
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })

	var key, session string
	lines := make(chan string)
	var wg sync.WaitGroup
	wg.Go(func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	})
	timeout := time.After(30 * time.Second)
read:
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("demo ended early: %s", stderr.String())
			}
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "API key:"); ok {
				key = strings.TrimSpace(v)
			}
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "session token:"); ok {
				session = strings.TrimSpace(v)
			}
			if strings.Contains(line, "Ctrl-C stops") {
				break read
			}
		case <-timeout:
			t.Fatalf("the demo printed no key in 30s: %s", stderr.String())
		}
	}
	go func() {
		for range lines { // keep draining so the demo never blocks on stdout
		}
	}()
	if !strings.HasPrefix(key, demo.KeyPrefix) || len(key) != len(demo.KeyPrefix)+64 || session == "" {
		t.Fatalf("key %q, session %q", key, session)
	}
	// The database it made holds the key's hash and the session token: its
	// owner alone may read it, whatever the umask.
	if fi, err := os.Stat(dbPath); err != nil {
		t.Fatal(err)
	} else if m := fi.Mode().Perm(); m != 0o600 {
		t.Fatalf("the demo database has mode %#o, want 0600", m)
	}
	endpoint := "http://" + listen + "/mcp"
	cs, err := connect(t, endpoint, http.Header{"X-Api-Key": {key}}, nil)
	if err != nil {
		t.Fatalf("MCP through the demo: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "whoami"})
	cancel()
	if err != nil || res.IsError || !strings.Contains(res.Content[0].(*mcp.TextContent).Text, demo.UserEmail) {
		t.Fatalf("whoami through the demo: %v %+v", err, res)
	}
	resp, err := http.Get(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("without a key: %d", resp.StatusCode)
	}
	// The session token it printed works as a bearer token too.
	req, _ := http.NewRequest(http.MethodGet, "http://"+listen+"/", nil)
	req.Header.Set("Authorization", "Bearer "+session)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode == 401 || resp.StatusCode == 503 {
		t.Fatalf("session token: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	cmd.Process.Signal(syscall.SIGINT) // Ctrl-C, with the MCP session's stream still open
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo exited with %v: %s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("the demo did not stop on Ctrl-C: %s", stderr.String())
	}
	cs.Close()
	if c, err := net.DialTimeout("tcp", listen, time.Second); err == nil {
		c.Close()
		t.Fatal("the gateway still listens after the demo stopped")
	}
}
