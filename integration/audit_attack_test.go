package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// An audit event keeps only its own bytes: the path of a request whose
// query is most of a megabyte must not hold the whole request line in the
// queue while the database is away, or the queue's bound (events) is no
// bound on memory. Caddy's heap goal after its last collection (twice the
// live heap) shows what the queued events keep alive.
func TestAuditQueueHoldsNoRequestLine(t *testing.T) {
	t.Parallel()
	// A database nobody answers at: lookups fail closed (503), and the
	// audit writes fail and are retried, their events held in the queue.
	db := fmt.Sprintf("postgres://nobody@127.0.0.1:%d/none?connect_timeout=2", testenv.FreePort(t))
	// Headers of up to 1 MB (Caddy's default is 16 KB): what an operator
	// raises for large cookies, and what Envoy may pass ext_authz.
	gw := testenv.StartCaddy(t, "servers {\n\t\tmax_header_size 1MB\n\t}", `
	handle /metrics {
		metrics
	}
	handle {
		better_auth {
			database {env.DATABASE_URL}
			secret {env.BETTER_AUTH_SECRET}
			audit all {
				database
			}
		}
		respond 200
	}`, "DATABASE_URL="+db, "BETTER_AUTH_SECRET="+testenv.Secret)

	const requests, queryLen = 200, 900 << 10
	query := strings.Repeat("a", queryLen)
	for i := range requests {
		if r := send(t, gw, fmt.Sprintf("/p%d?q=%s", i, query), h("X-Api-Key", "ba_unknown_flood_key")); r.status != http.StatusServiceUnavailable {
			t.Fatalf("request %d: %d %s", i, r.status, r.raw)
		}
	}
	// Held by the queue: 200 short paths (a few KB). Keeping the request
	// lines would be 180 MB live, a heap goal twice that.
	goal := scrape(t, gw, "go_memstats_next_gc_bytes")
	if goal > 120<<20 {
		t.Fatalf("heap goal %.0f MB after %d audited requests: the queued events keep their request lines", goal/(1<<20), requests)
	}
	t.Logf("heap goal %.0f MB", goal/(1<<20))
}

// scrape reads one series from an unauthenticated /metrics route.
func scrape(t *testing.T, gw *testenv.Caddy, series string) float64 {
	t.Helper()
	r := send(t, gw, "/metrics", nil)
	for line := range strings.Lines(r.raw) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s:\n%.2000s", series, r.raw)
	return 0
}

// A queue size one slip of a digit too large is a configuration error,
// not a process that dies allocating it: `caddy validate` (as a reload
// would) used to end in "fatal error: runtime: out of memory".
func TestAuditQueueBounded(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "Caddyfile")
	caddyfile := testenv.GlobalOptions("") + `http://127.0.0.1:1 {
	better_auth {
		database postgres://nobody@127.0.0.1:1/none
		secret {env.BETTER_AUTH_SECRET}
		audit all {
			database
			queue 1000000000
		}
	}
	respond 200
}
`
	if err := os.WriteFile(path, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testenv.CaddyBinary(t), "validate", "--config", path, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "BETTER_AUTH_SECRET="+testenv.Secret, "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err == nil || strings.Contains(string(out), "fatal error") || !strings.Contains(string(out), "queue must be between") {
		t.Fatalf("validate: %v\n%.3000s", err, out)
	}
}

// A config reload that raises the queue gets the larger queue (it used to
// keep the first config's for as long as the gateway lived, dropping what
// the operator had just made room for), and the events decided before the
// reload are written by the old queue as it closes.
func TestAuditReloadQueue(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	f := testenv.Seed(t, testenv.SeedOptions{Server: pg.URL})
	if out, errOut, code := runCLI(t, "", []string{"DATABASE_URL=" + f.DatabaseURL}, "install-audit"); code != 0 {
		t.Fatalf("install-audit: exit %d\n%s%s", code, out, errOut)
	}
	admin, port := testenv.FreePort(t), testenv.FreePort(t)
	config := func(queue int) string {
		return fmt.Sprintf(`{
	admin 127.0.0.1:%d
	auto_https off
	persist_config off
	default_bind 127.0.0.1
}
http://127.0.0.1:%d {
	better_auth {
		database {env.DATABASE_URL}
		secret {env.BETTER_AUTH_SECRET}
		audit all {
			database
			queue %d
		}
	}
	respond 200
}
`, admin, port, queue)
	}
	gw := testenv.StartCaddyfile(t, config(2), "DATABASE_URL="+f.DatabaseURL, "BETTER_AUTH_SECRET="+testenv.Secret)
	gw.URL = fmt.Sprintf("http://127.0.0.1:%d", port)
	if r := send(t, gw, "/before", nil); r.status != http.StatusUnauthorized {
		t.Fatalf("before the reload: %d %s", r.status, r.raw)
	}

	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/load", admin), strings.NewReader(config(1000)))
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("reload: %d %s", resp.StatusCode, msg)
	}
	waitForRows(t, f.DatabaseURL, `SELECT count(*) FROM caddy_betterauth.audit_events WHERE path = '/before'`, 1)

	// PostgreSQL away: once a write has failed, its batch is held and the
	// next 50 refusals (no credential, no lookup) wait in the queue of
	// 1000, not in one of 2.
	testenv.Exec(t, f.DatabaseURL, "CHECKPOINT")
	pg.Stop(t)
	const n = 51
	for i := range n {
		if r := send(t, gw, "/after", nil); r.status != http.StatusUnauthorized {
			t.Fatalf("during the outage: %d %s", r.status, r.raw)
		}
		if i == 0 {
			gw.WaitForLog(t, "writing audit events", 15*time.Second)
		}
	}
	pg.Start(t)
	waitForRows(t, f.DatabaseURL, `SELECT count(*) FROM caddy_betterauth.audit_events WHERE path = '/after'`, n)
}

// Events record the path the client asked for, not what a handle_path in
// front of better_auth left of it: two such routes would otherwise record
// /admin/users and /api/users alike as /users.
func TestAuditOriginalPath(t *testing.T) {
	t.Parallel()
	db := fmt.Sprintf("postgres://nobody@127.0.0.1:%d/none", testenv.FreePort(t))
	gw := testenv.StartCaddy(t, "", `
	handle_path /admin/* {
		better_auth {
			database {env.DATABASE_URL}
			secret {env.BETTER_AUTH_SECRET}
			audit denials
		}
		respond 200
	}`, "DATABASE_URL="+db, "BETTER_AUTH_SECRET="+testenv.Secret)
	if r := send(t, gw, "/admin/users?token=x", nil); r.status != http.StatusUnauthorized {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	gw.WaitForLog(t, `"logger":"http.handlers.better_auth.audit"`, 10*time.Second)
	if logs := gw.Logs(); !strings.Contains(logs, `"path":"/admin/users"`) {
		t.Fatalf("the event does not name /admin/users:\n%s", logs)
	}
}

// Who an event names: an organization's key (its organization, no user),
// a session with an active organization, and credentials refused after
// they verified (an organization role, a rate limit) keep who they were.
func TestAuditIdentities(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{Org: true})
	block := func(extra string) string {
		return fmt.Sprintf(`better_auth {
			database {env.DATABASE_URL}
			secret {env.BETTER_AUTH_SECRET}
			api_key_config_id default org
			api_key_config org {
				references organization
			}
			audit all
			%s
		}
		respond 200`, extra)
	}
	gw := testenv.StartCaddy(t, "", fmt.Sprintf(`
	route /any/* {
		%s
	}
	route /orgadmin/* {
		%s
	}
	route /limited/* {
		%s
	}`, block(""), block("require_org_role owner"), block("rate_limit one {\nkey api_key\nrate 1/1m\n}")),
		"DATABASE_URL="+f.DatabaseURL, "BETTER_AUTH_SECRET="+testenv.Secret)
	o, u, k := f.Org, f.Users, f.Keys
	for _, c := range []struct {
		path   string
		hdr    http.Header
		status int
		want   map[string]string // "" for a field that must be absent
	}{
		{"/any/org", h("X-Api-Key", o.Keys.Acme.Key), 200, map[string]string{"decision": "allow", "method": "api_key",
			"key_id": o.Keys.Acme.ID, "org_id": o.Acme.ID, "user_id": "", "session_id": ""}},
		{"/any/alice", h("Authorization", "Bearer "+u.Alice.Signed), 200, map[string]string{"decision": "allow", "method": "session",
			"session_id": f.SessionIDs["alice"], "user_id": u.Alice.ID, "org_id": o.Acme.ID, "key_id": ""}},
		{"/orgadmin/zoe", h("Authorization", "Bearer "+u.Zoe.Signed), 403, map[string]string{"decision": "deny", "code": "INSUFFICIENT_ORG_ROLE",
			"method": "session", "session_id": f.SessionIDs["zoe"], "user_id": u.Zoe.ID, "org_id": o.Acme.ID}},
		{"/limited/1", h("X-Api-Key", k.Valid.Key), 200, map[string]string{"decision": "allow", "key_id": k.Valid.ID, "user_id": u.Alice.ID}},
		{"/limited/2", h("X-Api-Key", k.Valid.Key), 429, map[string]string{"decision": "deny", "code": "RATE_LIMIT_EXCEEDED",
			"method": "api_key", "key_id": k.Valid.ID, "user_id": u.Alice.ID, "org_id": ""}},
	} {
		if r := send(t, gw, c.path, c.hdr); r.status != c.status {
			t.Fatalf("%s: %d %s", c.path, r.status, r.raw)
		}
		gw.WaitForLog(t, `"path":"`+c.path+`"`, 10*time.Second)
		var ev map[string]any
		for line := range strings.Lines(gw.Logs()) {
			if strings.Contains(line, `"path":"`+c.path+`"`) && strings.Contains(line, "better_auth.audit") {
				if err := json.Unmarshal([]byte(line), &ev); err != nil {
					t.Fatal(err)
				}
			}
		}
		for field, want := range c.want {
			if got, _ := ev[field].(string); got != want {
				t.Errorf("%s: %s = %q, want %q", c.path, field, got, want)
			}
		}
	}
}

// A flood while the database is away: requests are answered, the queue
// holds what it can, the rest is counted in audit_events_total and the
// drop logged once (at most every 10 s), not once an event.
func TestAuditDropsCounted(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	f := testenv.Seed(t, testenv.SeedOptions{Server: pg.URL})
	if out, errOut, code := runCLI(t, "", []string{"DATABASE_URL=" + f.DatabaseURL}, "install-audit"); code != 0 {
		t.Fatalf("install-audit: exit %d\n%s%s", code, out, errOut)
	}
	gw := testenv.StartCaddy(t, "", `
	handle /metrics {
		metrics
	}
	handle {
		better_auth {
			database {env.DATABASE_URL}
			secret {env.BETTER_AUTH_SECRET}
			audit denials {
				database
				queue 5
			}
		}
		respond 200
	}`, "DATABASE_URL="+f.DatabaseURL, "BETTER_AUTH_SECRET="+testenv.Secret)
	testenv.Exec(t, f.DatabaseURL, "CHECKPOINT")
	pg.Stop(t)
	before := scrape(t, gw, `caddy_better_auth_audit_events_total{outcome="dropped"}`)
	const n = 100
	start := time.Now()
	for i := range n + 1 {
		if r := send(t, gw, "/flood", nil); r.status != http.StatusUnauthorized {
			t.Fatalf("request %d: %d %s", i, r.status, r.raw)
		}
		if i == 0 { // its batch held: the queue fills from here
			gw.WaitForLog(t, "writing audit events", 15*time.Second)
		}
	}
	if d := scrape(t, gw, `caddy_better_auth_audit_events_total{outcome="dropped"}`) - before; d != n-5 {
		t.Errorf("%v dropped, want %d", d, n-5)
	}
	if c, most := strings.Count(gw.Logs(), "audit events dropped"), 1+int(time.Since(start)/(10*time.Second)); c < 1 || c > most {
		t.Errorf("the drops were logged %d times, want 1 to %d", c, most)
	}
	pg.Start(t)
	waitForRows(t, f.DatabaseURL, `SELECT count(*) FROM caddy_betterauth.audit_events WHERE path = '/flood'`, 6)
}

// An MCP resource's URI is the client's, and can carry a secret as a
// path's query can (a signed URL, user info): the event names the
// resource without them.
func TestAuditMCPNameWithoutSecrets(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{})
	gw := testenv.StartCaddy(t, "", fmt.Sprintf(`
	better_auth {
		database {env.DATABASE_URL}
		secret {env.BETTER_AUTH_SECRET}
		audit all
		%s
	}
	respond 200`, mcpRules), "DATABASE_URL="+f.DatabaseURL, "BETTER_AUTH_SECRET="+testenv.Secret)
	body := `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"https://reader:hunter2@files.example.com/q3.pdf?X-Amz-Signature=deadbeef#page=2"}}`
	req, _ := http.NewRequest(http.MethodPost, gw.URL+"/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+f.Users.Alice.Signed)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	gw.WaitForLog(t, `"mcp_method":"resources/read"`, 10*time.Second)
	logs := gw.Logs()
	if !strings.Contains(logs, `"mcp_name":"https://files.example.com/q3.pdf"`) {
		t.Errorf("no event names https://files.example.com/q3.pdf:\n%s", logs)
	}
	for _, s := range []string{"hunter2", "deadbeef"} {
		if strings.Contains(logs, s) {
			t.Errorf("%s was logged", s)
		}
	}
}
